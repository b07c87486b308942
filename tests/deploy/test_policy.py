"""The release policy cannot be bypassed from the CLI: every path that changes what an
environment serves or what feed subscribers load goes through one gate that checks the
policy and the caller's role (issue #11, rows 1-5 and the bundle check of row 19)."""

from __future__ import annotations

import getpass
import json
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import pytest
import redis
import yaml
from typer.testing import CliRunner

from kennel.cli.main import app
from kennel.db.deployments import CertificationVerdict, DeploymentStore
from kennel.errors import ReleaseRefusedError
from kennel.pipeline.build import BuildOptions
from kennel.storage.cas import digest_key
from kennel.wiring import Workspace
from tests.conftest import unavailable
from tests.serving import served_project

runner = CliRunner()
REDIS = "redis://127.0.0.1:6379/0"


def cli(root: Path, *args: str, code: int = 0) -> dict:  # type: ignore[type-arg]
    result = runner.invoke(app, [*args, "-C", str(root), "--json"])
    assert result.exit_code == code, result.output
    return json.loads(result.stdout) if code == 0 else {"stderr": result.stderr}


def configure(root: Path, **sections: dict[str, object]) -> None:
    config = yaml.safe_load((root / "kennel.yaml").read_text())
    for key, values in sections.items():
        config.setdefault(key, {}).update(values)
    (root / "kennel.yaml").write_text(yaml.safe_dump(config))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """pets@1 and pets@2 pass their gates; pets@3 fails them."""
    project = served_project(tmp_path_factory.mktemp("policy"), models=2)
    configure(project.root, gates={"min_accuracy": 0.999})
    ws = Workspace.load(project.root)
    try:
        failed = ws.builder().build("park", BuildOptions(trials=1, overrides={"seed": 7}))
        assert not failed.model.gates_passed
    finally:
        ws.close()
    configure(project.root, gates={"min_accuracy": 0.0})
    return project.root


@pytest.fixture
def root(built: Path, tmp_path: Path) -> Iterator[Path]:
    """A private copy of the built project, with tokens for each role."""
    dest = tmp_path / "p"
    shutil.copytree(built, dest)
    yield dest


def tokens(root: Path) -> dict[str, str]:
    return {
        role: cli(root, "token", "create", "--role", role, "--name", f"{role}-person")["token"]
        for role in ("viewer", "operator", "qa")
    }


def certify_in(root: Path, version: int, environment: str = "staging") -> None:
    """What a passed application test leaves behind (the deploy tests run the real one)."""
    ws = Workspace.load(root)
    try:
        DeploymentStore(ws.db).add_certification(
            CertificationVerdict("pets", version, environment, True, [], None, {},
                                 datetime.now(UTC)),
            actor="test",
        )  # fmt: skip
    finally:
        ws.close()


def ready(root: Path, version: int, qa: str) -> None:
    certify_in(root, version)
    cli(root, "approve", f"pets@{version}", "--note", "ok", "--token", qa)


def history(root: Path, alias: str | None) -> list[dict]:  # type: ignore[type-arg]
    more = ("--alias", alias) if alias else ()
    return cli(root, "models", "history", "pets", *more)  # type: ignore[return-value]


def test_release_needs_a_role_bearing_token(root: Path) -> None:
    t = tokens(root)
    ready(root, 1, t["qa"])
    refused = cli(root, "release", "pets@1", "--to", "production", code=14)
    assert "needs a token" in refused["stderr"]
    refused = cli(root, "release", "pets@1", "--to", "production", "--token", t["viewer"], code=14)
    assert "role 'viewer' may not release" in refused["stderr"]
    assert history(root, "production") == []
    event = cli(root, "release", "pets@1", "--to", "production", "--token", t["operator"])
    assert (event["actor"], event["kind"], event["to_version"]) == ("operator-person", "release", 1)
    # a single-user project may name the local role in kennel.yaml; the actor is then the
    # local account, never a name typed on the command line
    configure(root, auth={"local_role": "operator"})
    ready(root, 2, t["qa"])
    event = cli(root, "release", "pets@2", "--to", "production")
    assert event["actor"] == f"local:{getpass.getuser()}"


def test_models_alias_cannot_move_an_environment(root: Path) -> None:
    t = tokens(root)
    # the actor is never a free-text flag
    result = runner.invoke(
        app, ["models", "alias", "pets@2", "production", "--actor", "ceo", "-C", str(root)]
    )
    assert result.exit_code == 2 and "--actor" in result.output
    refused = cli(
        root, "models", "alias", "pets@2", "production", "--token", t["operator"], code=13
    )
    assert "kennel release" in refused["stderr"]
    refused = cli(root, "models", "alias", "pets@2", "staging", "--token", t["operator"], code=13)
    assert "kennel deploy" in refused["stderr"]
    cli(root, "models", "alias", "pets@2", "champion", "--token", t["operator"], code=13)
    cli(root, "models", "alias", "pets@2", "canary", "--token", t["viewer"], code=14)
    assert history(root, "production") == [] and history(root, "staging") == []
    event = cli(root, "models", "alias", "pets@2", "canary", "--token", t["operator"])
    assert (event["actor"], event["kind"]) == ("operator-person", "set")
    # one letter's case apart from an alias in use or followed: read as it, served by nothing
    for twin in ("Production", "STAGING", "Champion", "Canary"):
        refused = cli(root, "models", "alias", "pets@2", twin, "--token", t["operator"], code=13)
        assert "only in case" in refused["stderr"], twin
    latest = cli(root, "models", "alias", "pets@2", "Latest", "--token", t["operator"], code=2)
    assert "invalid alias 'Latest'" in latest["stderr"]  # pets@Latest is the newest version
    assert cli(root, "models", "show", "pets@LATEST")["version"] == 3
    assert {e["alias"] for e in history(root, None)} == {"canary", "champion"}


def test_deploy_goes_to_staging_only_and_certifies_only_there(root: Path) -> None:
    t = tokens(root)
    refused = cli(root, "deploy", "pets@2", "--to", "production", "--token", t["operator"], code=13)
    assert "staging" in refused["stderr"]
    assert history(root, "production") == []
    # a certification recorded for another environment (as the old code wrote) does not count
    certify_in(root, 2, environment="production")
    shown = cli(root, "models", "show", "pets@2")
    assert any("not certified in staging" in r for r in shown["release_blockers"])
    refused = cli(root, "approve", "pets@2", "--token", t["qa"], code=13)
    assert "no certification in staging" in refused["stderr"]
    ws = Workspace.load(root)
    try:
        store = DeploymentStore(ws.db)
        envs = {c.environment for v in (1, 2) for c in store.certifications("pets", v)}
    finally:
        ws.close()
    assert envs == {"production"}  # only the row planted above; deploy wrote none


def test_a_gate_failed_model_is_never_deployed_or_published(root: Path) -> None:
    client = redis.Redis.from_url(REDIS)
    try:
        client.ping()
    except redis.ConnectionError:
        unavailable("Redis unreachable at 127.0.0.1:6379")
    stream = f"kennel:test:{uuid.uuid4().hex[:8]}"
    configure(root, feed={"url": REDIS, "stream": stream})
    t = tokens(root)
    try:
        refused = cli(root, "deploy", "pets@3", "--token", t["operator"], code=13)
        assert "failed its quality gates" in refused["stderr"]
        ready(root, 1, t["qa"])
        cli(root, "release", "pets@1", "--to", "production", "--token", t["operator"])
        assert client.xlen(stream) == 1  # the release announced itself
        refused = cli(root, "publish", "pets@3", "--token", t["operator"], code=13)
        assert "failed its quality gates" in refused["stderr"]
        refused = cli(root, "publish", "pets@2", "--token", t["operator"], code=13)
        assert "names version 1, not 2" in refused["stderr"]
        cli(root, "publish", "pets@1", "--token", t["viewer"], code=14)
        assert client.xlen(stream) == 1  # nothing was signed or announced
        again = cli(root, "publish", "pets@1", "--token", t["operator"])
        assert again["entry"] and client.xlen(stream) == 2
        # named by its alias, the version announced is told: "published pets@production" did
        # not say which version subscribers were sent
        told = runner.invoke(app, ["publish", "pets@production", "--token", t["operator"],
                                   "-C", str(root)])  # fmt: skip
        assert told.exit_code == 0, told.output
        assert told.stdout.startswith("published pets@1 (pets@production) for production on ")
        by_alias = cli(root, "publish", "pets@production", "--token", t["operator"])
        assert (by_alias["model"], by_alias["version"]) == ("pets@1", 1)
        assert by_alias["requested"] == "pets@production" and by_alias["alias"] == "production"
        [(entry, fields)] = client.xrevrange(stream, count=1)
        assert entry.decode() == by_alias["entry"]
        assert json.loads(fields[b"manifest"])["version"] == 1  # what was announced indeed
    finally:
        client.delete(stream)
        client.close()


def test_a_gate_failed_version_named_outright_reaches_no_one_unless_allowed(
    root: Path, tmp_path: Path
) -> None:
    """Scoring into a shared table, answering RPC, watching a camera and packaging a wheel all
    put a model's answers in front of others: a version that failed its gates is refused there
    unless --allow-failed-gates says so; ``kennel predict`` (answers on this screen) warns."""
    refused = cli(root, "batch-score", "--input", "dataset:park", "--table", "scores",
                  "--model", "pets@3", code=13)  # fmt: skip
    assert "pets@3 failed its quality gates" in refused["stderr"]
    assert "--allow-failed-gates" in refused["stderr"]
    refused = cli(root, "export", "package", "pets@3", "--out", str(tmp_path / "w"), code=13)
    assert "failed its quality gates" in refused["stderr"] and not (tmp_path / "w").exists()
    clip = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter.fourcc(*"mp4v"), 5.0, (64, 48))
    for _ in range(5):
        writer.write(np.full((48, 64, 3), 90, np.uint8))
    writer.release()
    refused = cli(root, "watch", str(clip), "--model", "pets@3", code=13)
    assert "failed its quality gates" in refused["stderr"]
    worker = runner.invoke(app, ["rpc-worker", "--model", "pets@3", "-C", str(root)])
    assert worker.exit_code == 13 and "failed its quality gates" in worker.stderr
    wrong = cli(root, "batch-score", "--input", "dataset:park", "--table", "scores",
                "--env", "production", "--allow-failed-gates", code=2)  # fmt: skip
    assert "goes with --model" in wrong["stderr"]
    # an environment (set up in kennel.yaml after its alias was moved) following pets@3
    cli(root, "models", "alias", "pets@3", "qa", "--token", tokens(root)["operator"])
    configure(root, environments={"qa": {"port": 8099, "alias": "qa"}})
    hint = cli(root, "batch-score", "--input", "dataset:park", "--table", "scores",
               "--env", "qa", code=13)  # fmt: skip
    assert "--model pets@3 --allow-failed-gates to use it anyway" in hint["stderr"]
    scored = cli(root, "batch-score", "--input", "dataset:park", "--table", "scores",
                 "--model", "pets@3", "--allow-failed-gates")  # fmt: skip
    assert (scored["model"], scored["version"]) == ("pets", 3) and scored["inserted"] > 0
    wheel = cli(root, "export", "package", "pets@3", "--out", str(tmp_path / "w"),
                "--allow-failed-gates")  # fmt: skip
    assert Path(wheel["wheel"]).is_file() and wheel["version"] == 3
    ws = Workspace.load(root)
    try:
        photo = ws.content.get(ws.catalog.rows(ws.catalog.resolve("park"))[0].sha256)
    finally:
        ws.close()
    (tmp_path / "one.jpg").write_bytes(photo)
    result = runner.invoke(app, ["predict", str(tmp_path / "one.jpg"), "--model", "pets@3",
                                 "-C", str(root), "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "warning: pets@3 failed its quality gates" in result.stderr
    assert json.loads(result.stdout.splitlines()[-1])["model"] == {"name": "pets", "version": 3}


def test_rollback_reads_the_kind_of_move_not_the_reason(root: Path) -> None:
    t = tokens(root)
    for version in (1, 2):
        ready(root, version, t["qa"])
    ops = ("--token", t["operator"])
    cli(root, "release", "pets@1", "--to", "production", *ops)
    cli(root, "release", "pets@2", "--to", "production", "--reason", "rollback: x", *ops)
    event = cli(root, "rollback", "--env", "production", *ops)
    assert (event["from_version"], event["to_version"], event["kind"]) == (2, 1, "rollback")
    refused = cli(root, "rollback", "--env", "production", *ops, code=3)
    assert "no earlier version" in refused["stderr"]
    # a role that may not roll back is told so first, whatever the state
    refused = cli(root, "rollback", "--env", "production", "--token", t["viewer"], code=14)
    assert "role 'viewer' may not rollback" in refused["stderr"]
    assert [e["kind"] for e in history(root, "production")] == ["release", "release", "rollback"]


def test_releasing_what_already_serves_is_refused_and_rollback_still_goes_back(
    root: Path,
) -> None:
    t = tokens(root)
    for version in (1, 2):
        ready(root, version, t["qa"])
    ops = ("--token", t["operator"])
    cli(root, "release", "pets@1", "--to", "production", *ops)
    cli(root, "release", "pets@2", "--to", "production", *ops)
    again = cli(root, "release", "pets@2", "--to", "production", *ops, code=13)  # a 2nd click
    assert "already names version 2" in again["stderr"]
    assert [e["to_version"] for e in history(root, "production")] == [1, 2]
    event = cli(root, "rollback", "--env", "production", *ops)
    assert (event["from_version"], event["to_version"]) == (2, 1)


def test_rollback_skips_moves_that_changed_nothing(root: Path) -> None:
    """A history written before such moves were refused (2 -> 2) still rolls back to 1."""
    t = tokens(root)
    for version in (1, 2):
        ready(root, version, t["qa"])
    ops = ("--token", t["operator"])
    cli(root, "release", "pets@1", "--to", "production", *ops)
    cli(root, "release", "pets@2", "--to", "production", *ops)
    ws = Workspace.load(root)
    try:  # the old behaviour, through the store directly
        ws.registry.set_alias("pets", "production", 2, actor="old", reason="x", kind="release")
    finally:
        ws.close()
    event = cli(root, "rollback", "--env", "production", *ops)
    assert (event["from_version"], event["to_version"]) == (2, 1)


def test_a_rollback_raced_by_another_move_is_refused_not_sent_two_steps_back(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rollback works out (current, previous) from the alias's history, then moves: another
    move in between (a release, a second operator's rollback) used to be undone with it, and
    the history replay left thinking the alias served what it no longer did."""
    from kennel.deploy.policy import PolicyGate

    t = tokens(root)
    for version in (1, 2):
        ready(root, version, t["qa"])
        cli(root, "release", f"pets@{version}", "--to", "production", "--token", t["operator"])
    original = PolicyGate.served_before
    raced: list[int] = []

    def then_someone_else_moves(self: PolicyGate, name: str, alias: str) -> tuple[int, int]:
        seen = original(self, name, alias)
        if not raced:  # the other operator's rollback lands between reading and moving
            raced.append(1)
            ws = Workspace.load(root)
            try:
                who = ws.tokens.identify(t["operator"])
                ws.releases().rollback("production", who=who, reason="the other operator")
            finally:
                ws.close()
        return seen

    monkeypatch.setattr(PolicyGate, "served_before", then_someone_else_moves)
    refused = cli(root, "rollback", "--env", "production", "--token", t["operator"], code=13)
    assert "moved to version 1 meanwhile" in refused["stderr"], refused
    moves = [(e["from_version"], e["to_version"], e["kind"]) for e in history(root, "production")]
    assert moves == [(None, 1, "release"), (1, 2, "release"), (2, 1, "rollback")]
    # across requests: an operator who saw 2 served (a dashboard page, whose Roll back sends
    # it) is refused now that it serves 1, where a second step back was taken before
    monkeypatch.setattr(PolicyGate, "served_before", original)
    for version in (2, 1):
        cli(root, "release", f"pets@{version}", "--to", "production", "--token", t["operator"])
    cli(root, "rollback", "--env", "production", "--from", "1", "--token", t["operator"])
    stale = cli(root, "rollback", "--env", "production", "--from", "1", "--token", t["operator"],
                code=13)  # fmt: skip
    assert "names version 2 now, not 1 as when you looked" in stale["stderr"]
    # and the store refuses any move whose expected starting point is stale
    ws = Workspace.load(root)
    try:
        with pytest.raises(ReleaseRefusedError, match="meanwhile"):
            ws.registry.set_alias("pets", "spare", 2, actor="t", reason="x", expect_from=1)
        assert ws.registry.set_alias("pets", "spare", 2, actor="t", reason="x").to_version == 2
    finally:
        ws.close()


def test_a_rejection_while_the_bundle_is_verified_refuses_the_release(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The policy was checked before the bundle was hashed (seconds for a large model) and not
    again: a QA rejection landing meanwhile still let the rejected version into production."""
    from kennel.deploy.policy import PolicyGate

    t = tokens(root)
    ready(root, 1, t["qa"])
    original = PolicyGate.verify_bundle

    def and_meanwhile_qa_rejects(self: PolicyGate, model: object) -> None:
        original(self, model)  # type: ignore[arg-type]
        cli(root, "reject", "pets@1", "--note", "blocker found", "--token", t["qa"])

    monkeypatch.setattr(PolicyGate, "verify_bundle", and_meanwhile_qa_rejects)
    refused = cli(root, "release", "pets@1", "--to", "production", "--token", t["operator"],
                  code=13)  # fmt: skip
    assert "rejected by qa-person" in refused["stderr"] and "blocker found" in refused["stderr"]
    assert history(root, "production") == []


def test_a_compliance_report_never_replaces_a_file_it_did_not_write(root: Path) -> None:
    config = (root / "kennel.yaml").read_text()
    refused = cli(root, "models", "compliance", "pets@1", "--out", str(root / "kennel.yaml"),
                  code=2)  # fmt: skip
    assert "not a page kennel wrote" in refused["stderr"]
    assert (root / "kennel.yaml").read_text() == config
    (root / "reports").mkdir()
    written = cli(root, "models", "compliance", "pets@1", "--out", str(root / "reports"))
    assert written["html"] == str(root / "reports" / "compliance-pets-1.html")
    again = cli(root, "models", "compliance", "pets@1", "--out", written["html"])  # its own
    assert again["html"] == written["html"]


def test_qa_cannot_approve_a_version_whose_application_test_failed(root: Path) -> None:
    """An approval given on a failed report used to carry over to a later passing one."""
    t = tokens(root)
    ws = Workspace.load(root)
    try:
        DeploymentStore(ws.db).add_certification(
            CertificationVerdict("pets", 1, "staging", False, ["p99 41.0 ms > 0.01 ms"], None,
                                 {}, datetime.now(UTC)),
            actor="test",
        )  # fmt: skip
    finally:
        ws.close()
    refused = cli(root, "approve", "pets@1", "--note", "lgtm", "--token", t["qa"], code=13)
    assert "failed its application test in staging (p99 41.0 ms > 0.01 ms)" in refused["stderr"]
    cli(root, "reject", "pets@1", "--note", "too slow", "--token", t["qa"])  # saying no still works
    certify_in(root, 2)
    approved = cli(root, "approve", "pets@2", "--note", "ok", "--token", t["qa"])
    assert approved["decision"] == "approved"


def test_release_verifies_the_bundle_before_the_alias_moves(root: Path) -> None:
    t = tokens(root)
    ready(root, 1, t["qa"])
    ws = Workspace.load(root)
    try:
        model = ws.registry.resolve("pets@1")
        blob = Path(ws.content.blobs.url) / digest_key(model.files["model.onnx"])
    finally:
        ws.close()
    blob.write_bytes(b"tampered")
    refused = cli(root, "release", "pets@1", "--to", "production", "--token", t["operator"], code=8)
    assert "corrupt" in refused["stderr"]
    assert history(root, "production") == []


def test_rollback_never_lands_on_a_version_qa_has_rejected_since(root: Path) -> None:
    t = tokens(root)
    ops = ("--token", t["operator"])
    for version in (1, 2):
        ready(root, version, t["qa"])
        cli(root, "release", f"pets@{version}", "--to", "production", *ops)
    cli(root, "reject", "pets@1", "--note", "found a bias problem", "--token", t["qa"])
    refused = cli(root, "rollback", "--env", "production", *ops, code=13)
    assert "rejected" in refused["stderr"] and "bias problem" in refused["stderr"]
    assert [e["to_version"] for e in history(root, "production")] == [1, 2]


def test_kennel_yaml_cannot_make_two_environments_share_an_alias(root: Path) -> None:
    config = yaml.safe_load((root / "kennel.yaml").read_text())
    config["environments"]["staging"]["alias"] = "production"
    (root / "kennel.yaml").write_text(yaml.safe_dump(config))
    refused = cli(root, "models", "list", code=2)
    assert "each environment needs its own alias" in refused["stderr"]
    twins = [("Production", "'production' in other case"), ("Champion", "may not be Champion"),
             ("LATEST", "may not be LATEST")]  # fmt: skip
    for alias, says in twins:
        config["environments"]["staging"]["alias"] = alias
        (root / "kennel.yaml").write_text(yaml.safe_dump(config))
        assert says in cli(root, "models", "list", code=2)["stderr"], alias
    config["environments"]["staging"]["alias"] = "staging"
    config["feed"] = {"aliases": ["staging"]}
    (root / "kennel.yaml").write_text(yaml.safe_dump(config))
    assert "staging alias" in cli(root, "models", "list", code=2)["stderr"]


def test_a_service_never_serves_a_gate_failed_version(root: Path) -> None:
    """However an alias got there (here: set by hand, then kennel.yaml pointed at it)."""
    t = tokens(root)
    cli(root, "models", "alias", "pets@3", "live", "--token", t["operator"])
    configure(root, environments={"production": {"alias": "live", "port": 18999}})
    ws = Workspace.load(root)
    try:
        service = ws.service("production")
        service.holder.start()
        assert service.holder.current is None  # not ready rather than serving pets@3
        assert "failed its quality gates" in (service.holder.last_error or "")
        service.holder.stop()
    finally:
        ws.close()


def test_tokens_cannot_pass_for_kennel_and_the_last_admin_stays(root: Path) -> None:
    admin = cli(root, "token", "create", "--role", "admin", "--name", "ada")
    impostors = ("kennel-monitor (alert accuracy-drop)", "Continuous-Deployment", "local:root",
                 "kennel\u2010monitor", "c\u043entinuous-deployment", "local :root",
                 # ASCII that looks the same: a capital i for the l, a one, a zero, "rn" for m
                 "kenneI-monitor", "kenne1-monitor", "c0ntinuous-deployrnent",
                 "SYSTEM.x", "syst3m", "k3nnel-monitor", "ContinuousDeployment")  # fmt: skip
    for name in impostors:
        refused = cli(root, "token", "create", "--role", "operator", "--name", name,
                      "--token", admin["token"], code=2)  # fmt: skip
        assert "kennel's own actors" in refused["stderr"]
    for name in ("ian", "Lily", "kenn", "sys-admin", "0rla"):  # ordinary names still pass
        cli(root, "token", "create", "--role", "viewer", "--name", name, "--token", admin["token"])
    refused = cli(root, "token", "revoke", admin["id"], "--token", admin["token"], code=14)
    assert "last admin" in refused["stderr"]
    # with an admin token in place, nobody creates tokens without one
    cli(root, "token", "create", "--role", "admin", "--name", "mallory", code=14)
    t = tokens_with(root, admin["token"])
    ready(root, 1, t["qa"])
    cli(root, "release", "pets@1", "--to", "production", "--token", t["operator"])
    log = cli(root, "audit", "log", "--limit", "1")
    assert log[0]["action"] == "alias.move" and log[0]["details"]["token"] == t["operator_id"]


def tokens_with(root: Path, admin: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for role in ("operator", "qa"):
        made = cli(root, "token", "create", "--role", role, "--name", f"{role}-2", "--token", admin)
        out[role], out[f"{role}_id"] = made["token"], made["id"]
    return out


def test_a_rejection_blocks_a_release_in_deployment_mode_too(root: Path) -> None:
    configure(root, release={"mode": "deployment"})
    t = tokens(root)
    certify_in(root, 1)
    cli(root, "reject", "pets@1", "--note", "wrong labels", "--token", t["qa"])
    refused = cli(root, "release", "pets@1", "--to", "production", "--token", t["operator"],
                  code=13)  # fmt: skip
    assert "rejected by" in refused["stderr"] and "wrong labels" in refused["stderr"]


def test_a_release_clicked_on_a_stale_page_is_refused_not_a_downgrade(root: Path) -> None:
    """The dashboard's Release button carries the version the page saw served (0: none); a
    click on a page drawn before another release is refused, where it used to send production
    back to an older approved version as an ordinary release."""
    from kennel.ui.views import environments_of

    t = tokens(root)
    for version in (1, 2):
        ready(root, version, t["qa"])
    ws = Workspace.load(root)
    try:
        ws.registry.set_alias("pets", "staging", 1, actor="test", reason="deploy", kind="deploy")
        operator = ws.tokens.identify(t["operator"])
        assert operator is not None
        page = {e.name: e for e in environments_of(ws, operator, probe=False)}["production"]
        drawn = next(b for b in page.buttons if b.label == "Release pets@1")
        assert drawn.enabled and drawn.fields["current"] == "0"  # nothing served yet
        # meanwhile another operator releases 1, then 2
        for version in (1, 2):
            ws.releases().release(f"pets@{version}", "production", who=operator)
        with pytest.raises(ReleaseRefusedError) as refused:
            ws.releases().release("pets@1", "production", who=operator, seen=0)
        assert "moved to version 2 meanwhile (this move was worked out from no version)" in str(
            refused.value
        )
        page = {e.name: e for e in environments_of(ws, operator, probe=False)}["production"]
        fresh = next(b for b in page.buttons if b.label == "Release pets@1")
        assert fresh.fields["current"] == "2"
        # seen as it is now, the release goes through: an explicit, informed choice
        event = ws.releases().release("pets@1", "production", who=operator, seen=2)
        assert (event.from_version, event.to_version) == (2, 1)
        assert ws.releases().served("production") == 1
    finally:
        ws.close()


def test_rejecting_the_version_production_serves_says_it_still_serves(root: Path) -> None:
    t = tokens(root)
    ready(root, 1, t["qa"])
    cli(root, "release", "pets@1", "--to", "production", "--token", t["operator"])
    result = runner.invoke(
        app, ["reject", "pets@1", "--note", "blurry", "--token", t["qa"], "-C", str(root)]
    )
    assert result.exit_code == 0, result.output
    assert result.stderr.strip().splitlines() == [
        "warning: production still serves pets@1: a rejection stops later releases of it, not "
        "this one; roll back or release another version"
    ]
    said = cli(root, "reject", "pets@1", "--note", "still blurry", "--token", t["qa"])
    assert said["served_in"] == ["production"]
    said = cli(root, "approve", "pets@1", "--note", "fine after all", "--token", t["qa"])
    assert said["served_in"] == []
