"""The application test: a model deployed in an environment is exercised through its live HTTP
API on the held-out test split of its own dataset version. Labels must equal the offline
evaluation, every response must come from the model under test, hostile inputs must get a 4xx
(never a 5xx), and latency and throughput must meet the configured bounds. The verdict and a
JSON + HTML report are recorded."""

from __future__ import annotations

import html
import io
import json
import struct
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import numpy as np
import pyarrow.parquet as pq
from PIL import Image

from kennel.config import CertificationConfig
from kennel.datasets.versioning import DatasetCatalog
from kennel.db import Database
from kennel.db.deployments import CertificationVerdict, DeploymentStore
from kennel.fsutil import KENNEL_PAGE
from kennel.portable import FrameSpec
from kennel.progress import Event, Progress, silent
from kennel.registry.entities import ModelVersion
from kennel.serve.runtime import METADATA, Bundle, Predictor
from kennel.storage import ContentStore
from kennel.train.tracking import RunTracker


def png_declaring(width: int, height: int) -> bytes:
    """A valid PNG header that declares ``width`` x ``height`` and carries no pixels: the shape
    of a decompression bomb, cheap to send."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body))
            + kind
            + body
            + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def bad_inputs() -> list[tuple[str, dict[str, str], bytes]]:
    """(name, headers, body) of requests a service must refuse with a 4xx."""
    jpeg = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 10, 10)).save(jpeg, "JPEG")
    bomb = png_declaring(40000, 40000)
    jpg = {"content-type": "image/jpeg"}
    return [
        ("empty body", jpg, b""),
        ("text as jpeg", jpg, b"definitely not an image\n" * 10),
        ("truncated jpeg", jpg, jpeg.getvalue()[: len(jpeg.getvalue()) // 3]),
        ("png declaring 40000x40000", {"content-type": "image/png"}, bomb),
        ("wrong content type", {"content-type": "text/plain"}, b"hello"),
        ("json body", {"content-type": "application/json"}, b'{"image": "cat"}'),
        ("broken multipart", {"content-type": "multipart/form-data; boundary=xyz"}, b"--xyz\r\n"),
        (
            "random bytes",
            {"content-type": "application/octet-stream"},
            np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
        ),
    ]


@dataclass(frozen=True)
class Certification:
    model: str
    version: int
    environment: str
    passed: bool
    reasons: list[str]
    images: int
    label_mismatches: int
    wrong_version: int
    errors: int
    robustness: list[dict[str, Any]]
    p50_ms: float
    p99_ms: float
    throughput: float
    report_sha256: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _offline_labels(
    model: ModelVersion, tracker: RunTracker, content: ContentStore
) -> dict[str, str]:
    """sha256 -> label the offline evaluation predicted (from the run's stored predictions)."""
    if model.run_id is None:
        return {}
    digest = tracker.get(model.run_id).metrics.get("predictions_sha256")
    if not digest:
        return {}
    table = pq.read_table(io.BytesIO(content.get(digest)))
    classes = [c.removeprefix("logit_") for c in table.column_names if c.startswith("logit_")]
    logits = np.stack([table.column(f"logit_{c}").to_numpy() for c in classes], axis=1)
    return dict(
        zip(table.column("sha256").to_pylist(), [classes[i] for i in logits.argmax(1)], strict=True)
    )


INT8_BATCH = 64  # test pictures decoded and scored at a time for the int8 graph's labels


def _int8_labels(model: ModelVersion, content: ContentStore, digests: list[str]) -> dict[str, str]:
    """sha256 -> label the bundle's int8 graph gives in-process: the offline evaluation ran
    the fp32 model, and a service serving the int8 one (kept when within 0.5 points) may
    answer a few pictures otherwise; it is held to its own graph's answers."""
    files = {name: content.get(digest) for name, digest in model.files.items()}
    predictor = Predictor(Bundle.from_files(files, prefer_int8=True))
    labels: dict[str, str] = {}
    for lo in range(0, len(digests), INT8_BATCH):  # not 2,000 decoded pictures held at once
        chunk = digests[lo : lo + INT8_BATCH]
        found = predictor.predict([content.get(d) for d in chunk])
        labels.update((d, p.label) for d, p in zip(chunk, found, strict=True))
    return labels


def certify(
    model: ModelVersion,
    environment: str,
    url: str,
    *,
    catalog: DatasetCatalog,
    tracker: RunTracker,
    content: ContentStore,
    db: Database,
    limits: CertificationConfig,
    actor: str = "kennel",
    concurrency: int = 4,
    progress: Progress = silent,
) -> Certification:
    expected = _offline_labels(model, tracker, content)
    frame = FrameSpec.of(json.loads(content.get(model.files[METADATA])).get("preprocessing", {}))
    version = catalog.resolve(f"{model.dataset}@{model.dataset_version}")
    rows = [r for r in catalog.rows(version) if r.split == "test"][: limits.max_images]
    with httpx.Client(base_url=url, timeout=30.0) as client:
        graph = client.get("/v1/model").json().get("graph", "fp32")
    if graph == "int8" and expected:
        expected = _int8_labels(model, content, [r.sha256 for r in rows])
    reasons: list[str] = []
    latencies: list[float] = []
    mismatches = wrong_version = errors = 0

    def send(client: httpx.Client, digest: str) -> tuple[float, int, dict[str, Any]]:
        began = time.perf_counter()
        response = client.post(
            "/v1/predict",
            content=content.get(digest),
            headers={
                "content-type": "application/octet-stream",
                "x-kennel-source": "certification",
            },
        )
        return (time.perf_counter() - began) * 1000, response.status_code, response.json()

    began = time.perf_counter()
    with (
        httpx.Client(base_url=url, timeout=30.0) as client,
        ThreadPoolExecutor(concurrency) as pool,
    ):
        for row, (ms, status, body) in zip(
            rows, pool.map(lambda r: send(client, r.sha256), rows), strict=True
        ):
            latencies.append(ms)
            progress(Event("certify", done=len(latencies), total=len(rows)))
            if status != 200:
                errors += 1
                continue
            if body["model"]["version"] != model.version:
                wrong_version += 1
            # the offline evaluation saw each picture's centre square; one the frame policy
            # tiles (far from square) is answered from its tiles, so it is not compared
            centred = frame.centred(row.width, row.height)
            if expected and centred and body["label"] != expected.get(row.sha256, body["label"]):
                mismatches += 1
        elapsed = time.perf_counter() - began
        robustness = []
        for name, headers, data in bad_inputs():
            response = client.post("/v1/predict", content=data, headers=headers)
            ok = 400 <= response.status_code < 500
            try:
                is_json = "error" in response.json()
            except ValueError:
                is_json = False
            robustness.append(
                {
                    "case": name,
                    "status": response.status_code,
                    "json_error": is_json,
                    "ok": ok and is_json,
                }
            )
    p50 = float(np.percentile(latencies, 50)) if latencies else 0.0
    p99 = float(np.percentile(latencies, 99)) if latencies else 0.0
    throughput = len(rows) / elapsed if elapsed > 0 else 0.0
    if not rows:
        reasons.append("the dataset version has no test images")
    if not expected:
        reasons.append("no offline predictions to compare against")
    if mismatches:
        reasons.append(
            f"{mismatches} labels differ from the offline evaluation"
            + (" (of the int8 graph the service serves)" if graph == "int8" else "")
        )
    if wrong_version:
        reasons.append(f"{wrong_version} answers came from another model version")
    if errors:
        reasons.append(f"{errors} test images were not answered with 200")
    bad = [str(r["case"]) for r in robustness if not r["ok"]]
    if bad:
        reasons.append(f"hostile inputs not refused with a JSON 4xx: {', '.join(bad)}")
    if p99 > limits.max_p99_ms:
        reasons.append(f"p99 latency {p99:.1f} ms exceeds {limits.max_p99_ms} ms")
    if throughput < limits.min_throughput:
        reasons.append(f"throughput {throughput:.1f}/s below {limits.min_throughput}/s")
    result = Certification(
        model.name,
        model.version,
        environment,
        not reasons,
        reasons,
        len(rows),
        mismatches,
        wrong_version,
        errors,
        robustness,
        round(p50, 3),
        round(p99, 3),
        round(throughput, 2),
    )
    report = json.dumps(result.as_dict(), indent=2, sort_keys=True).encode()
    report_sha = content.put(report)
    page_sha = content.put(_html(result).encode())
    DeploymentStore(db).add_certification(
        CertificationVerdict(
            model=model.name,
            version=model.version,
            environment=environment,
            passed=result.passed,
            reasons=reasons,
            report_sha256=report_sha,
            summary={**result.as_dict(), "html_sha256": page_sha},
            at=datetime.now(UTC),
        ),
        actor=actor,
    )
    return Certification(**{**result.as_dict(), "report_sha256": report_sha})


def _html(c: Certification) -> str:
    esc = html.escape
    rows = "".join(
        f"<tr><td>{esc(r['case'])}</td><td>{r['status']}</td>"
        f"<td>{'ok' if r['ok'] else 'FAIL'}</td></tr>"
        for r in c.robustness
    )
    verdict = "PASSED" if c.passed else "FAILED: " + "; ".join(c.reasons)
    return f"""<!doctype html><html><head><meta charset="utf-8">{KENNEL_PAGE}
<title>certification {esc(c.model)}@{c.version}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em}}td,th{{border:1px solid #ccc;
padding:4px 8px}}table{{border-collapse:collapse}}</style></head><body>
<h1>Application test: {esc(c.model)}@{c.version} in {esc(c.environment)}</h1>
<p><b>{esc(verdict)}</b></p>
<p>{c.images} held-out test images through the live API: {c.label_mismatches} label mismatches
with the offline evaluation, {c.wrong_version} answers from another version, {c.errors} errors.
Latency p50 {c.p50_ms:.1f} ms, p99 {c.p99_ms:.1f} ms; throughput {c.throughput:.1f} images/s.</p>
<h2>Robustness</h2><table><tr><th>case</th><th>status</th><th>verdict</th></tr>{rows}</table>
</body></html>"""
