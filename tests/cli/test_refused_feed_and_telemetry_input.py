"""Bad input to the feed and telemetry commands: a key file that is not the key it must be, a
device id that cannot be a topic level, a fault outside the run, an alert state that does not
exist. Each is one line on stderr and a non-zero exit, and nothing is written or published."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import get_args

import pytest
import redis
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt import client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from typer.testing import CliRunner, Result

from kennel.cli.main import app
from kennel.cli.monitor import AlertState
from kennel.errors import ConfigError
from kennel.govern.alerts import STATES, AlertStore
from kennel.monitor import telemetry
from kennel.stream import signing
from kennel.wiring import Workspace
from tests.conftest import make_project, unavailable
from tests.serving import served_project

REDIS = "redis://127.0.0.1:6379/0"
runner = CliRunner()


def refused(result: Result, code: int = 2) -> str:
    """The one line a refused command leaves on stderr."""
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_project(tmp_path / "p").root


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        unavailable(f"Redis unreachable at 127.0.0.1:6379: {exc.__class__.__name__}")
    yield client
    client.close()


class Heard:
    """Every message a real MQTT broker delivers under ``kennel/devices/#`` meanwhile."""

    def __init__(self) -> None:
        self.topics: list[str] = []
        self._ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex}")
        self.client.on_connect = lambda c, *_: c.subscribe(f"{telemetry.TOPIC}/#", qos=1)
        self.client.on_subscribe = lambda *_: self._ready.set()
        self.client.on_message = lambda _c, _u, msg: self.topics.append(msg.topic)

    def __enter__(self) -> Heard:
        self.client.connect("127.0.0.1", 1883)
        self.client.loop_start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *_: object) -> None:
        time.sleep(0.5)  # what was published has arrived
        self.client.loop_stop()
        self.client.disconnect()


# -- the feed's keys ----------------------------------------------------------------------------
def _pem_files(folder: Path) -> dict[str, Path]:
    folder.mkdir()
    private = Ed25519PrivateKey.generate()
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    files = {
        "garbage": b"not a key\n",
        "empty": b"",
        "truncated": signing.public_pem(private.public_key())[:60],
        "private key": private.private_bytes(serialization.Encoding.PEM,
                                             serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()),
        "EC public key": other.public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo),
        "binary": bytes(range(256)),
    }  # fmt: skip
    paths = {}
    for name, data in files.items():
        paths[name] = folder / f"{name.replace(' ', '-')}.pub"
        paths[name].write_bytes(data)
    return paths


def test_subscribe_refuses_a_public_key_file_that_is_not_an_ed25519_public_key(
    root: Path, tmp_path: Path, redis_client: redis.Redis
) -> None:
    stream = f"kennel:test:{uuid.uuid4().hex[:8]}"
    keys = _pem_files(tmp_path / "keys")
    cases = {name: str(path) for name, path in keys.items()}
    cases.update(folder=str(tmp_path / "keys"), missing=str(tmp_path / "nowhere.pub"))
    for name, path in cases.items():
        result = runner.invoke(app, ["subscribe", "--url", REDIS, "--stream", stream,
                                     "--public-key", path, "-C", str(root)])  # fmt: skip
        line = refused(result)
        assert path in line, (name, line)
        if name == "EC public key":
            assert line.endswith("is not an Ed25519 public key"), line
        elif name == "folder":
            assert line.endswith("is not a file"), line
        elif name == "missing":
            assert "not found" in line, line
        else:
            assert "is not a PEM public key" in line, (name, line)
    assert redis_client.exists(stream) == 0  # the feed was never touched
    assert not (root / ".kennel" / "feed").exists()  # no subscriber state was begun


@pytest.fixture(scope="module")
def publishing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project whose production alias names pets@1, with a feed and a local admin."""
    project = served_project(tmp_path_factory.mktemp("publish"), models=1)
    config = yaml.safe_load((project.root / "kennel.yaml").read_text())
    config["feed"] = {**config.get("feed", {}), "url": REDIS,
                      "stream": f"kennel:test:{uuid.uuid4().hex[:8]}"}  # fmt: skip
    config["auth"] = {**config.get("auth", {}), "local_role": "admin"}
    (project.root / "kennel.yaml").write_text(yaml.safe_dump(config))
    ws = Workspace.load(project.root)
    try:
        ws.registry.set_alias("pets", "production", 1, actor="t", reason="to publish")
    finally:
        ws.close()
    return project.root


def test_publish_refuses_a_signing_key_file_that_is_not_an_ed25519_private_key(
    publishing: Path, tmp_path: Path, redis_client: redis.Redis
) -> None:
    stream = yaml.safe_load((publishing / "kennel.yaml").read_text())["feed"]["stream"]
    keys = publishing / ".kennel" / "keys"
    keys.mkdir(parents=True, exist_ok=True)
    pem = keys / signing.PRIVATE
    encrypted = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    public = signing.public_pem(Ed25519PrivateKey.generate().public_key())
    try:
        for data, said in ((b"not a key\n", "is not a PEM private key"),
                           (public, "is not a PEM private key"),
                           (encrypted, "is encrypted")):  # fmt: skip
            pem.write_bytes(data)
            result = runner.invoke(app, ["publish", "pets@1", "--alias", "production",
                                         "-C", str(publishing)])  # fmt: skip
            line = refused(result)
            assert str(pem) in line and said in line, line
            assert pem.read_bytes() == data  # never replaced by a new key
            assert not (keys / signing.PUBLIC).exists()
            assert redis_client.exists(stream) == 0  # nothing announced
    finally:
        redis_client.delete(stream)


# -- telemetry: device ids and faults -----------------------------------------------------------
@pytest.mark.parametrize(
    "device",
    ["{m}/b", "{m}+", "+", "{m}#", "#", "", "{m} 01", "c" * 129, "{m}\x7f", "x" * 70_000],
)  # fmt: skip
def test_simulate_refuses_a_device_id_that_cannot_be_a_topic_level(
    broker: None, device: str
) -> None:
    marker = f"dev{uuid.uuid4().hex[:8]}"
    given = device.format(m=marker)
    with Heard() as heard:
        result = runner.invoke(app, ["telemetry", "simulate", "--device", given,
                                     "--seconds", "0.4", "--rate", "5"])  # fmt: skip
        line = refused(result)
    assert line.startswith("error: device id ") and "letters, digits, '.', '_' or '-'" in line
    assert len(line) < 400  # a 70,000-character id is not echoed whole
    assert [t for t in heard.topics if marker in t or t.startswith(f"{telemetry.TOPIC}//")] == []


@pytest.mark.parametrize(
    ("fault", "said"),
    [
        ("overheat@soon", "expected KIND@SECONDS"),
        ("overheat@nan", "expected KIND@SECONDS"),
        ("overheat@inf", "expected KIND@SECONDS"),
        ("overheat@1+", "expected KIND@SECONDS"),
        ("overheat@1+1e999", "expected KIND@SECONDS"),
        ("overheat@\u0661", "expected KIND@SECONDS"),  # an Arabic-Indic 1 read as 1 s
        ("overheat@1+\uff12", "expected KIND@SECONDS"),  # a full-width 2
        ("overheat@-1", "start at 0 s or later"),
        ("overheat@2+-1", "last more than 0 s"),  # a range that ends before it starts
        ("tamper@1+0", "last more than 0 s"),
        ("overheat@5", "starts after the run ends (2 s)"),
        ("overheat@2", "starts after the run ends (2 s)"),
        ("melt@1", "expected KIND@SECONDS with KIND in"),
    ],
)
def test_simulate_refuses_a_fault_time_outside_the_run(broker: None, fault: str, said: str) -> None:
    device = f"dev{uuid.uuid4().hex[:8]}"
    with Heard() as heard:
        result = runner.invoke(app, ["telemetry", "simulate", "--device", device,
                                     "--seconds", "2", "--fault", "overheat@0.5+0.5",
                                     "--fault", fault])  # fmt: skip
        line = refused(result)
    assert said in line, line
    assert [t for t in heard.topics if device in t] == []  # not one reading was published


def test_a_device_id_and_faults_that_fit_are_still_published(broker: None) -> None:
    device = f"cam-{uuid.uuid4().hex[:6]}.Süd_2"
    with Heard() as heard:
        result = runner.invoke(app, ["telemetry", "simulate", "--device", device,
                                     "--seconds", "0.4", "--rate", "5",
                                     "--fault", "overheat@0+0.2"])  # fmt: skip
    assert result.exit_code == 0, result.output
    ours = [t for t in heard.topics if t.startswith(f"{telemetry.TOPIC}/{device}/")]
    assert len(ours) == 2 * len(telemetry.SENSORS)


# -- alerts -------------------------------------------------------------------------------------
def test_alerts_list_refuses_an_unknown_state_naming_the_valid_ones(root: Path) -> None:
    assert get_args(AlertState) == STATES  # the CLI's choices are the store's states
    for state, hint in (("bogus", ""), ("opne", "; did you mean 'open'?"),
                        ("resolve", "; did you mean 'resolved'?")):  # fmt: skip
        line = refused(runner.invoke(app, ["alerts", "list", "--state", state, "-C", str(root)]))
        assert f"'{state}' is not one of 'open', 'acknowledged', 'resolved'{hint}" in line, line
    listed = runner.invoke(app, ["alerts", "list", "--state", "open", "--json", "-C", str(root)])
    assert listed.exit_code == 0 and listed.stdout.strip() == "[]"


def test_the_alert_store_refuses_an_unknown_state_too(root: Path) -> None:
    ws = Workspace.load(root)
    try:
        with pytest.raises(ConfigError, match="expected one of open, acknowledged, resolved"):
            AlertStore(ws.db).list(state="closed")
        assert AlertStore(ws.db).list(state="resolved") == []
    finally:
        ws.close()
