# The commands a newcomer needs; each is a thin wrapper. `make help` lists them.
# Variables: PARTS="kafka postgres" (limit up/down/status), PYTEST_ARGS, BENCH_ARGS,
# CAPPS_LOCAL_DIR and the port variables documented in deploy/local/capps_stack/__init__.py.

SHELL := /bin/bash
.DEFAULT_GOAL := help
# pip may put uv in ~/.local/bin, which is not always on PATH.
export PATH := $(HOME)/.local/bin:$(PATH)

LOCAL_DIR := $(or $(CAPPS_LOCAL_DIR),.local)
VENV_PY := .venv/bin/python
# The stack (deploy/local/capps_stack, run through stack.py) is standard library only:
# `down` and `status` work even before the venv exists.
STACK_PY = $(if $(wildcard $(VENV_PY)),$(VENV_PY),python3)
STACK = $(STACK_PY) deploy/local/stack.py
WITH_STACK_ENV = set -a; . $(LOCAL_DIR)/stack.env; set +a;
# mypy refuses a directory without Python files, so only the ones that have some.
MYPY_DIRS = $(shell for d in libs services deploy/demo-api/src deploy/local deploy/grafana tests bench; do \
	[ -n "$$(find $$d -name '*.py' -print -quit 2>/dev/null)" ] && echo $$d; done)

.PHONY: help venv native native-clean up down status logs test lint bench fmt clean distclean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

venv: ## create or update .venv from uv.lock (installs uv with pip when missing)
	@command -v uv >/dev/null || { echo "installing uv with pip"; \
		python3 -m pip install --quiet uv || python3 -m pip install --quiet --break-system-packages uv; }
	@uv sync --frozen

native: venv ## compile the gateway's per-call modules with mypyc (nothing to do when current)
	@uv run python services/gateway/native.py

native-clean: ## remove the compiled gateway modules: the gateway then runs interpreted
	find services/gateway/src -name '*.so' -delete

up: native ## start the local stack (no Docker), return when every part is healthy
	@$(STACK) up $(PARTS)

down: ## stop what `make up` started (and nothing else)
	@$(STACK) down $(PARTS)

status: ## one line per part: who runs it, whether it answers
	@$(STACK) status $(PARTS)

logs: ## follow the stack's logs
	@ls $(LOCAL_DIR)/log/*.log >/dev/null 2>&1 || { echo "no logs in $(LOCAL_DIR)/log: run make up"; exit 1; }
	tail -n 20 -F $(LOCAL_DIR)/log/*.log

test: up ## run the tests against the running stack (PYTEST_ARGS="-k gateway -x")
	@$(WITH_STACK_ENV) uv run pytest $(PYTEST_ARGS)

lint: venv ## ruff check, ruff format --check, mypy --strict
	uv run ruff check .
	uv run ruff format --check .
	uv run mypy $(MYPY_DIRS)

bench: up ## run the benchmarks against the running stack (BENCH_ARGS=...)
	@$(WITH_STACK_ENV) uv run python -m bench $(BENCH_ARGS)

fmt: venv ## format and auto-fix
	uv run ruff format .
	uv run ruff check --fix .

clean: down native-clean ## stop the stack, remove caches and build output (keeps data and secrets)
	rm -rf .mypy_cache .ruff_cache .pytest_cache deploy/local/kafka/target $(LOCAL_DIR)/log \
		$(LOCAL_DIR)/native-build
	find . -name __pycache__ -type d -not -path './.venv/*' -prune -exec rm -rf {} +

distclean: clean ## also delete the stack's data, Kafka jars and generated secrets
	@# A cluster kept outside the state directory (checkout under a 0700 parent) goes too.
	@if [ -L $(LOCAL_DIR)/postgres/data ]; then rm -rf "$$(dirname "$$(readlink $(LOCAL_DIR)/postgres/data)")"; fi
	rm -rf $(LOCAL_DIR)
