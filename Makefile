# Two commands matter: `make demo` and `make test`. Both create or refresh .venv by themselves;
# the stamp file makes a second run install nothing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.kennel-installed

.PHONY: demo test lint typecheck layers unit venv bench clean s3-server

# Byte-compiled at install (pip's default) and src/ compiled too (an editable install's own
# modules are not): where PYTHONDONTWRITEBYTECODE is set, as on this project's machines,
# nothing is ever cached on import, and every `kennel` command compiled ~500 modules anew
# (about 1 s of CPU each; an append's re-version took 3 s before its own work began).
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check \
		-e '.[dev,train,s3,ray]'
	$(BIN)/python -m compileall -q src
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/kennel demo

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples

typecheck: $(STAMP)
	$(BIN)/mypy

layers: $(STAMP)
	$(BIN)/lint-imports

unit: $(STAMP)
	$(BIN)/pytest

test: lint typecheck layers unit

# A real S3-protocol server on 127.0.0.1:5000 for the shared-store tests (moto's standalone
# server; .ci/run starts it in the background). Without it the tests start one in-process.
s3-server: $(STAMP)
	$(BIN)/moto_server -H 127.0.0.1 -p 5000

clean:
	rm -rf $(VENV) .kennel-demo .pytest_cache .mypy_cache .ruff_cache
