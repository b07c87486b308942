"""Continuous delivery and deployment end to end, on loopback."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from kennel.cli.main import app
from kennel.deploy import environments
from kennel.errors import ReleaseRefusedError
from kennel.serve.auth import Identity
from kennel.wiring import Workspace
from tests.helpers import jpeg
from tests.serving import served_project, start_env, wait_until

runner = CliRunner()


def _cli(*args: str, code: int = 0) -> dict:  # type: ignore[type-arg]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == code, result.output
    return json.loads(result.stdout) if code == 0 else {"stderr": result.stderr}


def test_delivery_end_to_end(tmp_path: Path) -> None:
    project = served_project(tmp_path)
    root = str(project.root)
    qa = _cli("token", "create", "--role", "qa", "--name", "quinn", "-C", root)["token"]
    ops = _cli("token", "create", "--role", "operator", "--name", "olga", "-C", root)["token"]
    ws = Workspace(project)
    production = start_env(ws, "production")
    try:
        # 1. deploy v1 to staging: a real `kennel serve` process is started and certified
        deployed = _cli("deploy", "pets@1", "--to", "staging", "--token", ops, "-C", root)
        assert deployed["started_service"] and deployed["certification"]["passed"]
        cert = deployed["certification"]
        assert cert["images"] > 0 and cert["label_mismatches"] == 0 and cert["errors"] == 0
        assert all(r["ok"] for r in cert["robustness"])
        # 2. delivery mode: no release before a QA approval
        shown = _cli("models", "show", "pets@1", "-C", root)
        assert shown["release_blockers"] == ["no QA approval (release.mode is delivery)"]
        refused = _cli(
            "release", "pets@1", "--to", "production", "--token", ops, "-C", root, code=13
        )
        assert "no QA approval" in refused["stderr"]
        _cli("approve", "pets@1", "--note", "checked the report", "--token", qa, "-C", root)
        _cli("release", "pets@1", "--to", "production", "--token", ops, "-C", root)
        wait_until(lambda: environments.served_version(production.url) == 1)
        # 3. v2 through the same gates
        _cli("deploy", "pets@2", "--to", "staging", "--token", ops, "-C", root)
        _cli("approve", "pets@2", "--note", "ok", "--token", qa, "-C", root)
        _cli("release", "pets@2", "--to", "production", "--token", ops, "-C", root)
        wait_until(lambda: environments.served_version(production.url) == 2)
        with httpx.Client(base_url=production.url) as client:
            answer = client.post(
                "/v1/predict", content=jpeg(), headers={"content-type": "image/jpeg"}
            )
            assert answer.json()["model"]["version"] == 2
            # 4. rollback: the next answer comes from the previous version
            _cli("rollback", "--env", "production", "--token", ops, "-C", root)
            wait_until(lambda: environments.served_version(production.url) == 1)
            answer = client.post(
                "/v1/predict", content=jpeg(), headers={"content-type": "image/jpeg"}
            )
            assert answer.json()["model"]["version"] == 1
        history = _cli("models", "history", "pets", "--alias", "production", "-C", root)
        assert [(e["from_version"], e["to_version"]) for e in history] == [
            (None, 1),
            (1, 2),
            (2, 1),
        ]
        assert [e["kind"] for e in history] == ["release", "release", "rollback"]
        assert {e["actor"] for e in history} == {"olga"}
    finally:
        production.stop()
        environments.stop(project.state_dir, "staging")
        ws.close()
    assert _cli("audit", "verify", "-C", root)["ok"]


def test_failed_gate_never_reaches_production(tmp_path: Path) -> None:
    project = served_project(tmp_path, models=1, gates={"min_accuracy": 0.999})
    ws = Workspace(project)
    staging = start_env(ws, "staging")
    try:
        releases = ws.releases()
        ops = Identity.system("ci")
        # a gate-failed model is not even deployed: its certification would be moot
        with pytest.raises(ReleaseRefusedError, match="failed its quality gates"):
            releases.deploy("pets@1", "staging", who=ops)
        assert ws.registry.alias_history("pets", "staging") == []
        with pytest.raises(ReleaseRefusedError, match="failed its quality gates"):
            releases.release("pets@1", "production", who=ops)
    finally:
        staging.stop()
        ws.close()


def test_continuous_deployment_releases_by_itself(tmp_path: Path) -> None:
    project = served_project(tmp_path, mode="deployment", models=1)
    ws = Workspace(project)
    staging = start_env(ws, "staging")
    try:
        result = ws.releases().deploy("pets@1", "staging", who=Identity.system("ci"))
        assert result.certification.passed and result.released is not None
        assert ws.registry.resolve("pets@production").version == 1
        assert result.released.actor == "continuous-deployment"
        # certified again while production serves it: nothing to release (it was exit 13,
        # "already names version 1", after a passing certification)
        again = ws.releases().deploy("pets@1", "staging", who=Identity.system("ci"))
        assert again.certification.passed and again.released is None
        # an environment not named production: `release.to` names it (it was hard-coded)
        config = yaml.safe_load((project.root / "kennel.yaml").read_text())
        config["environments"]["live"] = config["environments"].pop("production")
        config["environments"]["live"]["alias"] = "live"
        config["release"]["to"] = "live"
        (project.root / "kennel.yaml").write_text(yaml.safe_dump(config))
        renamed = Workspace.load(project.root)
        try:
            moved = renamed.releases().deploy("pets@1", "staging", who=Identity.system("ci"))
            assert moved.released is not None and moved.released.alias == "live"
        finally:
            renamed.close()
    finally:
        staging.stop()
        ws.close()
