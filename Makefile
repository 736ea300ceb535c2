# The two commands of the README: `make crash-recovery` (the main job) and `make test`.
SEED ?= 7
WORKERS ?= 3
PYTEST_ARGS ?= -n 4
BACKENDS ?= --backend process --backend docker

.PHONY: setup crash-recovery test lint down clean

setup:
	scripts/setup.sh

crash-recovery: setup
	.venv/bin/harness run crash-recovery --workers $(WORKERS) --seed $(SEED)

test:
	scripts/setup.sh --docker
	.venv/bin/python -m pytest $(PYTEST_ARGS) $(BACKENDS)

lint: setup
	.venv/bin/ruff check . && .venv/bin/ruff format --check .

down:
	.venv/bin/harness down

clean: down
	rm -rf runs .pytest_cache
