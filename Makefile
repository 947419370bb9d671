# Set-up and everyday commands. SPEC §2: `make run` and `make test` work on a fresh machine with
# only Python 3.11+; `.ci/run` calls `make test`.
#
# Settings come from the environment, then `.env`, then defaults. HOST, PORT, DEBUG (for `make
# run`) and the GUNICORN_* values are read the same way here: `make run PORT=8765` also works.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 >/dev/null 2>&1 && echo python3.11 || echo python3)
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
MANAGE := $(PY) manage.py
# Inside .venv, so deleting .venv (or `make clean`) also forgets that requirements were installed.
STAMP := $(VENV)/.requirements-installed

# $(call dotenv,NAME): NAME's value in .env ("" when .env or the line is missing). Read when a
# recipe runs, so after `.env` has been written.
dotenv = $(shell [ -f .env ] && sed -n 's/^[[:space:]]*$(1)[[:space:]]*=[[:space:]]*//p' .env \
	| tail -n 1 | sed "s/^[\"']//; s/[\"'][[:space:]]*$$//")
# environment or command line, then .env, then the default
setting = $(or $($(1)),$(call dotenv,$(1)),$(2))

# What `make test` runs on, as Django sees it (DATABASE_URL or the SQLite default).
define DB_DESCRIPTION
import os
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "alwrity.settings")
from django.db import connection as c
print(" ".join(str(v) for v in (c.vendor, c.settings_dict.get("HOST"), c.settings_dict["NAME"]) if v))
endef
export DB_DESCRIPTION

host = $(call setting,HOST,127.0.0.1)
port = $(call setting,PORT,8000)
threads = $(call setting,GUNICORN_THREADS,400)

.PHONY: help venv run serve bench test lint fmt clean

help: ## list the targets
	@echo "make targets:"
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | awk -F'\t' '{printf "  %-7s %s\n", $$1, $$2}'

venv: $(STAMP) ## create .venv and install requirements.txt (only when it changed)

$(PY):
	@echo "==> Creating $(VENV) with $(PYTHON)"
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
		echo "error: '$(PYTHON)' is missing or older than Python 3.11; install 3.11+ or pass PYTHON=/path/to/python3.11" >&2; \
		exit 1; }
	@$(PYTHON) -m venv $(VENV) || { \
		echo "error: '$(PYTHON) -m venv' failed (on Debian/Ubuntu: apt-get install python3-venv)" >&2; \
		rm -rf $(VENV); exit 1; }

$(STAMP): requirements.txt | $(PY)
	@echo "==> Installing requirements.txt into $(VENV)"
	@$(PY) -m pip install --disable-pip-version-check --quiet --progress-bar off -r requirements.txt
	@touch $@

# Never overwritten: envfile refuses when .env exists, and make only builds it when missing.
.env: | $(STAMP)
	@echo "==> Writing .env"
	@$(PY) -m alwrity.envfile

run: $(STAMP) .env ## dev server: .venv, .env, migrations, admin account, runserver on HOST:PORT
	@echo "==> Migrating the database"
	@$(MANAGE) migrate --noinput
	@echo "==> Admin account"
	@$(MANAGE) ensure_admin --url "http://$(host):$(port)/admin/"
	@echo ""
	@echo "    Admin:    http://$(host):$(port)/admin/"
	@echo "    API:      http://$(host):$(port)/api/llm/"
	@echo "    API docs: http://$(host):$(port)/api/docs/"
	@echo ""
	@echo "==> Serving on http://$(host):$(port)/ (Ctrl-C stops)"
	@DEBUG="$(call setting,DEBUG,true)" $(MANAGE) runserver "$(host):$(port)"

# The production server. A generation waits on its upstream for seconds, so threads hold the
# concurrency (gthread): 3 workers x 400 threads keep 1,200 requests in flight on 2 cores (a
# waiting thread costs memory, no CPU). --worker-connections is 3 x threads: gthread keeps the
# connections beyond its threads as idle keep-alive clients in its poller (closed after
# gunicorn's 2 s keep-alive), so a keep-alive client does not pay a new TCP connection per call.
# The model and these numbers were chosen with `make bench` (docs/serving.md).
# alwrity.gunicorn_hooks prepares each worker (URLconf imported, garbage collector tuned, the
# ledger sweeper started). It needs a stable SECRET_KEY: a per-process random one would give
# each worker its own sessions and its own derived encryption key. No control socket: gunicorn
# 27 would put one in ~/.gunicorn, shared by every instance of the user.
#
# Metrics (/metrics): every worker writes its counters to files in PROMETHEUS_MULTIPROC_DIR and a
# scrape sums them (prometheus-client's multiprocess mode). The directory must hold nothing of
# an earlier run: its *.db files are removed at start. By default it is this server's own,
# var/metrics/<pid of this make, which the server runs under>; those of servers that are gone
# are removed too. An operator's PROMETHEUS_MULTIPROC_DIR wins: from the environment or the
# command line, not .env (which would put every manage.py command in multiprocess mode).
serve: export PROMETHEUS_MULTIPROC_DIR := $(or $(PROMETHEUS_MULTIPROC_DIR),$(CURDIR)/var/metrics/$(shell echo $$PPID))
serve: $(STAMP) ## production server (gunicorn) on HOST:PORT; migrates first, creates no users
	@if [ -z "$${SECRET_KEY:-}" ] && ! grep -qE '^[[:space:]]*SECRET_KEY[[:space:]]*=[[:space:]]*[^[:space:]]' .env 2>/dev/null; then \
		echo "error: make serve needs SECRET_KEY, in the environment or in .env (make run, or $(PY) -m alwrity.envfile, writes one)" >&2; \
		exit 1; fi
	@echo "==> Migrating the database"
	@$(MANAGE) migrate --noinput
	@for dir in var/metrics/[0-9]*/; do \
		pid="$$(basename "$$dir")"; \
		case "$$pid" in *[!0-9]*) continue;; esac; \
		kill -0 "$$pid" 2>/dev/null || rm -rf "$$dir"; \
	done; mkdir -p "$$PROMETHEUS_MULTIPROC_DIR" && rm -f "$$PROMETHEUS_MULTIPROC_DIR"/*.db
	@echo "==> gunicorn on http://$(host):$(port)/ (worker metrics in $$PROMETHEUS_MULTIPROC_DIR)"
	@exec $(BIN)/gunicorn alwrity.wsgi:application \
		--bind "$(host):$(port)" \
		--worker-class "$(call setting,GUNICORN_WORKER_CLASS,gthread)" \
		--workers "$(call setting,GUNICORN_WORKERS,3)" \
		--threads "$(threads)" \
		--worker-connections "$(call setting,GUNICORN_WORKER_CONNECTIONS,$(shell echo $$(( 3 * $(threads) ))))" \
		--backlog "$(call setting,GUNICORN_BACKLOG,2048)" \
		--timeout "$(call setting,GUNICORN_TIMEOUT,120)" \
		--config python:alwrity.gunicorn_hooks \
		--no-control-socket \
		--access-logfile -

# Starts the fake upstream and `make serve` on free loopback ports (a throwaway database), and
# measures the gateway against calling the fake directly. BENCH_ARGS: e.g. "--duration 5".
# BASELINE=<git rev> also serves that revision (a git worktree, its own venv cached in
# var/bench-baseline/, its own database and port) and measures both, alternating cell by cell.
# PEER=litellm also measures LiteLLM's proxy (installed once in var/bench-peer/) in the same run,
# against the same fake, with the same OpenAI-shaped request.
bench: $(STAMP) ## benchmark make serve against the fake upstream (BASELINE=<rev>, PEER=litellm: compare in the same run); writes bench/RESULTS.md
	@$(PY) -m bench.run $(if $(BASELINE),--baseline '$(BASELINE)') $(if $(PEER),--peer '$(PEER)') \
		--command 'make bench$(if $(BASELINE), BASELINE=$(BASELINE))$(if $(PEER), PEER=$(PEER))$(if $(BENCH_ARGS), BENCH_ARGS="$(BENCH_ARGS)")' \
		$(BENCH_ARGS)

# ALWRITY_ENV_FILE= : a developer's .env (keys, DEBUG, ...) never reaches the tests. DATABASE_URL
# from the environment still does: CI uses it to run the suite on PostgreSQL.
test: $(STAMP) ## ruff check, ruff format --check, lint-imports, then the whole pytest suite
	@echo "==> ruff check"
	@$(BIN)/ruff check .
	@echo "==> ruff format --check"
	@$(BIN)/ruff format --check .
	@echo "==> lint-imports (the layers in pyproject.toml)"
	@$(BIN)/lint-imports --no-cache
	@echo "==> pytest (database: $$(ALWRITY_ENV_FILE= $(PY) -c "$$DB_DESCRIPTION"))"
	@ALWRITY_ENV_FILE= $(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests; this suite always has tests" >&2; fi; \
	exit $$rc

lint: $(STAMP) ## ruff check and ruff format --check
	@$(BIN)/ruff check .
	@$(BIN)/ruff format --check .

fmt: $(STAMP) ## ruff format, then ruff check --fix
	@$(BIN)/ruff format .
	@$(BIN)/ruff check --fix .

clean: ## remove .venv and caches (keeps .env and db.sqlite3)
	rm -rf $(VENV) .pytest_cache .ruff_cache
	find . -path ./.git -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
