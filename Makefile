# The two commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=
# pytest-xdist workers ("auto": one per core); the Galera and live-engine tests stay on one
# worker each (xdist groups set in tests/conftest.py).
PYTEST_WORKERS ?= auto
# `make test-dates` runs the suite with the clock moved here (Debian's faketime).
FAKE_DATE ?= 2027-07-01 12:00:00

.PHONY: run test test-dates fuzz-api venv lint format schema clean screenshots

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Smartswitch needs Python 3.11 or newer")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@touch $@

# Migrate the embedded SQLite database, load the demo, then serve the ASGI app and run a
# django-q2 worker side by side; Ctrl-C stops both.
run: venv
	$(PY) manage.py migrate --noinput
	$(PY) manage.py loaddemo
	@echo "Serving http://$(HOST):$(PORT)/admin/ and http://$(HOST):$(PORT)/portal/ — Ctrl-C stops."
	@trap 'kill 0' INT TERM; \
	$(PY) manage.py qcluster & \
	$(VENV)/bin/uvicorn smartswitch.asgi:application --host $(HOST) --port $(PORT) --lifespan on & \
	wait

# Lint, check that models and migrations agree, then the whole suite on the database
# named by DATABASE_URL (SQLite when unset). Exit code 5 means pytest collected nothing.
test: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) manage.py makemigrations --check --dry-run
	@echo "pytest on $${DATABASE_URL:-sqlite (default)}"
	@$(PY) -m pytest --create-db -n $(PYTEST_WORKERS) --dist loadgroup $(PYTEST_ARGS); status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests: nothing was checked" >&2; exit 1; fi; \
	exit $$status

# The suite with the clock moved to FAKE_DATE: no test may depend on today's date. The
# Galera tests are left out (their mariadbd processes keep the real clock), and so are the
# gevent ones (real_clock: see tests/conftest.py) and keepalived's (netns), which need real timers.
test-dates: venv
	@command -v faketime >/dev/null || { echo "test-dates needs faketime (apt-get install faketime)" >&2; exit 1; }
	@echo "pytest with the clock at $(FAKE_DATE)"
	faketime '$(FAKE_DATE)' $(PY) -m pytest --create-db -n $(PYTEST_WORKERS) --dist loadgroup -m "not galera and not netns and not real_clock" $(PYTEST_ARGS)

# schemathesis over the whole API against a served demo (about 2 minutes; docs/API.md).
fuzz-api: venv
	$(PY) bench/fuzz_api.py

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: venv
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

schema: venv
	$(PY) manage.py spectacular --validate --fail-on-warn --file docs/openapi.yaml

clean:
	rm -rf $(VENV) var

# The browser tests (headless Chromium) with their screenshots kept in docs/screenshots:
# every portal page, the reports and the live dashboards, as README and docs show them.
screenshots: venv
	rm -rf docs/screenshots
	BROWSER_SCREENSHOTS_DIR=$(CURDIR)/docs/screenshots $(PY) -m pytest -n 0 -p no:cacheprovider tests/browser

# The Spanish catalogue of each app in MESSAGE_APPS (its locale/es/LC_MESSAGES/django.po,
# updated from the marked strings), then compiled to the .mo files Django reads. Needs GNU
# gettext: apt-get install gettext.
.PHONY: messages
messages: MESSAGE_APPS ?= apps/portal apps/live apps/reports apps/billing apps/peers apps/invoicing
messages: venv
	@command -v msgfmt >/dev/null || { echo "make messages needs GNU gettext (apt-get install gettext)" >&2; exit 1; }
	@for app in $(MESSAGE_APPS); do \
		echo "messages: $$app"; \
		mkdir -p $$app/locale && \
		(cd $$app && $(abspath $(PY)) $(CURDIR)/manage.py makemessages -l es --no-obsolete && \
			$(abspath $(PY)) $(CURDIR)/manage.py compilemessages -l es) || exit 1; \
	done
