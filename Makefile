# The two set-up commands: `make run` (the worker on the embedded SQLite) and `make test`.
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
	$(BIN)/python manage.py migrate --verbosity 0
	$(BIN)/python manage.py seed_demo
	$(BIN)/python manage.py run_fiches_ticker

test: install
	$(BIN)/pytest

bench: install
	$(BIN)/python bench/tick.py

clean:
	rm -rf $(VENV) var *.egg-info
