"""A password in a URL never leaves the command line: not in what a command prints, not in the
one error line, even where a library's own message repeats the URL it was given."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from kennel.cli.main import app
from tests.conftest import make_project
from tests.serving import served_project

runner = CliRunner()
SECRET = "S3CRETPW"
NO_CREDENTIALS = (
    "s3:// URLs take no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
    "(or AWS_PROFILE) instead"
)


def error_line(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code != 0, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert SECRET not in result.output and "guest:guest" not in result.output
    return lines[0]


def test_an_s3_source_with_credentials_is_refused_without_showing_them(tmp_path: Path) -> None:
    root = str(make_project(tmp_path / "p").root)
    line = error_line("data", "ingest", f"s3://AKIA:{SECRET}@bucket/x", "-d", "x", "-C", root)
    assert line == f"error: cannot open s3://AKIA:***@bucket/x: {NO_CREDENTIALS}"


def test_an_artifact_store_with_credentials_is_refused_without_showing_them(
    tmp_path: Path,
) -> None:
    project = make_project(tmp_path / "p")
    config_file = project.root / "kennel.yaml"
    config = yaml.safe_load(config_file.read_text())
    config["store"]["artifacts_url"] = f"s3://AKIA:{SECRET}@bucket/x"
    config_file.write_text(yaml.safe_dump(config))
    line = error_line("data", "list", "-C", str(project.root))
    assert line == f"error: {config_file}: store.artifacts_url: {NO_CREDENTIALS}"


def test_a_web_source_that_fails_shows_why_without_the_password(tmp_path: Path) -> None:
    root = str(make_project(tmp_path / "p").root)
    url = f"http://user:{SECRET}@127.0.0.1:1/x.zip"
    line = error_line("data", "ingest", url, "-d", "x", "-C", root)
    shown = "http://user:***@127.0.0.1:1/x.zip"
    assert line.startswith(f"error: cannot open zip archive {shown}: "), line
    # the client's reason, not fsspec's "not found" naming the URL again, password and all
    assert "Cannot connect to host 127.0.0.1:1" in line, line


@pytest.fixture(scope="module")
def model_project(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(served_project(tmp_path_factory.mktemp("rpc"), models=1).root)


def test_rpc_worker_shows_its_broker_without_the_password(
    rabbitmq: str, model_project: str
) -> None:
    assert "guest:guest@" in rabbitmq
    command = ["rpc-worker", "--model", "pets@1", "--url", rabbitmq, "-C", model_project]
    command += ["--queue", "kennel.test.secrets"]
    with subprocess.Popen(
        [sys.executable, "-m", "kennel.cli", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as worker:
        try:
            assert worker.stdout is not None
            first = worker.stdout.readline()
        finally:
            worker.terminate()
            worker.wait(30)
    shown = rabbitmq.replace("guest:guest@", "guest:***@")
    assert first.strip() == f"serving pets@1 on kennel.test.secrets at {shown}"


def test_rpc_worker_that_cannot_reach_its_broker_hides_the_password(model_project: str) -> None:
    url = "amqp://guest:guest@127.0.0.1:1/"
    line = error_line("rpc-worker", "--model", "pets@1", "--url", url, "-C", model_project)
    assert line == "error: cannot reach RabbitMQ at amqp://guest:***@127.0.0.1:1/: " + (
        "AMQPConnectionError"
    )


@pytest.mark.parametrize(
    ("given", "shown"),
    [
        ("amqp://guest:AMQP/SECRET@127.0.0.1:1/", "amqp://guest:***@127.0.0.1:1/"),  # a "/"
        ("http://ghp_TOKEN@127.0.0.1:1/x.zip", "http://***@127.0.0.1:1/x.zip"),  # a token
        ("http://h/x?X-Amz-Signature=S&X-Amz-Security-Token=T&a=1",
         "http://h/x?X-Amz-Signature=***&X-Amz-Security-Token=***&a=1"),
        ("x?access_token=T&client_secret=C&sig=S", "x?access_token=***&client_secret=***&sig=***"),
        ("http://h/x.zip?token=abc layout=auto", "http://h/x.zip?token=*** layout=auto"),
        ("see ?keyboard=qwerty and file?passenger=3", "see ?keyboard=qwerty and file?passenger=3"),
        # an e-mail login, a raw "@" in the password, camelCase and short names (review)
        ("ftp://dave@example.com:FTPSECRET@127.0.0.1:21/x", "ftp://dave@example.com:***@127.0.0.1:21/x"),
        ("http://bob:SEC@RETK@127.0.0.1:1/cat/", "http://bob:***@127.0.0.1:1/cat/"),
        ("x?accessToken=A&apiToken=B&clientSecret=C&pw=D&size=3&monkey=1",
         "x?accessToken=***&apiToken=***&clientSecret=***&pw=***&size=3&monkey=1"),
        ("at postgresql://user@host:5432/db, s3://b/key@2x.jpg",
         "at postgresql://user@host:5432/db, s3://b/key@2x.jpg"),
    ],
)  # fmt: skip
def test_secrets_in_any_part_of_a_url_are_hidden_and_nothing_else(given: str, shown: str) -> None:
    from kennel.display import redact

    assert redact(given) == shown


def test_credentials_holding_a_slash_are_refused_and_a_bad_feed_url_is_one_line(
    tmp_path: Path,
) -> None:
    root = str(make_project(tmp_path / "p").root)
    line = error_line("data", "ingest", f"s3://AKIAEXAMPLE:wJal/{SECRET}@bucket/x", "-d", "x",
                      "-C", root)  # fmt: skip
    assert "take no credentials" in line and SECRET not in line and "wJal" not in line
    for url in ("redis://127.0.0.1:abc/0", f"redis://:AB/{SECRET}@127.0.0.1:1/0"):
        line = error_line("subscribe", "--url", url, "--port", "18599", "-C", root)
        assert line.startswith("error: the feed URL '") and "use redis://HOST:PORT/DB" in line
        assert SECRET not in line and "AB/" not in line
