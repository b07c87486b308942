"""Model testing: metrics, calibration, slices and bias, reports, and quality gates (pure)."""
