"""Shared fixtures. Integration tests talk to real services; they skip when a service is
unreachable on a user's machine, but fail instead when CI=true."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kennel.config import Project, init_project
from kennel.wiring import Workspace

REPO = Path(__file__).resolve().parents[1]
PG_BASE = os.environ.get("KENNEL_TEST_PG", "postgresql+psycopg://127.0.0.1:5432/test")
# the MariaDB every development and CI machine runs (root, no password), for SQL sources
MARIADB_BASE = os.environ.get("KENNEL_TEST_MARIADB", "mysql+pymysql://root@127.0.0.1:3306/test")
IN_CI = os.environ.get("CI", "").lower() == "true"
# Another CPU's kernels give a trained model other numbers; another seed does the same here.
# `KENNEL_TEST_SEED=3 make test` trains every test project with seed 3: a test that only
# passes for seed 0 depends on bit-exact kernels (docs/development.md).
TRAIN_SEED = int(os.environ["KENNEL_TEST_SEED"]) if os.environ.get("KENNEL_TEST_SEED") else None


def unavailable(reason: str) -> None:
    """Skip on a user's machine; fail in CI, where every service must be there."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: integration tests may not skip)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = Path(os.environ.get("KENNEL_SHARED_DATA", REPO.parent / "shared" / "datasets"))
    if not (path / "dogs-vs-cats-mini.zip").is_file():
        unavailable(f"shared datasets not found at {path} (set KENNEL_SHARED_DATA)")
    return path


@pytest.fixture(scope="session")
def pg_available() -> str:
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError

    engine = create_engine(PG_BASE, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except OperationalError as exc:
        unavailable(f"PostgreSQL unreachable at {PG_BASE}: {exc.__class__.__name__}")
    finally:
        engine.dispose()
    return PG_BASE


@pytest.fixture
def pg_url(pg_available: str) -> Iterator[str]:
    """A PostgreSQL URL whose tables live in a fresh schema, dropped afterwards."""
    from sqlalchemy import create_engine, text

    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(pg_available)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield f"{pg_available}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.fixture(scope="session")
def mariadb_url() -> str:
    """MariaDB's URL (a test names its own tables there, and drops them)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError

    engine = create_engine(MARIADB_BASE, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except (OperationalError, ImportError) as exc:
        unavailable(f"MariaDB unreachable at {MARIADB_BASE}: {exc.__class__.__name__}")
    finally:
        engine.dispose()
    return MARIADB_BASE


@pytest.fixture(params=["sqlite", "postgresql"])
def metadata_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'meta.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


def make_project(
    root: Path, sections: dict[str, dict[str, object]] | None = None, **data: object
) -> Project:
    """A fresh project under ``root``; keyword arguments override the ``data:`` section and
    ``sections`` any other top-level section. Its models need not beat the majority class
    (``gates.beat_majority: false``): a test's tiny model on a few pictures may not, on some
    CPU, and `kennel train` exits 1 for a model that fails its gates."""
    project, _ = init_project(root)
    path = root / "kennel.yaml"
    template = path.read_text()  # `kennel init`'s, comments and all (or an earlier call's)
    if "  beat_majority: true " in template:
        path.write_text(template.replace("  beat_majority: true ", "  beat_majority: false", 1))
        project, _ = init_project(root)
    if data or sections or TRAIN_SEED is not None:
        config = yaml.safe_load((root / "kennel.yaml").read_text())
        config["data"].update(data)
        if TRAIN_SEED is not None:
            config.setdefault("train", {})["seed"] = TRAIN_SEED
        for key, values in (sections or {}).items():
            config.setdefault(key, {}).update(values)
        (root / "kennel.yaml").write_text(yaml.safe_dump(config))
        project, _ = init_project(root)
    return project


# Training settings small enough for tests: a tiny CNN at 64 px, two epochs, no search.
TINY_TRAIN = {
    "arch": "small_cnn",
    "image_size": 64,
    "epochs": 2,
    "batch_size": 32,
    "search": {"trials": 1},
}


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Workspace]:
    ws = Workspace(make_project(tmp_path / "proj", workers=1))
    yield ws
    ws.close()


@pytest.fixture(scope="session")
def park_model(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """A simulator park (day scenes: cats, dogs and a quarter empty lawns) and a small CNN
    trained on it to about 95 % (``pets@1``). Shared by the video and monitoring tests, which
    must not change its registry (they may add predictions under their own environments)."""
    from kennel.datasets.synth import EMPTY, generate
    from kennel.pipeline.build import BuildOptions

    root = tmp_path_factory.mktemp("park")
    generate(root / "lake", 500, seed=3, empty=0.25)
    project = make_project(
        root / "p",
        # every epoch runs: early stopping on a 40-image validation split is noise, and a run
        # it cut short at a poor epoch left a 65 % model on one CPU and 95 % on another
        sections={"train": {**TINY_TRAIN, "image_size": 96, "epochs": 12, "patience": 12}},
        workers=1,
        labels=["cat", "dog", EMPTY],
    )
    ws = Workspace(project)
    try:
        ws.ingestor().run(ws.source(str(root / "lake")), "park")
        ws.builder().build("park", BuildOptions(trials=1))
    finally:
        ws.close()
    return project


@pytest.fixture(scope="session")
def cluster() -> Iterator[Any]:
    """A local Ray cluster: a head without CPUs and two one-CPU worker nodes
    (tests/raycluster.py). A test that removes a node adds one back."""
    from tests import raycluster

    yield from raycluster.start()


# -- S3: a real S3-protocol server on loopback (moto's standalone server) --------------------

S3_BASE = os.environ.get("KENNEL_TEST_S3", "http://127.0.0.1:5000")
S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def _answers(url: str) -> bool:
    import httpx

    try:
        httpx.get(url, timeout=2.0)
        return True
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """The endpoint of an S3-protocol server: KENNEL_TEST_S3 (default 127.0.0.1:5000, which
    .ci/run starts), else, off CI, moto's server started here in a thread on a free port."""
    if _answers(S3_BASE):
        yield S3_BASE
        return
    if IN_CI:
        unavailable(f"no S3 server answers at {S3_BASE} (.ci/run starts one)")
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        unavailable("moto is not installed (pip install 'moto[server]')")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh bucket (its name) on the S3 server, emptied and removed afterwards; the AWS
    environment (endpoint, test credentials) points at the server for this test and for the
    worker processes it spawns."""
    import s3fs

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for key, value in S3_ENV.items():
        monkeypatch.setenv(key, value)
    bucket = f"kennel-{uuid.uuid4().hex[:16]}"
    fs = s3fs.S3FileSystem(endpoint_url=s3_endpoint, skip_instance_cache=True, **_creds())
    fs.mkdir(bucket)
    try:
        yield bucket
    finally:
        fs.rm(bucket, recursive=True)


def _creds() -> dict[str, str]:
    return {"key": S3_ENV["AWS_ACCESS_KEY_ID"], "secret": S3_ENV["AWS_SECRET_ACCESS_KEY"]}


def s3_keys(bucket: str, prefix: str = "", *, endpoint: str | None = None) -> list[str]:
    """Every key in ``bucket`` under ``prefix``, read straight from the server."""
    import s3fs

    fs = s3fs.S3FileSystem(
        endpoint_url=endpoint or os.environ["AWS_ENDPOINT_URL"],
        skip_instance_cache=True,
        **_creds(),
    )
    root = f"{bucket}/{prefix}".rstrip("/")
    return [path[len(bucket) + 1 :] for path in fs.find(root)]


@pytest.fixture
def broker() -> None:
    """The MQTT broker (Mosquitto) every development and CI machine runs on 127.0.0.1:1883."""
    try:
        socket.create_connection(("127.0.0.1", 1883), timeout=2).close()
    except OSError as exc:
        unavailable(f"MQTT broker unreachable at 127.0.0.1:1883: {exc.__class__.__name__}")


@pytest.fixture(scope="module")
def rabbitmq() -> str:
    """The AMQP URL of the RabbitMQ every development and CI machine runs (guest/guest)."""
    import pika

    from kennel.stream.rpc import DEFAULT_URL

    try:
        pika.BlockingConnection(pika.URLParameters(DEFAULT_URL)).close()
    except pika.exceptions.AMQPError as exc:
        unavailable(f"RabbitMQ unreachable at 127.0.0.1:5672: {exc.__class__.__name__}")
    return DEFAULT_URL
