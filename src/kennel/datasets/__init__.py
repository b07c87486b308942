"""Immutable dataset versions: manifests, splits, duplicate detection and the catalog."""
