"""The house rules that a linter does not check: modules stay small enough to read."""

from __future__ import annotations

from pathlib import Path

import kennel

LIMIT = 400  # lines: a module past this has become two ideas; split it


def test_no_module_is_over_the_limit() -> None:
    root = Path(kennel.__file__).parent
    sizes = {
        str(path.relative_to(root)): len(path.read_text().splitlines())
        for path in root.rglob("*.py")
    }
    assert len(sizes) > 100  # the whole package was read
    assert {name: n for name, n in sizes.items() if n > LIMIT} == {}
