"""The model registry: numbered versions of multi-file bundles, aliases with history, lineage."""
