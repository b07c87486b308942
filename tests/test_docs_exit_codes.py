"""docs/operations.md's exit-code table is the CLI's: every code in kennel.errors.STATUS has a
row, and the table lists no code kennel does not use."""

from __future__ import annotations

import re

from kennel.errors import STATUS
from tests.conftest import REPO


def test_every_exit_code_in_status_has_a_row_in_the_operations_table() -> None:
    text = (REPO / "docs" / "operations.md").read_text()
    table = text.split("### Exit codes", 1)[1].split("\n\n", 2)[1]
    documented = {int(m) for m in re.findall(r"^\| (\d+) \|", table, re.M)}
    used = {status.exit_code for status in STATUS.values()} | {0}
    assert documented == used, f"missing {sorted(used - documented)}, extra {documented - used}"
