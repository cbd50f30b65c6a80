PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# pytest-xdist workers (auto: one per CPU; JOBS=0 runs the tests in this one process)
JOBS ?= auto
PYTEST := $(BIN)/pytest -q -n $(JOBS) --dist loadscope

.PHONY: install lint test test-fast bench table41 clean

install:  ## create .venv and install sdegen with its dev extras (takes the local torch wheels)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e ".[dev]"

lint:  ## ruff: lint and format check (no file is changed)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

test:  ## lint, then the whole test suite (slow end-to-end tests included)
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(PYTEST)

test-fast:  ## skip the slow end-to-end tests
	$(PYTEST) -m "not slow"

bench:  ## sampler and training benchmarks (tables on stdout, PNGs under outputs/bench)
	$(BIN)/python scripts/bench_samplers.py
	$(BIN)/python scripts/bench_train.py

table41:  ## thesis Table 4.1 on MNIST: experiment=sde_sweep (5 SDE configurations, loss=sigma2) x 2 seeds, evaluated, then `sdegen report` (hours on one core)
	PYTHON=$(BIN)/python bash scripts/table41.sh $(or $(OUT),outputs/table41)

clean:
	rm -rf outputs multirun wandb lightning_logs .pytest_cache
