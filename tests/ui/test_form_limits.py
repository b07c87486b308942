"""The dashboard's forms are a few short fields, so a request body is bounded: past
MAX_BODY_BYTES it is 413 as it arrives (declared or chunked), and a form with too many fields,
a file or an over-long field is 400 before any of it is kept. A POST of 1,000 fields of 1 MB
each was buffered whole in memory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from kennel.serve.server import start_app_in_thread
from kennel.ui.app import MAX_BODY_BYTES, MAX_FIELD_BYTES, MAX_FORM_FIELDS, create_app
from kennel.wiring import Workspace
from tests.conftest import make_project

FORM = {"content-type": "application/x-www-form-urlencoded"}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[httpx.Client]:
    server = start_app_in_thread(create_app(Workspace(make_project(tmp_path / "p"))))
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            yield client
    finally:
        server.stop()


def _says(answer: httpx.Response, status: int, words: str) -> None:
    assert answer.status_code == status, answer.text[-500:]
    assert words in answer.text and "Traceback" not in answer.text


def test_oversized_bodies_are_413_as_they_arrive(client: httpx.Client) -> None:
    declared = client.post("/login", content=b"t=" + b"x" * MAX_BODY_BYTES, headers=FORM)
    _says(declared, 413, "Too Large")

    def trickle() -> Iterator[bytes]:  # chunked: no length to refuse up front
        field = MAX_FIELD_BYTES - 100  # each field within its limits, too many bytes in all
        for i in range(MAX_BODY_BYTES // field + 2):
            yield f"f{i}=".encode() + b"x" * field + b"&"

    _says(client.post("/login", content=trickle(), headers=FORM), 413, "Too Large")


def test_too_many_fields_files_or_long_fields_are_400(client: httpx.Client) -> None:
    many = {f"f{i}": "x" for i in range(MAX_FORM_FIELDS + 1)}
    _says(client.post("/login", data=many), 400, f"Maximum number of fields is {MAX_FORM_FIELDS}")
    multipart = client.post("/login", data=many, files={"f": ("a.txt", b"hi")})
    assert multipart.status_code == 400
    long = client.post("/login", files={"token": (None, b"x" * (MAX_FIELD_BYTES + 1))})
    assert long.status_code == 400, long.text[-300:]
    # a form within the limits reaches the route (which refuses it for its own reason)
    usual = client.post("/login", data={"token": "abc", "csrf": "x", "next": "/"})
    assert usual.status_code not in (400, 413), usual.text[-300:]
