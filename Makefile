# Thin wrappers; the work is done by `lakehouse` (pipelines/cli.py) and pytest.
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.8
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup prerequisites venv jars dbt-parse demo test test-unit ui stack-up stack-down stack-status clean

setup: prerequisites venv jars dbt-parse

# Debian's PostgreSQL when initdb is missing (needs root or sudo); Java 17 and Maven must be there already.
prerequisites:
	@command -v java >/dev/null || { echo "setup: java not found; install a JDK 17 (apt-get install openjdk-17-jre-headless)"; exit 1; }
	@command -v mvn >/dev/null || { echo "setup: mvn not found; install Maven (apt-get install maven)"; exit 1; }
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  echo "setup: installing Debian's postgresql"; \
	  $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get install -y -q postgresql; \
	fi

venv:
	@command -v uv >/dev/null || $(PYTHON) -m pip install -q "uv==$(UV_VERSION)"
	uv sync --frozen

jars: venv
	$(BIN)/lakehouse stack install

dbt-parse: venv
	cd dbt_project && ../$(BIN)/dbt parse --quiet --profiles-dir .

demo: setup
	$(BIN)/lakehouse demo

test: setup
	$(BIN)/pytest

test-unit: venv
	$(BIN)/pytest tests/unit

# the instance `lakehouse` uses (DAGSTER_HOME, else <data_dir>/dagster), with our settings if it has none
ui: setup
	DAGSTER_HOME="$$($(BIN)/python -c 'from pipelines.run import dagster_home; print(dagster_home())')" \
	  $(BIN)/dagster dev -w workspace.yaml

stack-up: setup
	$(BIN)/lakehouse stack up

stack-down:
	@[ -x $(BIN)/lakehouse ] && $(BIN)/lakehouse stack down || true

stack-status:
	$(BIN)/lakehouse stack status


clean: stack-down
	rm -rf data/lake data/stack data/dagster data/lineage dbt_project/target
