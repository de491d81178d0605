# `make test` and `make train` work on a fresh machine: they create .venv and install into it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test train lint reference editor grammar clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	$(BIN)/pip install --quiet --no-deps 'jax2onnx>=0.17,<0.18'  # why --no-deps: pyproject's onnx extra
	touch $(STAMP)

# pytest-xdist workers: the suite is mostly XLA compiles, one core each (2 on the CI machine).
TEST_WORKERS ?= 2

test: $(STAMP)
	$(BIN)/ruff check compiler runtime dnn tests bench
	$(BIN)/ruff format --check compiler runtime dnn tests bench
	$(BIN)/mypy compiler
	$(BIN)/python -m pytest -n $(TEST_WORKERS)

# Train the default example on the built-in digits; the run folder is printed at the end.
train: $(STAMP)
	$(BIN)/dnn train examples/digits_cnn.dnn --out runs/digits_cnn-$$(date +%Y%m%d-%H%M%S)

reference: $(STAMP)
	$(BIN)/python -m dnn.compiler.reference > docs/reference.md
	$(BIN)/python -m dnn.compiler.reference errors > docs/errors.md

# The TextMate grammar of editors/vscode/, from the registries (a test fails when it is stale).
editor: $(STAMP)
	$(BIN)/python -m dnn.compiler.textmate > editors/vscode/syntaxes/dnn.tmLanguage.json

# After editing grammar/dnn.lark: rebuild the shipped LALR tables (grammar/tables.py).
grammar: $(STAMP)
	$(BIN)/python -m dnn.compiler.grammar_tables

clean:
	rm -rf $(VENV) build *.egg-info
