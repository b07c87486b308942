"""A port outside 1..65535 is refused before anything starts (the review found
`kennel serve --port 70000` printing :70000 while listening on 70000 mod 65536 = 4464)."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from kennel.cli.main import app


@pytest.mark.parametrize(
    "args",
    [
        ["serve", "--env", "production", "--port", "70000"],
        ["serve", "--env", "production", "--port", "0"],
        ["subscribe", "--port", "70001"],
        ["ui", "--port", "-1"],
        ["watch", "clip.mp4", "--metrics-port", "65536"],
    ],
)
def test_an_out_of_range_port_is_refused(args: list[str]) -> None:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: Invalid value for '--"), lines
    assert "65535" in lines[0] or "greater than or equal to 1" in lines[0], lines[0]


def test_commands_that_listen_by_default_do_not_share_a_port() -> None:
    """`kennel ui` and `kennel subscribe` both started with their defaults both listen."""
    root = typer.main.get_command(app)
    defaults = {}
    for name in ("ui", "subscribe"):
        command = root.commands[name]  # type: ignore[attr-defined]
        [port] = [p for p in command.params if p.name == "port"]
        defaults[name] = port.default
        shown = CliRunner().invoke(app, [name, "--help"], terminal_width=200)
        assert f"[default: {port.default}]" in shown.output, shown.output
    assert defaults == {"ui": 8090, "subscribe": 8091}


def test_ids_past_the_databases_integer_are_refused_before_any_query() -> None:
    """Alert ids and audit sequence numbers past PostgreSQL's INTEGER overflowed the query
    (a database error, not a usage one); the CLI's bound is the store's."""
    from kennel.cli.app import MAX_NUMBER as CLI_MAX
    from kennel.db import MAX_NUMBER

    assert CLI_MAX == MAX_NUMBER
    for args in (["alerts", "ack", str(2**31)], ["audit", "anchor", str(2**31)]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2, result.output
        assert "2147483647" in " ".join(result.output.split()), result.output
