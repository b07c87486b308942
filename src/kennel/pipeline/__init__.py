"""The build pipeline: data version -> search -> train -> evaluate -> package -> register."""
