"""Deployment patterns beyond the REST service: offline batch scoring into a shared table (and,
later, the messaging worker, model-as-data and video). All call the one Predictor."""
