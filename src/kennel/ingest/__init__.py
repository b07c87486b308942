"""Extract images from a data lake, validate and quarantine, store, and version them."""
