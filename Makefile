# usage_etl — every target installs from the lock file (uv.lock) first.
PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .usage_etl/tools
UV := $(TOOLS)/bin/uv
VENV := .venv
BIN := $(VENV)/bin
export DAGSTER_HOME ?= $(CURDIR)/.dagster
# pytest-xdist workers: each test has its own database, so tests run in parallel safely
TEST_WORKERS ?= auto

.PHONY: install demo ui test bench stop clean

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet uv==$(UV_VERSION)

install: $(UV)  ## create .venv exactly as pinned in uv.lock
	$(UV) sync --frozen --python $(PYTHON)

demo: install  ## embedded PostgreSQL (unless USAGE_ETL_DATABASE_URL), 30 days of sample data, all partitions
	@mkdir -p $(DAGSTER_HOME) && (test -f $(DAGSTER_HOME)/dagster.yaml || cp deploy/dagster.local.yaml $(DAGSTER_HOME)/dagster.yaml)
	$(BIN)/usage-etl demo

UI_PORT ?= 3000
# `dagster dev` warns on every start that `dg dev` supersedes it (a separate CLI package doing the same
# here); only that warning is silenced, by its message.
ui: install  ## the Dagster UI on http://127.0.0.1:$(UI_PORT) (UI_PORT=3000)
	@mkdir -p $(DAGSTER_HOME) && (test -f $(DAGSTER_HOME)/dagster.yaml || cp deploy/dagster.local.yaml $(DAGSTER_HOME)/dagster.yaml)
	PYTHONWARNINGS='ignore:Function `dev_command` is superseded' $(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p $(UI_PORT)

test: install  ## pytest against a real PostgreSQL (see README), TEST_WORKERS (default auto) in parallel
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS)

bench: install  ## ours vs seed-style SQL, tuned SQL and DuckDB on 5M messages (BENCH_ARGS="--messages N --sizes …"); exit 1 if summaries differ
	$(UV) sync --frozen --group bench --python $(PYTHON)
	$(BIN)/python bench/compare.py $(BENCH_ARGS)

stop:  ## stop the embedded PostgreSQL (it keeps running after make demo, for make ui)
	@test ! -d .usage_etl/pgdata || $(BIN)/python -c "import pgserver; pgserver.get_server('.usage_etl/pgdata', cleanup_mode='stop')"

clean: stop
	rm -rf $(VENV) .usage_etl .dagster .env
