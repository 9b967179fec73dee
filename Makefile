PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
# The development server's settings: DEBUG on and a secret key of this checkout's own, written
# once (a second `make run` reuses it, so sessions survive). Production sets its own variables.
DEV_ENV := var/development.env
# The development web server's port: `make run PORT=8001`, or PORT in the environment.
PORT ?= 8000

.PHONY: run test lint format setup messages clean

$(INSTALLED): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Python 3.11 or newer is needed (set PYTHON=...)"; exit 1; }
	@test -x $(BIN)/python || { echo "Creating a virtual environment in $(VENV)..."; $(PYTHON) -m venv $(VENV); }
	@echo "Installing the CRM and its dependencies into $(VENV) (the first time takes a minute or so)..."
	@$(BIN)/python -m pip install --quiet --upgrade pip
	@$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

setup: $(INSTALLED)

$(DEV_ENV):
	@mkdir -p $(@D)
	@umask 077 && $(PYTHON) -c 'import secrets; print("# Written once by make run for development only.\nDEBUG=true\nSECRET_KEY=" + secrets.token_hex(32))' > $@.tmp && mv $@.tmp $@
	@echo "Wrote a development secret key to $@"

# Web, worker and beat from the Procfile (scripts/run.py: Ctrl-C stops all three cleanly).
run: $(INSTALLED) $(DEV_ENV)
	@echo "Migrating the database..."
	@$(BIN)/honcho run -e $(DEV_ENV) $(BIN)/python manage.py migrate --noinput
	@$(BIN)/honcho run -e $(DEV_ENV) $(BIN)/python manage.py load_demo
	@PORT=$(PORT) $(BIN)/python scripts/run.py --env $(DEV_ENV) --procfile Procfile

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(INSTALLED)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: lint
	$(BIN)/pytest
	DATABASE_URL=$${TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test} $(BIN)/pytest

messages: $(INSTALLED) $(DEV_ENV)
	$(BIN)/honcho run -e $(DEV_ENV) $(BIN)/python manage.py makemessages -l ru -l en --no-location -i ".venv/*" -i "var/*"
	$(BIN)/honcho run -e $(DEV_ENV) $(BIN)/python manage.py compilemessages -i .venv

clean:
	rm -rf $(VENV) var
