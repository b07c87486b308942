"""Issue 11 rows 6 and 7 on a real service process: uploads are bounded while they stream, and a
tiny file declaring a huge 16-bit picture costs neither gigabytes nor a blocked event loop."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.hostile.conftest import ServiceProcess
from tests.hostile.corpus import png16

MB = 1024 * 1024
LIMIT = 10 * MB  # serve.max_upload_bytes default


def _chunks(total: int, head: bytes = b"", tail: bytes = b"") -> Iterator[bytes]:
    """``total`` bytes in 1 MB chunks (a generator body: httpx sends it chunked)."""
    yield head
    block = b"\xab" * MB
    for _ in range(total // MB):
        yield block
    yield tail


def _files(root: Path) -> dict[Path, int]:
    return {p: p.stat().st_size for p in root.rglob("*") if p.is_file()}


def test_chunked_uploads_over_the_limit_are_refused_while_streaming(
    service_process: ServiceProcess,
) -> None:
    files_before = _files(service_process.root)
    before = service_process.rss()
    service_process.reset_peak()
    boundary = "kennelboundary42"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.png"'
        "\r\nContent-Type: image/png\r\n\r\n\x89PNG\r\n\x1a\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    cases = [
        ("/v1/predict", "application/octet-stream", b"", b""),
        ("/v1/predict", "image/png", b"\x89PNG\r\n\x1a\n", b""),
        ("/v1/predict", f"multipart/form-data; boundary={boundary}", head, tail),
        ("/v1/predict/batch", f"multipart/form-data; boundary={boundary}",
         head.replace(b'name="file"', b'name="files"'), tail),
    ]  # fmt: skip
    with httpx.Client(base_url=service_process.url, timeout=60) as client:
        for route, content_type, first, last in cases:
            began = time.monotonic()
            answer = client.post(
                route,
                content=_chunks(60 * MB, first, last),
                headers={"content-type": content_type},
            )
            assert answer.status_code == 413, (route, content_type, answer.text[:300])
            assert answer.json()["error"] == "too_large"
            assert time.monotonic() - began < 20
        ok = client.post(
            "/v1/predict", content=png16(64, 64), headers={"content-type": "image/png"}
        )
        assert ok.status_code == 200  # the service is still there and serving
    # nothing over the limit reached the artifact store, the spool or anywhere in the project
    grown = {
        p: size for p, size in _files(service_process.root).items() if size > files_before.get(p, 0)
    }
    assert all(size < MB for size in grown.values()), grown
    growth = service_process.peak_rss() - before
    assert growth < 100 * MB, f"peak RSS grew by {growth / MB:.0f} MB"
    print(f"four 60 MB chunked uploads: peak RSS growth {growth / MB:.0f} MB")


def test_a_tiny_file_declaring_a_huge_16_bit_picture_costs_little(
    service_process: ServiceProcess,
) -> None:
    bomb = png16(7000, 7000)  # 95 KB that decodes to 98 MB of I;16 (49 megapixels)
    big = png16(4000, 4000)  # 16 MP: under serve.max_pixels, so really decoded
    assert len(bomb) < 200_000
    url = service_process.url
    with httpx.Client(base_url=url, timeout=60) as client:
        client.post("/v1/predict", content=png16(64, 64), headers={"content-type": "image/png"})
    before = service_process.rss()
    service_process.reset_peak()

    began = time.monotonic()
    alone = httpx.post(f"{url}/v1/predict", content=bomb, headers={"content-type": "image/png"})
    assert alone.status_code == 422 and alone.json()["error"] == "invalid_image"
    assert "decompression bomb" in alone.json()["detail"]
    assert time.monotonic() - began < 1.0

    live: list[float] = []
    done = threading.Event()

    def probe_liveness() -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            while not done.is_set():
                t = time.monotonic()
                assert client.get("/health/live").status_code == 200
                live.append(time.monotonic() - t)
                time.sleep(0.02)

    def upload(data: bytes) -> httpx.Response:
        return httpx.post(
            f"{url}/v1/predict", content=data, headers={"content-type": "image/png"}, timeout=60
        )

    prober = threading.Thread(target=probe_liveness)
    prober.start()
    try:
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(upload, [bomb] * 4 + [big] * 4))
    finally:
        done.set()
        prober.join(30)
    assert [a.status_code for a in answers] == [422] * 4 + [200] * 4, [a.text for a in answers]
    assert live and max(live) < 0.5, f"/health/live took up to {max(live):.2f} s"
    growth = service_process.peak_rss() - before
    assert growth < 400 * MB, f"peak RSS grew by {growth / MB:.0f} MB"
    print(f"liveness max {max(live) * 1000:.0f} ms over {len(live)} probes; "
          f"peak RSS growth {growth / MB:.0f} MB")  # fmt: skip
