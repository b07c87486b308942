"""Monitoring: windows of the prediction log against the training reference (integrity, drift,
performance with late labels or estimated without them, fairness), and host/device telemetry."""
