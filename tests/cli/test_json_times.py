"""Every command's ``--json`` writes times one way, on SQLite and PostgreSQL alike: ISO-8601
with ``T`` and the UTC offset (``2026-11-29T17:00:00+00:00``), never a naive time and never
``str(datetime)``'s space (issue #12).

One project is taken through every command that has ``--json`` (the list of commands is read
from the CLI itself, so a new one cannot be forgotten), and every value that looks like a time,
or sits under a key that names one, must parse with ``datetime.fromisoformat`` as UTC."""

from __future__ import annotations

import functools
import json
import re
import shutil
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
from typer.testing import CliRunner

from kennel.cli.main import app
from kennel.db.predictions import PredictionStore
from kennel.deploy import environments
from kennel.wiring import Workspace
from tests.conftest import TINY_TRAIN, make_project
from tests.helpers import jpeg
from tests.serving import free_port, start_env, wait_until

runner = CliRunner()
LOOKS_LIKE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")
TIME_KEY = re.compile(r"(^|_)(at|since|until)$")


@functools.cache
def json_commands() -> frozenset[str]:
    """Every command path (``data ingest``) that has a --json option, and ``batch-read``,
    which always answers in JSON."""
    found = {"batch-read"}

    def walk(command: Any, path: tuple[str, ...]) -> None:
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, (*path, name))
        if any("--json" in getattr(p, "opts", ()) for p in getattr(command, "params", ())):
            found.add(" ".join(path))

    walk(typer.main.get_command(app), ())
    return frozenset(found)


def times(value: Any, where: str = "$") -> Iterator[tuple[str, Any]]:
    """(path, value) of every time in a JSON document: a string that starts like one, or any
    value under a key that names a time (``at``, ``*_at``, ``since``, ``until``)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if TIME_KEY.search(str(key)) and item is not None and not isinstance(item, dict):
                yield f"{where}.{key}", item
            else:
                yield from times(item, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from times(item, f"{where}[{i}]")
    elif isinstance(value, str) and LOOKS_LIKE_TIME.match(value):
        yield where, value


class Sweep:
    """Runs commands with --json and keeps what they printed, by command."""

    def __init__(self, root: Path) -> None:
        self.root = str(root)
        self.outputs: dict[str, list[Any]] = {}

    def __call__(
        self, *args: str, lines: bool = False, project: bool = True, root: Path | None = None
    ) -> Any:
        command = [a for a in args if not a.startswith("-")]
        key = next(
            " ".join(command[:n]) for n in (2, 1) if " ".join(command[:n]) in json_commands()
        )
        extra = ["-C", str(root or self.root)] if project else []
        result = runner.invoke(app, [*args, *extra, "--json"])
        assert result.exit_code == 0, (args, result.output)
        if lines:  # one JSON document per line
            data = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
        else:
            data = json.loads(result.stdout)
        for line in result.stderr.splitlines():  # progress events: JSON lines too
            if line.startswith("{"):
                self.outputs.setdefault(key, []).append(json.loads(line))
        self.outputs.setdefault(key, []).append(data)
        return data

    def read(self, *args: str) -> Any:  # batch-read has no --json: it always prints JSON
        result = runner.invoke(app, [*args, "-C", self.root])
        assert result.exit_code == 0, (args, result.output)
        data = json.loads(result.stdout)
        self.outputs.setdefault("batch-read", []).append(data)
        return data


@pytest.fixture(params=["sqlite", "postgresql"])
def stores(
    request: pytest.FixtureRequest, tmp_path: Path, pg_url: str
) -> Iterator[tuple[str, str | None]]:
    """(metadata URL, shared studies URL): studies need PostgreSQL whatever the metadata is."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'meta.db'}", pg_url
        return
    # a session time zone far from UTC: the database answers +05:30, kennel must say UTC
    yield pg_url.replace("options=", "options=-ctimezone%3DAsia/Kolkata%20"), None
    from sqlalchemy import create_engine, text

    from kennel.db.studies import schema_of

    engine = create_engine(pg_url)
    with engine.begin() as connection:
        connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema_of(pg_url)}_optuna" CASCADE'))
    engine.dispose()


def _project(tmp_path: Path, metadata_url: str, studies_url: str | None) -> Path:
    search = {**TINY_TRAIN["search"], "storage": studies_url}  # type: ignore[dict-item]
    sections: dict[str, dict[str, object]] = {
        "store": {"metadata_url": metadata_url},
        "train": {**TINY_TRAIN, "epochs": 1, "search": search},
        "serve": {"poll_s": 0.2, "log_flush_s": 0.1},
        "environments": {
            "staging": {"host": "127.0.0.1", "port": free_port(), "alias": "staging"},
            "production": {"host": "127.0.0.1", "port": free_port(), "alias": "production"},
        },
        "release": {"mode": "delivery", "certification": {"max_p99_ms": 10000.0}},
        "gates": {"beat_majority": False},
        "auth": {"local_role": "admin"},
        "feed": {"url": "redis://127.0.0.1:6379/0", "stream": f"kennel:json-{free_port()}"},
    }
    return make_project(tmp_path / "p", sections=sections, workers=1).root


def test_every_json_time_is_aware_iso_8601(
    tmp_path: Path, stores: tuple[str, str | None], pg_url: str, broker: None
) -> None:
    root = _project(tmp_path, *stores)
    run = Sweep(root)
    lake, more = tmp_path / "lake", tmp_path / "more"
    run("init", str(root), project=False)
    run("data", "synth", str(lake), "--count", "80", "--seed", "3", "--size", "64", project=False)
    run("data", "synth", str(more), "--count", "8", "--seed", "4", "--size", "64", project=False)
    run("data", "ingest", str(lake), "-d", "park")
    run("data", "ingest", str(more), "-d", "park")
    run("data", "list")
    run("data", "show", "park")
    run("data", "diff", "park@v1", "park@v2")
    feud = tmp_path / "feud"  # one picture under two labels: a label dispute to settle
    (feud / "dog").mkdir(parents=True)
    picture = sorted((more / "cat").glob("*.jpg"))[0]
    shutil.copytree(more / "cat", feud / "cat")
    shutil.copy(picture, feud / "dog" / "same.jpg")
    run("data", "ingest", str(feud), "-d", "feud")
    (dispute,) = run("data", "disputes", "feud")
    run("data", "settle", "feud", dispute["sha256"], "--label", "cat")
    run("pipeline", "run", "--dataset", "park@v1")  # pets@1
    run("train", "-d", "park")  # pets@2
    run("tune", "start", "park", "--trials", "1", "--study", "s1")
    run("tune", "worker", "--study", "s1")
    run("tune", "status", "--study", "s1")
    runs = run("runs", "list")
    run("runs", "show", runs[0]["id"])
    run("models", "list")
    run("models", "show", "pets@1")
    run("models", "download", "pets@1", str(tmp_path / "bundle"))
    run("models", "alias", "pets@2", "candidate")
    run("lineage", "model", "pets@1")
    made = run("token", "create", "--role", "viewer", "--name", "v")
    run("token", "list")
    run("token", "revoke", made["id"])
    ws = Workspace.load(root)
    staging, production = start_env(ws, "staging"), start_env(ws, "production")
    try:
        run("deploy", "pets@1", "--to", "staging")
        run("approve", "pets@1", "--note", "fine")
        run("release", "pets@1", "--to", "production")
        run("deploy", "pets@2", "--to", "staging")
        run("approve", "pets@2", "--note", "fine too")
        run("release", "pets@2", "--to", "production")
        run("rollback", "--env", "production")  # back to pets@1
        run("reject", "pets@2", "--note", "not this one after all")
        run("publish", "pets@1", "--alias", "production")
        run("models", "history", "pets")
        wait_until(lambda: environments.served_version(production.url) == 1)
        answer = httpx.post(f"{production.url}/v1/predict", content=jpeg(seed=1))
        assert answer.status_code == 200, answer.text
        prediction = answer.json()["prediction_id"]
        wait_until(lambda: PredictionStore(ws.db).get(prediction) is not None)
    finally:
        production.stop()
        staging.stop()
        environments.stop(ws.project.state_dir, "staging")
        ws.close()
    run("lineage", "prediction", prediction)
    run("analyze", "saliency", prediction, "--grid", "2", "--out", str(tmp_path / "s.html"))
    run("models", "compliance", "pets@1", "--out", str(tmp_path / "c.html"))
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.jpg").write_bytes(jpeg(seed=2))
    run("predict", str(photos), "--model", "pets@1", lines=True)
    run("batch-score", "--input", "dataset:park@v2", "--table", "scores", "--model", "pets@1")
    run.read("batch-read", (more / "cat").as_posix(), "--table", "scores")
    run("export", "package", "pets@1", "--out", str(tmp_path / "dist"))
    # replicas need shared stores: a project of its own (nothing in it is opened)
    shared = {"metadata_url": pg_url, "artifacts_url": "s3://kennel-artifacts/p"}
    cluster = make_project(tmp_path / "k8s", sections={"store": shared}).root
    run("export", "k8s", "--out", str(tmp_path / "deploy"), root=cluster)
    run("bench", "patterns", "--images", "10", "--concurrency", "2")
    clip = tmp_path / "clip.mp4"
    run("data", "synth-video", str(clip), "--dataset", "park", "--segments", "2",
        "--seconds", "0.5", "--fps", "4", "--size", "64")  # fmt: skip
    run("watch", str(clip), "--model", "pets@1", "--fps", "0")
    run("monitor", "run", "--env", "production", "--window", "1d")
    run("alerts", "list")
    run("telemetry", "host")
    run("telemetry", "ingest", "--seconds", "0.2")
    run("telemetry", "anomalies")
    newest = sorted((root / ".kennel" / "artifacts" / "audit" / "anchors").glob("*"))[-1]
    newest.unlink()  # as a failed anchor write leaves it
    run("audit", "anchor", str(int(newest.name)))
    run("audit", "verify")
    run("audit", "log", "--limit", "500")

    assert set(run.outputs) == json_commands()  # every --json command was run above
    seen = 0
    for command, documents in run.outputs.items():
        for where, value in times(documents):
            assert isinstance(value, str), (command, where, value)
            assert value[10:11] == "T", (command, where, value)
            parsed = datetime.fromisoformat(value)
            assert parsed.utcoffset() == timedelta(0), (command, where, value)
            seen += 1
    # what must have had times: the stores that once answered naive ones, and the audit log
    for command in ("data list", "runs list", "models list", "models history", "audit log"):
        assert any(True for _ in times(run.outputs[command])), command
    assert seen > 50


@pytest.mark.parametrize(
    "document",
    [{"at": "2026-11-29 17:00:00"}, {"a": ["2026-11-29T17:00:00"]}, {"created_at": 1764435600}],
)
def test_the_check_catches_what_it_should(document: dict[str, Any]) -> None:
    found = list(times(document))
    assert found
    bad = [
        v
        for _w, v in found
        if not isinstance(v, str) or v[10:11] != "T" or datetime.fromisoformat(v).tzinfo is None
    ]
    assert bad
