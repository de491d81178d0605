# `make test` and `make train` work on a fresh machine: they create .venv and install into it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test train lint reference clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/ruff check compiler runtime dnn tests bench
	$(BIN)/ruff format --check compiler runtime dnn tests bench
	$(BIN)/mypy compiler
	$(BIN)/python -m pytest

# Until the training runtime lands, `make train` checks and summarizes the default example.
train: $(STAMP)
	$(BIN)/dnn check examples/digits_cnn.dnn
	$(BIN)/dnn summary examples/digits_cnn.dnn

reference: $(STAMP)
	$(BIN)/python -m dnn.compiler.reference > docs/reference.md
	$(BIN)/python -m dnn.compiler.reference errors > docs/errors.md

clean:
	rm -rf $(VENV) build *.egg-info
