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


def test_the_portable_package_imports_nothing_of_kennel() -> None:
    """kennel.portable is copied verbatim into exported wheels (as ``_portable``), where no
    ``kennel`` package exists: its modules import each other relatively, and nothing else of
    kennel (an absolute import of a new sibling broke the embedded wheel once)."""
    import ast

    root = Path(kennel.__file__).parent / "portable"
    absolute = []
    for path in root.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            absolute += [f"{path.name}: {n}" for n in names if n.split(".")[0] == "kennel"]
    assert absolute == []
