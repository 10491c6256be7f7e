# Smart City streaming lab. `make run` runs the pipeline, `make test` tests it; both set up what
# they need first (virtualenv, Python packages, JVM jars from Maven Central) and reuse it after.

PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
PARAMS ?= params/local.yaml
STAMP  := $(VENV)/.installed

# Python writes each module's bytecode (.pyc) the first time it is imported, also where the environment
# says not to (PYTHONDONTWRITEBYTECODE, set in many containers): otherwise every new Python the lab
# starts (a notebook's kernel, the stream's process, a Spark executor's Python worker) compiles pandas,
# pyspark, ... again, 3.5 s of CPU each on this machine; make test starts about a hundred.
unexport PYTHONDONTWRITEBYTECODE

.DEFAULT_GOAL := help
.PHONY: help setup run live lint check test fuzz bench notebooks lab clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@scripts/check-prereqs $(PYTHON)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet uv  # uv installs the rest (from PyPI, as pip would) in half pip's time
	$(PY) -m uv pip install --quiet --python $(PY) -e '.[dev,aws,trino]'
	$(PY) -m uv cache prune --quiet  # uv keeps a new copy of a rebuilt sdist (pyspark: 1.4 GB) whenever the index answers "modified"; keep the one in use
	touch $@

setup: $(STAMP) ## check prerequisites, install the virtualenv, fetch the jars and the map assets (once; offline after)
	@scripts/check-prereqs $(PY)
	$(PY) -m smartcity setup

run: setup ## run the six notebooks on $(PARAMS); the report is outputs/<profile>/index.html
	$(PY) -m smartcity run --params $(PARAMS)

live: setup ## the fleet drives while Spark streams, with a live status table (params/live.yaml; DURATION=0 runs until Ctrl-C)
	$(PY) -m smartcity live --params params/live.yaml $(if $(DURATION),--duration $(DURATION))

lint: $(STAMP) ## ruff (style, complexity, formatting) over the library, tests and scripts
	$(VENV)/bin/ruff check lib tests scripts
	$(VENV)/bin/ruff format --check lib tests scripts

check: setup lint ## the inner loop, under a minute: lint, then the unit tests (import contracts included) on every core
	$(PY) -m pytest tests/unit -n auto

# make test runs the whole of `pytest` in three parts: the unit tests on every core; the integration
# tests two modules at a time (each worker starts its own broker, Spark and PostgreSQL on free ports,
# and one module's engine waits overlap the other's work); then the notebooks in order (01 produces
# what 02 streams, ...).
test: setup lint ## lint, unit tests, integration tests on real engines, then pytest --nbval over notebooks/
	$(PY) -m pytest tests/unit -n auto
	$(PY) -m pytest tests/integration -n 2 --dist loadfile --durations=10
	$(PY) -m pytest notebooks

fuzz: setup ## the unit tests' hypothesis properties on 200 new random examples each (make test replays a fixed 8)
	$(PY) -m pytest tests/unit -o addopts="-p no:cacheprovider" --hypothesis-profile=fuzz

bench: setup ## producer, simulator, stream vs batch ceiling, freshness at 10k events/s, 1->2 executors, Trino vs DuckDB, capacity rates (outputs/bench/)
	$(PY) -m smartcity bench

notebooks: setup ## re-execute notebooks/ in place: new reference outputs for nbval (review the diff)
	$(PY) -m smartcity refresh-notebooks

lab: setup ## open JupyterLab on the notebooks (also as root, as in most containers)
	$(VENV)/bin/jupyter lab notebooks/ $(if $(filter 0,$(shell id -u)),--allow-root)

clean: ## delete run data and outputs (keeps the virtualenv and the jar cache)
	rm -rf data
	find outputs -mindepth 1 ! -name README.md -exec rm -rf {} +
