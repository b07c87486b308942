"""What monitoring measures and the alert rules on it (``monitor``)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from kennel.config._base import _Strict, checked
from kennel.errors import ConfigError, did_you_mean

Action = Literal["log", "webhook", "email", "rollback", "retrain"]


def _log_only() -> list[Action]:
    return ["log"]


# What a monitoring window measures (kennel.monitor.runner.analyse; a test keeps the two in
# step): a rule on any other name would never fire, so kennel.yaml may not name one.
METRICS = (
    "window.n",
    "integrity.decode_failure_rate",
    "integrity.low_confidence_rate",
    "integrity.size_anomaly_rate",
    "integrity.ood_rate",
    "latency.p50_ms",
    "latency.p99_ms",
    "drift.drifted",
    "performance.accuracy",
    "performance.estimated_accuracy",
    "performance.labelled",
    "performance.macro_f1",
    "fairness.recall_gap",
    "telemetry.anomalies",
)
# the image statistics (kennel.evaluate.drift.IMAGE_STATS) and the drift tests of a window
_STAT = r"(brightness|contrast|sharpness|width|height)"
# (the embedding's test, MMD, has a p-value and no PSI)
_DRIFT_TEST = (
    rf"((image\.{_STAT}|prediction\.(confidence|class))\.(p_value|psi)|embedding\.p_value)"
)
METRIC_FAMILIES = re.compile(
    rf"^(integrity\.outside\.{_STAT}|drift\.{_DRIFT_TEST}"
    r"|performance\.(recall|precision)\.[\w-]+|fairness\.predicted_rate_ratio\.[\w-]+)\Z"
)
_STATS = ("brightness", "contrast", "sharpness", "width", "height")
# the names a misspelt metric is compared with (the per-class ones are checked by class)
_SUGGESTIONS = (
    *METRICS,
    *(f"integrity.outside.{k}" for k in _STATS),
    *(
        f"drift.{test}.{value}"
        for test in (*(f"image.{k}" for k in _STATS), "prediction.confidence", "prediction.class")
        for value in ("p_value", "psi")
    ),
    "drift.embedding.p_value",
)


# A span of time as text: a number (ASCII digits) and s, m, h or d.
_SPAN = re.compile(r"^([0-9]+(?:\.[0-9]+)?)\s*([smhd])$", re.ASCII)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
MAX_SPAN = timedelta(days=3650)


def parse_span(text: str) -> timedelta:
    """'90s', '30m', '24h' or '7d' as a timedelta: more than 0, at most 3650 days."""
    shown = text if len(text) <= 40 else f"{text[:40]}..."
    match = _SPAN.match(text.strip())
    if not match:
        raise ConfigError(f"window {shown!r}: expected a number and s, m, h or d (e.g. 24h)")
    try:
        span = timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})
    except OverflowError:
        span = MAX_SPAN + MAX_SPAN
    if not timedelta(0) < span <= MAX_SPAN:
        raise ConfigError(f"window {shown!r}: must be more than 0 and at most 3650d")
    return span


def webhook_problem(url: str) -> str | None:
    """Why ``url`` cannot take an alert's POST, if it cannot: an http(s) URL with a host."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - a port that is not a number raises here
    except ValueError as exc:
        return f"webhook_url is not a URL ({exc})"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "webhook_url must be an http:// or https:// URL with a host"
    return None


class RuleConfig(_Strict):
    """An alert rule: fire when ``metric op threshold`` holds for a monitored window."""

    # names an incident (alerts are kept per rule and environment): 1-128 characters
    name: Annotated[str, Field(min_length=1, max_length=128)]
    metric: str  # e.g. drift.drifted, performance.accuracy, integrity.low_confidence_rate
    op: Literal[">", ">=", "<", "<="] = ">"
    threshold: float
    severity: Literal["info", "warning", "critical"] = "warning"
    actions: list[Action] = Field(default_factory=_log_only)

    @model_validator(mode="after")
    def _known_metric(self) -> RuleConfig:
        if self.metric not in METRICS and not METRIC_FAMILIES.match(self.metric):
            raise ValueError(
                f"rule {self.name!r}: no window measures {self.metric!r}"
                f"{did_you_mean(self.metric, _SUGGESTIONS)}"
            )
        return self


def _default_rules() -> list[RuleConfig]:
    return [
        RuleConfig(name="data-drift", metric="drift.drifted", op=">=", threshold=1),
        RuleConfig(
            name="accuracy-drop",
            metric="performance.accuracy",
            op="<",
            threshold=0.85,
            severity="critical",
        ),
        RuleConfig(
            name="estimated-accuracy-drop",
            metric="performance.estimated_accuracy",
            op="<",
            threshold=0.85,
        ),
        RuleConfig(name="low-confidence", metric="integrity.low_confidence_rate", threshold=0.3),
        RuleConfig(name="decode-failures", metric="integrity.decode_failure_rate", threshold=0.05),
        # a window where a third of the inputs show no cat or dog: a camera turned or covered,
        # a client sending the wrong pictures
        RuleConfig(name="not-a-pet", metric="integrity.ood_rate", threshold=0.3),
        RuleConfig(name="class-bias", metric="fairness.recall_gap", threshold=0.2),
        RuleConfig(name="device-anomaly", metric="telemetry.anomalies", op=">=", threshold=1),
    ]


class SmtpConfig(_Strict):
    host: str = ""  # empty: email actions are skipped (and say so)
    port: Annotated[int, Field(ge=1, le=65535)] = 25
    sender: str = "kennel@localhost"
    to: list[str] = Field(default_factory=list)


# levels as a device id's (kennel.monitor.telemetry.DEVICE): no wildcard, no empty level, no "$"
_TOPIC_PREFIX = re.compile(r"[\w.-]{1,64}(/[\w.-]{1,64}){0,7}")


def topic_problem(topic: str) -> str | None:
    """Why ``topic`` cannot prefix devices' telemetry topics (TOPIC/DEVICE/SENSOR), if it cannot."""
    if _TOPIC_PREFIX.fullmatch(topic):
        return None
    return (
        f"topic {topic[:80]!r}: use 1 to 8 levels joined by '/', each 1 to 64 letters, digits, "
        "'.', '_' or '-' (no wildcard: devices publish under it)"
    )


class TelemetryConfig(_Strict):
    """Where ``kennel telemetry ingest`` reads devices: TOPIC/DEVICE/SENSOR on the broker."""

    # one prefix per project: projects sharing a broker do not ingest each other's devices
    topic: str = "kennel/devices"

    @field_validator("topic")
    @classmethod
    def _topic_levels(cls, topic: str) -> str:
        return checked(topic, topic_problem(topic))


class MonitorConfig(_Strict):
    environment: str = "production"
    window: str = "24h"  # `kennel monitor run`'s default window
    alpha: Annotated[float, Field(gt=0, lt=1)] = 0.05  # drift: family-wise level per window
    min_psi: Annotated[float, Field(ge=0)] = 0.1  # drift: smallest shift worth flagging
    min_window: Annotated[int, Field(ge=2)] = 30  # fewer predictions: no drift verdict
    min_labels: Annotated[int, Field(ge=1)] = 20  # fewer feedback labels: no measured accuracy
    low_confidence: Annotated[float, Field(gt=0, lt=1)] = 0.6
    rules: list[RuleConfig] = Field(default_factory=_default_rules)
    webhook_url: str = ""
    smtp: SmtpConfig = Field(default_factory=SmtpConfig)
    # retrain action: epochs of the warm-started run (null = the champion's own setting)
    retrain_epochs: Annotated[int, Field(ge=1, le=10_000)] | None = None

    @field_validator("rules")
    @classmethod
    def _one_rule_a_name(cls, rules: list[RuleConfig]) -> list[RuleConfig]:
        # an incident is a rule's: two of one name opened and resolved each other's alert
        seen: set[str] = set()
        for rule in rules:
            if rule.name in seen:
                raise ValueError(f"two rules are named {rule.name!r}: each needs its own name")
            seen.add(rule.name)
        return rules

    @field_validator("webhook_url")
    @classmethod
    def _an_http_url(cls, url: str) -> str:
        # said when kennel.yaml is read, not when an alert fires months later
        return checked(url, webhook_problem(url) if url else None)

    @field_validator("window")
    @classmethod
    def _a_span(cls, window: str) -> str:
        try:
            parse_span(window)
        except ConfigError as exc:
            raise ValueError(str(exc)) from exc
        return window
