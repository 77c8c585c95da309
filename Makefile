# The two set-up commands: `make run` (web side and worker on the embedded SQLite) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: install run test bench clean

install: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test,postgres,server]'
	touch $@

run: install
	PYTHON=$(BIN)/python scripts/run-dev

test: install
	$(BIN)/pytest

bench: install
	$(BIN)/python bench/tick.py

clean:
	rm -rf $(VENV) var *.egg-info
