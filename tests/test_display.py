"""What kennel prints and stores of text it did not write: every invisible format character
is escaped (and refused in notes), the zero-width joiners that scripts need are kept."""

from __future__ import annotations

import sys
import unicodedata

from kennel.display import printable, text_problem


def test_every_format_character_but_the_joiners_is_escaped() -> None:
    invisible = [
        chr(c) for c in range(sys.maxunicode + 1)
        if unicodedata.category(chr(c)) == "Cf" and c not in (0x200C, 0x200D)
    ]  # fmt: skip
    assert len(invisible) > 150
    left = [f"U+{ord(c):04X}" for c in invisible if printable(c) == c]
    assert left == []  # a newer Unicode table adds some: add them to display._CONTROL
    assert printable("\u200d\u200c") == "\u200d\u200c"


def test_escapes_name_their_code_point_unambiguously() -> None:
    assert printable("a\x1bb\u202ec\U000e0041d") == "a\\x1bb\\u202ec\\U000e0041d"


def test_text_problem_names_the_first_character_refused() -> None:
    assert text_problem("ok", limit=2) is None
    assert text_problem("ok!", limit=2) == "3 characters long; at most 2"
    assert "U+00AD" in (text_problem("soft\u00adhyphen", limit=50) or "")
    assert text_problem("two\r\nlines\n\ttab", limit=50, lines=True) is None
    assert "U+000D" in (text_problem("over\rwrite", limit=50, lines=True) or "")
    assert "U+000A" in (text_problem("two\nlines", limit=50) or "")
