# The two commands of the README: `make demo` and `make test`. Both set up .venv on first use.
SYSTEM_PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test install lint browser

$(VENV)/.installed: pyproject.toml
	$(SYSTEM_PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/proctor demo

# One pytest worker per core and one more: the tests wait on servers, subprocesses and browsers for about a third
# of their time, which the extra worker fills (2 cores: 10:01 against 13:22-13:59 with one per core, and 10:31 with
# two more). Each test file stays on one worker (its module fixtures start once). Every worker starts its own S3
# server and PostgreSQL database, on free ports and under a fresh name. The `serial` tests (Ray nodes and worker
# processes killed under deadlines) then run alone, as they would on a loaded CI runner.
TEST_WORKERS ?= $(shell $(SYSTEM_PYTHON) -c \
	'import os; print(1 + (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))')

test: $(VENV)/.installed browser
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile -m "not serial"
	$(PY) -m pytest -m serial

# The browser tests drive Debian's Chromium; Playwright never downloads one. As root we install it from
# Debian's packages if it is missing; otherwise those tests skip with the reason (and fail under CI=true).
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		(apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 || \
		 (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium chromium-driver >/dev/null 2>&1)) ; } || \
		echo "note: no Chromium and no way to install it here; the browser tests will say so"

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy core storage ingest detectors pipelines review_ui api proctor models openedx recorder
