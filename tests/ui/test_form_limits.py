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


def _page(answer: httpx.Response, status: int, heading: str, words: str) -> None:
    """The dashboard's own error page, as every one of its 4xx answers is."""
    _says(answer, status, words)
    assert answer.headers["content-type"].startswith("text/html")
    assert f"<title>{status} {heading} · kennel</title>" in answer.text


TOO_LARGE = f"the request body is larger than {MAX_BODY_BYTES} bytes"


def trickle() -> Iterator[bytes]:  # chunked: no length to refuse up front
    field = MAX_FIELD_BYTES - 100  # each field within its limits, too many bytes in all
    for i in range(MAX_BODY_BYTES // field + 2):
        yield f"f{i}=".encode() + b"x" * field + b"&"


@pytest.mark.parametrize("path", ["/login", "/actions/approve"])
def test_oversized_bodies_are_413_pages_as_they_arrive(client: httpx.Client, path: str) -> None:
    declared = client.post(path, content=b"note=" + b"x" * 2_000_000, headers=FORM)
    _page(declared, 413, "too large", TOO_LARGE)
    _page(client.post(path, content=trickle(), headers=FORM), 413, "too large", TOO_LARGE)
    # a form just within the limit is read (and refused for its own reason)
    within = client.post(path, content=b"note=" + b"x" * (MAX_BODY_BYTES - 5), headers=FORM)
    assert within.status_code != 413, within.text[-300:]


def test_a_missing_static_file_is_a_404_page(client: httpx.Client) -> None:
    _page(client.get("/static/missing.js"), 404, "not found", "no such page")
    assert client.get("/static/live.js").status_code == 200


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
