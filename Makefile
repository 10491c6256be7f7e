# Smart City streaming lab. `make run` runs the pipeline, `make test` tests it; both set up what
# they need first (virtualenv, Python packages, JVM jars from Maven Central) and reuse it after.

PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
PARAMS ?= params/local.yaml
STAMP  := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help setup run live test fuzz bench notebooks lab clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@scripts/check-prereqs $(PYTHON)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install -e '.[dev,aws]'
	touch $@

setup: $(STAMP) ## check prerequisites, install the virtualenv, fetch the jars and the map assets (once; offline after)
	@scripts/check-prereqs $(PY)
	$(PY) -m smartcity setup

run: setup ## run the six notebooks on $(PARAMS); the report is outputs/<profile>/index.html
	$(PY) -m smartcity run --params $(PARAMS)

live: setup ## the fleet drives while Spark streams, with a live status table (params/live.yaml; Ctrl-C stops)
	$(PY) -m smartcity live --params params/live.yaml $(if $(DURATION),--duration $(DURATION))

test: setup ## unit tests, integration tests on real engines, then pytest --nbval over notebooks/
	$(PY) -m pytest

fuzz: setup ## the unit tests' hypothesis properties on 200 new random examples each (make test replays a fixed 8)
	$(PY) -m pytest tests/unit -o addopts="-p no:cacheprovider" --hypothesis-profile=fuzz

bench: setup ## producer, simulator, stream vs batch ceiling, freshness at 10k events/s, 1->2 executors, capacity rates (outputs/bench/)
	$(PY) -m smartcity bench

notebooks: setup ## re-execute notebooks/ in place: new reference outputs for nbval (review the diff)
	$(PY) -m smartcity refresh-notebooks

lab: setup ## open JupyterLab on the notebooks
	$(VENV)/bin/jupyter lab notebooks/

clean: ## delete run data and outputs (keeps the virtualenv and the jar cache)
	rm -rf data
	find outputs -mindepth 1 ! -name README.md -exec rm -rf {} +
