"""What the Monitoring page shows for one environment over a time range: each analysed window's
metrics as series (measured accuracy beside the label-free estimate, per-class recall, the
predicted-class ratio, every drift statistic against its threshold, integrity rates), request
rate and latency from the prediction log and device telemetry (both aggregated by the
database), with the environment's alerts as markers on the time axis.

Thresholds come from kennel.yaml as it is now: the alert rules on a chart's metrics, drift's
``min_psi`` and its per-test level (``alpha`` over the tests of the window), telemetry's
plausible ranges."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from kennel.config import KennelConfig
from kennel.db.monitoring import MonitorRun, MonitorRunStore
from kennel.db.predictions import PredictionStore
from kennel.db.telemetry import TelemetryStore
from kennel.govern.alerts import Alert, AlertStore
from kennel.monitor.telemetry import LIMITS
from kennel.ui.buckets import BucketCache, Grid, grid
from kennel.wiring import Workspace

MAX_RUNS = 2000  # windows read; the newest when the range holds more
MAX_POINTS = 100  # windows drawn: every k-th (and the newest) when more were read
BUCKETS = 48  # time buckets of the traffic and telemetry charts (at most one more)
Series = dict[str, list[tuple[datetime, float | None]]]


@dataclass(frozen=True)
class Chart:
    id: str
    title: str
    series: Series
    y_range: tuple[float, float] | None = None
    thresholds: dict[str, float] = field(default_factory=dict)
    steps: bool = False


@dataclass(frozen=True)
class Section:
    id: str
    heading: str
    charts: list[Chart]
    note: str = ""


@dataclass(frozen=True)
class MonitoringView:
    environment: str
    environments: list[str]
    since: datetime
    until: datetime
    runs: list[MonitorRun]  # the windows drawn, oldest first
    found: int  # windows that ended in the range (at most MAX_RUNS read)
    truncated: bool  # more windows than MAX_RUNS in the range
    alerts: list[Alert]
    markers: list[tuple[datetime, str]]
    sections: list[Section]
    newest: MonitorRun | None  # the environment's newest window, wherever it falls


def environments(ws: Workspace) -> list[str]:
    """The environments of kennel.yaml, then any other the monitoring store knows."""
    configured = list(ws.project.config.environments)
    known = MonitorRunStore(ws.db).environments()
    return configured + [e for e in known if e not in configured]


def _rule_lines(config: KennelConfig, metrics: set[str]) -> dict[str, float]:
    return {
        f"rule {r.name} ({r.metric} {r.op} {r.threshold:g})": r.threshold
        for r in config.monitor.rules
        if r.metric in metrics
    }


def _keys(runs: list[MonitorRun], prefix: str, suffix: str = "") -> list[str]:
    """The distinct middle parts of metric names ``prefix<part><suffix>``, sorted."""
    names: set[str] = set().union(*(r.metrics for r in runs))
    return sorted(
        k[len(prefix) : len(k) - len(suffix)]
        for k in names
        if k.startswith(prefix) and k.endswith(suffix) and len(k) > len(prefix) + len(suffix)
    )


def _line(runs: list[MonitorRun], metric: str) -> list[tuple[datetime, float | None]]:
    points: list[tuple[datetime, float | None]] = []
    for r in runs:
        value = r.metrics.get(metric)
        points.append((r.until, float(value) if isinstance(value, int | float) else None))
    return points


def _chart(
    config: KennelConfig,
    id: str,
    title: str,
    lines: dict[str, str],  # series name -> metric
    runs: list[MonitorRun],
    **options: Any,
) -> Chart:
    thresholds = {**_rule_lines(config, set(lines.values())), **options.pop("thresholds", {})}
    series = {name: _line(runs, metric) for name, metric in lines.items()}
    return Chart(id, title, series, thresholds=thresholds, **options)


def _performance(config: KennelConfig, runs: list[MonitorRun]) -> Section:
    classes = sorted(set(_keys(runs, "performance.recall.")) | set(
        _keys(runs, "fairness.predicted_rate_ratio.")))  # fmt: skip
    charts = [
        _chart(config, "accuracy", "accuracy: measured on feedback labels and estimated without",
               {"measured": "performance.accuracy",
                "estimated (label-free)": "performance.estimated_accuracy"},
               runs, y_range=(0.0, 1.0)),
        _chart(config, "recall", "recall per class (measured)",
               {c: f"performance.recall.{c}" for c in classes}, runs, y_range=(0.0, 1.0)),
        _chart(config, "ratio", "predicted share / true share per class (1 = no bias)",
               {c: f"fairness.predicted_rate_ratio.{c}" for c in classes}, runs,
               thresholds={"no bias": 1.0}),
    ]  # fmt: skip
    note = (
        f"measured where a window had at least {config.monitor.min_labels} feedback labels; "
        "a ratio above 1 means the model predicts that class more often than it occurs"
    )
    return Section("performance", "Performance and bias", charts, note)


def _drift(config: KennelConfig, runs: list[MonitorRun]) -> Section:
    m = config.monitor
    charts = [
        _chart(config, "drifted", "drift verdict (1 = drifted)", {"drifted": "drift.drifted"},
               runs, y_range=(0.0, 1.0), steps=True)
    ]  # fmt: skip
    tests = sorted(set(_keys(runs, "drift.", ".p_value")) | set(_keys(runs, "drift.", ".psi")))
    counts = Counter(sum(k.endswith(".p_value") for k in r.metrics) for r in runs)
    n_tests = max(counts.most_common(1)[0][0], 1) if counts else 1
    for test in tests:
        slug = test.replace(".", "-")
        if any(f"drift.{test}.psi" in r.metrics for r in runs):
            charts.append(_chart(config, f"drift-{slug}", f"drift: {test}, PSI",
                                 {"PSI": f"drift.{test}.psi"}, runs,
                                 thresholds={"min_psi": m.min_psi}))  # fmt: skip
        else:
            level = {"level (alpha / tests)": m.alpha / n_tests}
            charts.append(_chart(config, f"drift-{slug}", f"drift: {test}, p-value",
                                 {"p-value": f"drift.{test}.p_value"}, runs, y_range=(0.0, 1.0),
                                 thresholds=level))  # fmt: skip
    note = (
        f"a test flags drift when its p-value is under alpha / tests ({m.alpha:g} / {n_tests}) "
        f"and, where it has one, its PSI reaches min_psi ({m.min_psi:g})"
    )
    return Section("drift", "Drift", charts, note)


def _integrity(config: KennelConfig, runs: list[MonitorRun]) -> Section:
    rates = ("decode_failure_rate", "low_confidence_rate", "size_anomaly_rate")
    lines = {k: f"integrity.{k}" for k in rates}
    outside = {f"outside: {k}": f"integrity.outside.{k}" for k in _keys(runs, "integrity.outside.")}
    charts = [
        _chart(config, "integrity", "integrity rates per window", lines, runs, y_range=(0.0, 1.0)),
        _chart(config, "outside", "share of inputs outside the training range", outside, runs,
               y_range=(0.0, 1.0)),
    ]  # fmt: skip
    return Section("integrity", "Integrity", [c for c in charts if c.series])


def _traffic(ws: Workspace, env: str, g: Grid, cache: BucketCache[Any]) -> Section:
    store = PredictionStore(ws.db)

    def count(since: datetime, until: datetime, n: int) -> list[tuple[datetime, Any]]:
        return [(b.start, b) for b in store.traffic(env, since=since, until=until, buckets=n)]

    found = [b for _, b in cache.series(("traffic", env), g, datetime.now(UTC), count)]
    rate: Series = {"requests per minute": [(b.start, b.per_minute) for b in found]}
    latency: Series = {
        "mean": [(b.start, b.mean_latency_ms) for b in found],
        "max": [(b.start, b.max_latency_ms) for b in found],
    }
    width = g.width.total_seconds()
    charts = [
        Chart("requests", "requests per minute (prediction log)", rate),
        Chart("latency", "latency in ms (prediction log)", latency,
              thresholds=_rule_lines(ws.project.config, {"latency.p50_ms", "latency.p99_ms"})),
    ]  # fmt: skip
    note = f"the prediction log counted by the database in buckets of {width:g} s"
    return Section("traffic", "Requests and latency", charts, note if found else "")


def _telemetry(ws: Workspace, g: Grid, cache: BucketCache[Any]) -> Section:
    store = TelemetryStore(ws.db)

    def count(since: datetime, until: datetime, n: int) -> list[tuple[datetime, Any]]:
        return [(p.start, p) for p in store.series(since=since, until=until, buckets=n)]

    points = [p for _, p in cache.series("telemetry", g, datetime.now(UTC), count)]
    points.sort(key=lambda p: (p.metric, p.source, p.start))
    by_metric: dict[str, Series] = {}
    for p in points:
        by_metric.setdefault(p.metric, {}).setdefault(p.source, []).append((p.start, p.mean))
    charts = []
    for metric, series in by_metric.items():
        limits: dict[str, float] = {}
        if metric in LIMITS:
            limits = {"low limit": LIMITS[metric][0], "high limit": LIMITS[metric][1]}
        slug = metric.replace(".", "-")
        charts.append(
            Chart(f"telemetry-{slug}", f"{metric} (mean per bucket)", series, thresholds=limits)
        )
    return Section("telemetry", "Device telemetry", charts)


def _markers(alerts: list[Alert], span: timedelta) -> list[tuple[datetime, str]]:
    """One marker per moment alerts were raised: the alerts a window's rules opened together
    (within 1/200 of the range of each other) share one line that names them all."""
    close = span / 200
    groups: list[list[Alert]] = []
    for a in sorted(alerts, key=lambda a: a.first_at):
        if groups and a.first_at - groups[-1][0].first_at <= close:
            groups[-1].append(a)
        else:
            groups.append([a])
    return [
        (g[0].first_at, "; ".join(f"alert {a.id}: {a.rule} ({a.severity})" for a in g))
        for g in groups
    ]


def monitoring(
    ws: Workspace,
    env: str,
    *,
    since: datetime,
    until: datetime,
    cache: BucketCache[Any] | None = None,
) -> MonitoringView:
    """The page's view; ``cache`` keeps the request and telemetry buckets that have ended
    (the dashboard passes one; without, everything is counted now)."""
    config = ws.project.config
    cache = cache or BucketCache(ttl_s=0)
    g = grid(since, until, BUCKETS)
    store = MonitorRunStore(ws.db)
    runs = store.between(env, since=since, until=until, limit=MAX_RUNS + 1)
    truncated = len(runs) > MAX_RUNS
    runs = runs[-MAX_RUNS:]
    found = len(runs)
    if found > MAX_POINTS:  # evenly thinned, so the charts still span the range
        step = found / MAX_POINTS
        runs = [runs[found - 1 - round(i * step)] for i in reversed(range(MAX_POINTS))]
    alerts = AlertStore(ws.db).between(since=since, until=until, subject=env)
    markers = _markers([a for a in alerts if since <= a.first_at <= until], until - since)
    sections = [
        _performance(config, runs),
        _drift(config, runs),
        _integrity(config, runs),
        _traffic(ws, env, g, cache),
        _telemetry(ws, g, cache),
    ]
    newest = runs[-1] if runs else store.latest(env)
    return MonitoringView(env, environments(ws), since, until, runs, found, truncated, alerts,
                          markers, sections, newest)  # fmt: skip
