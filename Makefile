# Two commands matter: `make demo` and `make test`. Both create or refresh .venv by themselves;
# the stamp file makes a second run install nothing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.kennel-installed

.PHONY: demo test lint typecheck layers unit venv bench clean s3-server

# --no-compile: byte-compiling every installed module (Ray's and PyTorch's thousands) took
# 104 s of install against 86 s without (a fresh clone, 11-30); a module is compiled when it is
# first imported instead.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-compile \
		-e '.[dev,train,s3,ray]'
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
