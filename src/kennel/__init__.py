"""kennel: end-to-end MLOps for image classifiers."""

__version__ = "0.1.0"
