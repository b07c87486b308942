"""What `kennel deploy` refuses before the staging alias moves, and how a failed certification
ends a `--json` run."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import yaml
from typer.testing import CliRunner

from kennel.cli.main import app
from kennel.wiring import Workspace
from tests.serving import served_project

runner = CliRunner()


def _single_user(root: Path, **release: object) -> None:
    """Deploys need a role: a single-user project's (auth.local_role) here."""
    config = yaml.safe_load((root / "kennel.yaml").read_text())
    config.setdefault("auth", {})["local_role"] = "operator"
    config["release"]["certification"].update(release)
    (root / "kennel.yaml").write_text(yaml.safe_dump(config))


def _staging_moves(root: Path) -> list[int | None]:
    ws = Workspace.load(root)
    try:
        return [e.to_version for e in ws.registry.alias_history("pets", alias="staging")]
    finally:
        ws.close()


def test_a_port_held_by_another_program_or_another_model_is_refused_before_the_alias_moves(
    tmp_path: Path,
) -> None:
    project = served_project(tmp_path, models=1)
    _single_user(project.root)
    root = str(project.root)
    port = project.config.environments["staging"].port
    with socket.socket() as other:  # another program listening on staging's port
        other.bind(("127.0.0.1", port))
        other.listen()
        result = runner.invoke(app, ["deploy", "pets@1", "-C", root])
    assert result.exit_code == 15, result.output
    assert result.stderr == (
        f"error: http://127.0.0.1:{port}: port {port} is in use by another program (not a "
        "kennel service): stop it, or give this environment another port in kennel.yaml\n"
    )
    result = runner.invoke(app, ["deploy", "other@1", "-C", root])
    assert result.exit_code != 0 and "other" in result.stderr
    assert _staging_moves(project.root) == []  # the alias never moved


def test_a_failed_certification_exits_1_with_json_too(tmp_path: Path) -> None:
    """A CI step keeping the JSON (`kennel deploy ... --json > certification.json`) went green."""
    project = served_project(tmp_path, models=1)
    _single_user(project.root, max_p99_ms=0.001)
    try:
        result = runner.invoke(app, ["deploy", "pets@1", "--json", "-C", str(project.root)])
        assert result.exit_code == 1, result.output
        body = json.loads(result.stdout)
        assert body["certification"]["passed"] is False
        assert any("p99 latency" in r for r in body["certification"]["reasons"])
    finally:  # the service the deploy started runs on its own until stopped
        stopped = runner.invoke(app, ["stop", "--env", "staging", "-C", str(project.root)])
        assert stopped.exit_code == 0, stopped.output
