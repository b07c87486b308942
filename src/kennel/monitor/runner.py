"""``kennel monitor run``: one window of the prediction log analysed against the training
reference, flattened into named metrics that alert rules read, recorded with an HTML report."""

from __future__ import annotations

import html
import json
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from kennel.config import KennelConfig
from kennel.config.monitoring import MAX_SPAN as MAX_SPAN
from kennel.config.monitoring import parse_span as parse_span
from kennel.db import Database
from kennel.db.monitoring import MonitorRun, MonitorRunStore
from kennel.db.predictions import PredictionStore
from kennel.errors import NotFoundError
from kennel.evaluate import drift
from kennel.fsutil import KENNEL_PAGE
from kennel.monitor import integrity, performance, telemetry
from kennel.monitor.window import Window, load
from kennel.registry.store import ModelRegistry
from kennel.serve.runtime import METADATA
from kennel.storage import ContentStore


@dataclass
class MonitorResult:
    id: str
    environment: str
    since: datetime
    until: datetime
    model: str | None
    version: int | None
    metrics: dict[str, float]
    details: dict[str, Any] = field(default_factory=dict)
    report_sha256: str | None = None
    # every version in the window, ascending (a release may fall inside it); ``version`` is
    # the most common of them
    versions: list[int] = field(default_factory=list)

    @property
    def served(self) -> str:
        """The model versions of the window as NAME@V, joined by "and"; "" when none."""
        versions = self.versions or ([] if self.version is None else [self.version])
        return " and ".join(f"{self.model}@{v}" for v in versions) if self.model else ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "environment": self.environment,
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "model": self.model,
            "version": self.version,
            "versions": self.versions,
            "metrics": self.metrics,
            "details": self.details,
            "report_sha256": self.report_sha256,
        }


def analyse(
    window: Window,
    reference: dict[str, Any],
    config: KennelConfig,
    *,
    rejected: int = 0,
    seed: int = 0,
) -> tuple[dict[str, float], dict[str, Any]]:
    """Metrics (flat, for rules) and details (for people) of one window."""
    m = config.monitor
    metrics: dict[str, float] = {"window.n": float(len(window))}
    details: dict[str, Any] = {"n": len(window)}
    checked = integrity.check(window, reference, rejected=rejected, low_confidence=m.low_confidence)
    details["integrity"] = checked
    # a rate of a handful of inputs says nothing: an empty window resolved the alerts it had
    # opened, and one noise picture made ood_rate 1.0; like drift, it takes min_window
    basis = {
        "decode_failure_rate": len(window) + rejected,
        "low_confidence_rate": len(window),
        "size_anomaly_rate": len(window),
        "ood_rate": checked["ood_judged"],
    }
    for key, count in basis.items():
        if count >= m.min_window:
            metrics[f"integrity.{key}"] = checked[key]
    if len(window) >= m.min_window:
        for key, share in checked["outside_training_range"].items():
            metrics[f"integrity.outside.{key}"] = share
    if len(window):
        metrics["latency.p50_ms"] = float(np.percentile(window.latency_ms, 50))
        metrics["latency.p99_ms"] = float(np.percentile(window.latency_ms, 99))
    if len(window) >= m.min_window and "embedding_pca" in reference:
        report = drift.analyse(
            reference,
            image_stats=window.image_stats,
            labels=window.labels,
            confidence=window.confidence,
            embedding=window.embedding if window.embedding.shape[1] else None,
            alpha=m.alpha,
            min_psi=m.min_psi,
            seed=seed,
        )
        details["drift"] = report.as_dict()
        metrics["drift.drifted"] = float(report.drifted)
        for t in report.tests:
            metrics[f"drift.{t.name}.p_value"] = t.p_value
            if t.psi is not None:
                metrics[f"drift.{t.name}.psi"] = t.psi
    estimate = performance.estimated(window) if len(window) >= m.min_window else None
    if estimate:
        details["estimated"] = estimate
        metrics["performance.estimated_accuracy"] = estimate["accuracy"]
    measured = performance.measured(window)
    if measured:
        details["measured"] = measured
        metrics["performance.labelled"] = float(measured["n"])
        if measured["n"] >= m.min_labels:
            metrics["performance.accuracy"] = measured["accuracy"]
            metrics["performance.macro_f1"] = measured["macro_f1"]
            metrics["fairness.recall_gap"] = measured["recall_gap"]
            for c, values in measured["per_class"].items():
                if not values["support"]:  # no labelled input of the class: nothing to say
                    continue
                metrics[f"performance.recall.{c}"] = values["recall"]
                metrics[f"performance.precision.{c}"] = values["precision"]
                # predicted / true share
                metrics[f"fairness.predicted_rate_ratio.{c}"] = measured["predicted_rate_ratio"][c]
    return metrics, details


class Monitor:
    def __init__(
        self,
        config: KennelConfig,
        db: Database,
        registry: ModelRegistry,
        content: ContentStore,
    ) -> None:
        self.config = config
        self.db = db
        self.registry = registry
        self.content = content

    def reference(self, model: str, version: int) -> dict[str, Any]:
        entry = self.registry.resolve(f"{model}@{version}")
        meta = self.registry.read_json(entry, METADATA)
        return dict(meta.get("reference") or {})

    def run(
        self,
        environment: str | None = None,
        *,
        span: timedelta | None = None,
        until: datetime | None = None,
        actor: str = "kennel-monitor",
        seed: int = 0,
    ) -> MonitorResult:
        env = environment or self.config.monitor.environment
        end = until or datetime.now(UTC)
        start = end - (span if span is not None else parse_span(self.config.monitor.window))
        window = load(self.db, environment=env, since=start, until=end)
        model, version = self.config.model.name, None
        if len(window):
            version = Counter(window.versions).most_common(1)[0][0]
        reference: dict[str, Any] = {}
        if version is not None:
            try:
                reference = self.reference(model, version)
            except NotFoundError:
                reference = {}
        rejected = PredictionStore(self.db).count_rejections(env, since=start, until=end)
        metrics, details = analyse(window, reference, self.config, rejected=rejected, seed=seed)
        anomalies = telemetry.anomalies(self.db, since=start, until=end)
        details["telemetry"] = [a.as_dict() for a in anomalies[:50]]
        metrics["telemetry.anomalies"] = float(len(anomalies))
        details["versions"] = dict(Counter(str(v) for v in window.versions))
        result = MonitorResult(
            uuid.uuid4().hex,
            env,
            start,
            end,
            model,
            version,
            metrics,
            details,
            versions=sorted(set(window.versions)),
        )
        result.report_sha256 = self.content.put(render(result).encode())
        MonitorRunStore(self.db).add(
            MonitorRun(
                id=result.id,
                at=datetime.now(UTC),
                environment=env,
                since=start,
                until=end,
                model=model,
                version=version,
                versions=result.versions,
                metrics=metrics,
                report_sha256=result.report_sha256,
            ),
            actor=actor,
            n=len(window),
        )
        return result


def _psi(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def render(result: MonitorResult) -> str:
    """A self-contained HTML page for one monitoring run."""
    esc = html.escape
    metric_rows = "".join(
        f"<tr><td>{esc(k)}</td><td>{v:.4g}</td></tr>" for k, v in sorted(result.metrics.items())
    )
    tests = result.details.get("drift", {}).get("tests", [])
    drift_rows = "".join(
        f"<tr><td>{esc(t['name'])}</td><td>{esc(t['method'])}</td><td>{t['statistic']:.4g}</td>"
        f"<td>{t['p_value']:.3g}</td><td>{_psi(t['psi'])}</td>"
        f"<td>{'<b>drift</b>' if t['drifted'] else 'ok'}</td></tr>"
        for t in tests
    )
    details = esc(json.dumps(result.details, indent=2, default=str))
    served = result.served or f"{result.model}@{result.version}"
    return f"""<!doctype html><html><head><meta charset="utf-8">{KENNEL_PAGE}
<title>kennel monitor: {esc(result.environment)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px}}</style>
</head><body>
<h1>Monitoring {esc(result.environment)}: {esc(served)}</h1>
<p>window {result.since:%Y-%m-%d %H:%M:%S} to {result.until:%Y-%m-%d %H:%M:%S} UTC,
{int(result.metrics.get("window.n", 0))} predictions</p>
<h2>Drift tests</h2><table><tr><th>test</th><th>method</th><th>statistic</th><th>p-value</th>
<th>PSI</th><th>verdict</th></tr>{drift_rows or "<tr><td colspan=6>window too small</td></tr>"}
</table><h2>Metrics</h2><table>{metric_rows}</table>
<h2>Details</h2><pre>{details}</pre></body></html>"""
