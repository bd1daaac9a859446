# The two commands of the README. Each creates .venv if it is missing and installs the project.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DEMO_OUT ?= runs/demo

.PHONY: install test demo docs bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"

$(STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

test: install
	$(BIN)/ruff check . && $(BIN)/python -m pytest $(PYTEST_ARGS)

demo: install
	$(BIN)/cnnlstm demo --out $(DEMO_OUT)

docs: install   # docs/cli.md and docs/config.md, generated from the parser and TrainConfig
	$(BIN)/python -m cnnlstm.apps.docs

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
