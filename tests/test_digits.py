"""Numbers from outside (headers, ports, camera indexes) are ASCII digits or nothing."""

from __future__ import annotations

import pytest

from kennel.digits import HUGE, ascii_number, declared_over


@pytest.mark.parametrize("text", ["", None, "-1", "+3", " 3", "3 ", "3_0", "٣", "²", "1e3", b"x"])
def test_anything_but_ascii_digits_is_no_number(text: str | bytes | None) -> None:
    assert ascii_number(text) is None
    assert not declared_over(text, 0)  # bounded as the body arrives instead


def test_ascii_digits_are_their_number_in_text_or_bytes() -> None:
    assert ascii_number("0") == 0 and ascii_number("0042") == 42 and ascii_number(b"513") == 513
    assert declared_over(b"11", 10) and not declared_over("10", 10)


def test_thousands_of_digits_are_a_number_too_large_for_any_limit() -> None:
    """int() refuses strings past 4,300 digits: a header of 5,000 digits was a 500."""
    assert ascii_number("0" * 5000 + "3") == 3  # leading zeros are no size
    assert ascii_number("9" * 5000) == HUGE and ascii_number(b"1" * 20) == HUGE
    assert ascii_number("9" * 19) == 10**19 - 1
    assert declared_over("7" * 5000, 10**12)
