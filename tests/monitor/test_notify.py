"""Alert actions that reach outside, against real loopback servers: the webhook POSTs the
alert as JSON; email speaks SMTP to the configured server; a dead endpoint is recorded as a
failed action on the alert and does not stop the others."""

from __future__ import annotations

import json
import socketserver
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml

from kennel.config import RuleConfig, init_project
from kennel.db.audit import AuditLog
from kennel.govern import actions
from kennel.govern.actions import run_actions
from kennel.govern.alerts import AlertStore
from kennel.govern.cycle import undone
from kennel.monitor.runner import MonitorResult
from kennel.serve.server import free_port
from kennel.wiring import Workspace
from tests.serving import served_project


class _Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        _Hook.received.append({"type": self.headers["content-type"], "json": json.loads(body)})
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


class _Smtp(socketserver.StreamRequestHandler):
    """Just enough of RFC 5321 for smtplib: greet, EHLO, MAIL, RCPT, DATA, QUIT."""

    mails: ClassVar[list[dict[str, Any]]] = []

    def handle(self) -> None:
        self.wfile.write(b"220 test ESMTP\r\n")
        mail: dict[str, Any] = {"rcpt": []}
        while line := self.rfile.readline():
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                self.wfile.write(b"250 test\r\n")
            elif verb == b"MAIL":
                mail["from"] = line.decode().strip()
                self.wfile.write(b"250 ok\r\n")
            elif verb == b"RCPT":
                mail["rcpt"].append(line.decode().split(":", 1)[1].strip())
                self.wfile.write(b"250 ok\r\n")
            elif verb == b"DATA":
                self.wfile.write(b"354 go ahead\r\n")
                data = b""
                while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                    data += chunk
                mail["data"] = data.decode()
                _Smtp.mails.append(mail)
                self.wfile.write(b"250 queued\r\n")
            elif verb == b"QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:
                self.wfile.write(b"502 not implemented\r\n")


@pytest.fixture
def servers() -> Iterator[tuple[int, int]]:
    hook = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    smtp = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Smtp)
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (hook, smtp)]
    for t in threads:
        t.start()
    try:
        yield hook.server_address[1], smtp.server_address[1]
    finally:
        for s in (hook, smtp):
            s.shutdown()
            s.server_close()


def test_webhook_and_email_reach_real_servers_and_a_dead_one_is_recorded(
    tmp_path: Path, servers: tuple[int, int]
) -> None:
    hook_port, smtp_port = servers
    project, _ = init_project(tmp_path / "p")
    path = project.root / "kennel.yaml"
    config = yaml.safe_load(path.read_text())
    config["monitor"] = {
        # a chat service's webhook: its key is in the path (and here a password too)
        "webhook_url": f"http://hook:hookpass@127.0.0.1:{hook_port}/services/T000/SECRETKEY",
        "smtp": {"host": "127.0.0.1", "port": smtp_port, "to": ["qa@park.example"]},
    }
    path.write_text(yaml.safe_dump(config))
    ws = Workspace.load(project.root)
    try:
        store = AlertStore(ws.db)
        rule = RuleConfig(name="accuracy-drop", metric="performance.accuracy", op="<",
                          threshold=0.85, severity="critical")  # fmt: skip
        alert = store.evaluate([rule], {"performance.accuracy": 0.59}, subject="production")
        until = datetime.now(UTC)
        result = MonitorResult("run-1", "production", until - timedelta(hours=1), until, "pets",
                               3, {"performance.accuracy": 0.59})  # fmt: skip
        outcomes = run_actions(ws.actions(), store, alert.opened[0], result, ["webhook", "email"])
        assert outcomes == {
            "webhook": f"POST http://127.0.0.1:{hook_port} (monitor.webhook_url): 204",
            "email": "sent to qa@park.example",
        }
        [posted] = _Hook.received
        assert posted["type"] == "application/json"
        assert posted["json"]["alert"]["rule"] == "accuracy-drop"
        assert posted["json"]["model"] == "pets@3" and posted["json"]["monitor_run"] == "run-1"
        [mail] = _Smtp.mails
        assert mail["rcpt"] == ["<qa@park.example>"]
        assert "Subject: [kennel critical] accuracy-drop on production" in mail["data"]
        assert "performance.accuracy = 0.59 < 0.85" in mail["data"]

        # the receiver is gone: the failure is written on the alert, email still goes out
        dead = f"http://127.0.0.1:{free_port()}/alerts"
        ctx = ws.actions()
        ctx.config = ctx.config.model_copy(
            update={"monitor": ctx.config.monitor.model_copy(update={"webhook_url": dead})}
        )
        again = run_actions(ctx, store, alert.opened[0], result, ["webhook", "email"])
        assert again["webhook"].startswith("failed: ConnectError")
        assert again["email"] == "sent to qa@park.example" and len(_Smtp.mails) == 2
        recorded = store.list()[0].actions
        assert recorded["webhook"].startswith("failed:") and recorded["email"].startswith("sent")
        # what every viewer reads (the alert, the audit log) never holds the webhook's secrets
        audit = json.dumps([e.__dict__ for e in AuditLog(ws.db).entries(limit=100)], default=str)
        for secret in ("SECRETKEY", "hookpass"):
            assert secret not in audit and secret not in json.dumps(store.list()[0].actions)
    finally:
        ws.close()


def test_a_rollback_action_judges_only_the_version_served(tmp_path: Path) -> None:
    """A window that mixed the previous version's predictions with the release that fixed
    them rolled that release back (judged by the old version's accuracy, then sent back to
    it); a rollback now acts only on a window of the version served."""
    project = served_project(tmp_path, models=2)
    ws = Workspace.load(project.root)
    try:
        for version in (1, 2):
            ws.registry.set_alias("pets", "production", version, actor="test", reason="release")
        store = AlertStore(ws.db)
        rule = RuleConfig(name="accuracy-drop", metric="performance.accuracy", op="<",
                          threshold=0.85, severity="critical", actions=["rollback"])  # fmt: skip
        alert = store.evaluate([rule], {"performance.accuracy": 0.8}, subject="production")
        until = datetime.now(UTC)

        def window(*versions: int, accuracy: float = 0.8) -> MonitorResult:
            return MonitorResult("run", "production", until - timedelta(hours=24), until, "pets",
                                 versions[0], {"performance.accuracy": accuracy},
                                 versions=list(versions))  # fmt: skip

        mixed = run_actions(ws.actions(), store, alert.opened[0], window(1, 2), ["rollback"])
        assert mixed["rollback"].startswith(
            "skipped: the window's predictions came from "
            "version(s) 1, 2, while production serves 2 now"
        )
        assert ws.registry.resolve("pets@production").version == 2
        old = run_actions(ws.actions(), store, alert.opened[0], window(1), ["rollback"])
        assert old["rollback"].startswith("skipped") and "version(s) 1," in old["rollback"]
        done = run_actions(
            ws.actions(), store, alert.opened[0], window(2, accuracy=0.61), ["rollback"]
        )
        assert done["rollback"] == "pets@production: 2 -> 1"
        assert ws.registry.resolve("pets@production").version == 1
        # the reason quotes the window it acted on (0.61), not the one that raised it (0.8)
        moved = ws.registry.alias_history("pets", "production")[-1]
        assert moved.reason == (
            f"alert accuracy-drop: performance.accuracy = 0.61 in the window "
            f"{until - timedelta(hours=24):%Y-%m-%d %H:%M:%S} to {until:%Y-%m-%d %H:%M:%S} UTC "
            "(from 2)"
        )
    finally:
        ws.close()


class _Dripping(BaseHTTPRequestHandler):
    """Answers 200 and promises 100 bytes, sent one every second: each read is in time."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["content-length"]))
        self.send_response(200)
        self.send_header("content-length", "100")
        self.end_headers()
        for _ in range(100):
            try:
                self.wfile.write(b"x")
                self.wfile.flush()
            except OSError:
                return
            time.sleep(1.0)

    def log_message(self, *args: object) -> None:
        pass


def test_a_webhook_that_drips_its_answer_ends_at_the_deadline_and_the_cycle_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """httpx's timeout is per read: a receiver sending a byte a second held the cycle (and every
    later alert's actions) for good. The status line is the answer, and all of it has a
    deadline."""
    monkeypatch.setattr(actions, "ACTION_DEADLINE_S", 2.0)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Dripping)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    project, _ = init_project(tmp_path / "p")
    ws = Workspace.load(project.root)
    try:
        store = AlertStore(ws.db)
        rule = RuleConfig(name="quiet", metric="window.n", op="<", threshold=1)
        alert = store.evaluate([rule], {"window.n": 0.0}, subject="production").opened[0]
        until = datetime.now(UTC)
        result = MonitorResult("run-1", "production", until - timedelta(hours=1), until, "pets",
                               1, {"window.n": 0.0})  # fmt: skip
        ctx = ws.actions()
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        ctx.config = ctx.config.model_copy(
            update={"monitor": ctx.config.monitor.model_copy(update={"webhook_url": url})}
        )
        began = time.monotonic()
        outcomes = run_actions(ctx, store, alert, result, ["webhook", "log"])
        assert time.monotonic() - began < 5
        # the answer's status came at once: the dripping body is not waited for
        assert (
            outcomes["webhook"] == f"POST http://127.0.0.1:{server.server_address[1]} "
            "(monitor.webhook_url): 200"
        )
        assert outcomes["log"].startswith("logged")
    finally:
        server.shutdown()
        server.server_close()
        ws.close()


def test_a_rollback_that_waited_for_a_window_of_the_served_version_is_tried_again() -> None:
    waited = "skipped: the window's predictions came from version(s) 1, 2, while production"
    assert undone(["log", "rollback"], {"log": "logged: x", "rollback": waited}) == ["rollback"]
    assert undone(["log", "rollback"], {"log": "logged: x", "rollback": "pets: 2 -> 1"}) == []
    assert undone(["webhook"], {"webhook": "failed: ConnectError"}) == []  # done, as it went
