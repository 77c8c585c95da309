# The two set-up commands: `make run` (web side and worker on the embedded SQLite) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: install run test lint lock test-matrix bench clean

install: $(VENV)/.installed

EXTRAS = test,postgres,server,redis,lint,bench

# Installed through constraints.txt: the versions CI tested are the versions deployed.
$(VENV)/.installed: setup.cfg pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[$(EXTRAS)]'
	touch $@

# constraints.txt anew: the newest versions setup.cfg allows, resolved in a throw-away environment.
lock:
	rm -rf .venv-lock
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install --quiet --disable-pip-version-check -e '.[$(EXTRAS)]'
	{ sed -n '1,2p' constraints.txt; .venv-lock/bin/pip freeze --exclude-editable; } > constraints.txt.new
	mv constraints.txt.new constraints.txt
	rm -rf .venv-lock

run: install
	PYTHON=$(BIN)/python scripts/run-dev

test: install
	$(BIN)/pytest

# Style, types (strict where the rules live), the layers' import contracts, and migrations up to date.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python manage.py makemigrations --check --dry-run

# The supported versions (tox.ini); PostgreSQL environments need TEST_POSTGRES_URL.
TOXENV ?= py311-django52-sqlite,py312-djangolatest-sqlite
test-matrix: install
	$(BIN)/pip install --quiet --disable-pip-version-check 'tox>=4'
	$(BIN)/tox -e $(TOXENV)

bench: install
	$(BIN)/python bench/tick.py

clean:
	rm -rf $(VENV) .venv-lock var *.egg-info
