# Yitong (一通): the two commands are `make demo` and `make test`.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
APT_PACKAGES := slapd ldap-utils chromium chromium-driver fonts-wqy-microhei softhsm2 opensc
export PIP_DISABLE_PIP_VERSION_CHECK := 1
# Bytecode (and pytest's rewritten test modules) cached on disk: without it every xdist worker,
# every server the tests start and every CLI subprocess compiles the whole project again.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: screenshots all demo cluster soak drills test lint fmt venv system-deps services translations test-sqlite test-postgres bench mutation clean

all: test

$(BIN)/activate:
	$(PY) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/activate
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,hsm]'
	touch $@

venv: $(VENV)/.installed

translations: venv
	$(BIN)/pybabel compile -d idp/translations -f

# Debian packages the tests drive for real: slapd, Chromium, SoftHSM2.
system-deps:
	@missing=""; for b in slapd ldapwhoami chromium chromedriver softhsm2-util; do \
	  command -v $$b >/dev/null 2>&1 || [ -x /usr/sbin/$$b ] || missing="$$missing $$b"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages (missing:$$missing)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(APT_PACKAGES) >/dev/null; \
	fi

# PostgreSQL and Redis run on this kind of machine; start them if they stopped.
services:
	@pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null || { command -v pg_ctlcluster >/dev/null && pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start || true; }
	@redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 || { command -v redis-server >/dev/null && redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir /tmp || true; }

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

fmt: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Two workers (pytest-xdist): CI has two cores; each worker has its own database.
TEST_WORKERS ?= 2

test-sqlite: venv translations
	YITONG_TEST_DB=sqlite $(BIN)/pytest -q -p no:cacheprovider -n $(TEST_WORKERS)

test-postgres: venv translations
	YITONG_TEST_DB=postgres $(BIN)/pytest -q -p no:cacheprovider -n $(TEST_WORKERS)

test: system-deps services venv translations lint test-sqlite test-postgres

demo: venv translations
	$(BIN)/yitong demo

# Production shape on one machine (docs/deployment.md): two gunicorn nodes behind a local
# round-robin balancer on :5000, on PostgreSQL and Redis, with the demo relying parties.
# Fault drills (issue 12): two nodes on a private PostgreSQL, Redis and slapd.  They run in the
# PostgreSQL pass of `make test`; this target runs only them (docs/deployment.md, "Fault drills").
drills: venv translations services
	YITONG_TEST_DB=postgres $(BIN)/pytest -q -p no:cacheprovider tests/test_fault_drills.py

cluster: venv translations services
	$(BIN)/python -m examples.cluster

# Ten minutes of mixed traffic against that set-up (docs/benchmarks.md "Soak"); not in `make test`.
SOAK_SECONDS ?= 600
soak: venv translations services
	$(BIN)/python scripts/soak.py --seconds $(SOAK_SECONDS)

# The pictures in docs/screenshots and docs/images, taken by the browser tests.
screenshots: venv translations
	YITONG_SCREENSHOTS=docs $(BIN)/pytest -q -p no:cacheprovider tests/browser/test_accessibility.py tests/browser/test_console.py

bench: venv
	$(BIN)/python -m bench.run

# Mutation testing of the security modules (docs/security.md, "Mutation testing"); not part of
# `make test`: it takes tens of minutes.  MUTATE="idp/audit.py --budget 600" narrows a run.
MUTATE ?=
mutation: venv translations
	nice -n 10 $(BIN)/python scripts/mutation.py $(MUTATE)

clean:
	rm -rf $(VENV) instance .demo .cluster .pytest_cache .mypy_cache .ruff_cache .mutation
