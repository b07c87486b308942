"""Prometheus metrics of one service, in its own registry (no process-global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "kennel_requests_total",
            "HTTP requests by route and status",
            ["route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "kennel_request_seconds",
            "HTTP request latency by route",
            ["route"],
            registry=self.registry,
            buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5),
        )
        self.batch_size = Histogram(
            "kennel_batch_size",
            "Images per inference batch",
            registry=self.registry,
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
        )
        self.queue_depth = Gauge(
            "kennel_queue_depth", "Requests waiting for inference", registry=self.registry
        )
        self.predictions = Counter(
            "kennel_predictions_total", "Predictions by label", ["label"], registry=self.registry
        )
        self.no_pet = Counter(
            "kennel_no_pet_predictions_total",
            "Predictions whose picture showed no cat or dog (out of distribution)",
            registry=self.registry,
        )
        self.model_version = Gauge(
            "kennel_model_version",
            "Version of the model being served",
            ["model"],
            registry=self.registry,
        )
        self.load_failures = Counter(
            "kennel_model_load_failures_total",
            "Bundles that failed to load or verify",
            registry=self.registry,
        )
        self.inputs_not_kept = Counter(
            "kennel_predlog_inputs_not_kept",
            "Input images not kept: free disk under serve.inputs_min_free_mb",
            registry=self.registry,
        )
        self.log_spooled = Gauge(
            "kennel_predlog_spooled_lines",
            "Prediction log lines waiting on disk for the database",
            registry=self.registry,
        )
