# The two commands a newcomer needs: `make demo` (the main job) and `make test`.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
# pytest-xdist workers for `make test` (TEST_WORKERS=0: one process, serially). Suites that
# must stay together are grouped (xdist_group, tests/conftest.py), the rest spread by test.
TEST_WORKERS ?= 4
# Some machines set PYTHONDONTWRITEBYTECODE=1: then every worker, bridge and CLI process the
# suite starts compiles the whole source again (about 6 s of CPU per test worker's collection,
# 0.2 s per bridge process). Bytecode goes to the gitignored __pycache__ folders instead.
unexport PYTHONDONTWRITEBYTECODE
ifeq ($(TEST_WORKERS),0)
XDIST :=
else
XDIST := -n $(TEST_WORKERS) --dist loadgroup
endif

.PHONY: demo test lint typecheck unit rabbitmq venv clean chaos

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml tools/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]' -e tools
	touch $@

rabbitmq:
	@scripts/ensure-rabbitmq.sh

## Everything on one machine: simulators in-process, every role, the local RabbitMQ.
demo: venv rabbitmq
	$(BIN)/govbridge demo

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	$(BIN)/mypy

unit: venv rabbitmq
	$(BIN)/pytest -q --durations=25 $(XDIST) -m "not alone"
	$(BIN)/pytest -q -m alone

## ruff, mypy and the whole test suite against the real RabbitMQ (what CI runs), in parallel.
test: lint typecheck unit

## The full fault-injection run (over 2,000 inquiries, three bridge processes, a RabbitMQ node of
## its own on a free port; 20 to 40 minutes here, by how busy the machine is): its table goes to chaos-report.json and is the one
## in docs/reliability.md. `make test` runs the same scenarios reduced.
chaos: venv rabbitmq
	GOVBRIDGE_CHAOS=full GOVBRIDGE_CHAOS_REPORT=chaos-report.json \
		$(BIN)/pytest -q -s -p no:cacheprovider -m chaos -k 'full or cluster' tests/test_chaos.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache govbridge.db*
