# make demo  - the whole ARM pipeline on ShapesWorld (sets itself up)
# make test  - every package's tests, the cross-package tests, and the install-alone check
# make bench - benchmarks into bench-results/bench.json
# Each target creates .venv and installs the pinned torch pair + the four packages if needed,
# other dependencies at the versions in constraints/dev.txt.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.arm-installed
PROFILE ?= auto
TORCH_PAIR := torch==2.14.1 torchvision==0.29.1
# the tested versions of everything else (the packages' own ranges stay open for users)
CONSTRAINTS := constraints/dev.txt
PYTEST_ARGS ?=

.PHONY: setup demo reproduce reproduce-gpu test test-alone bench clean-demo

setup: $(STAMP)

$(STAMP): $(CONSTRAINTS) packages/arm-tokenizer/pyproject.toml packages/arm-data/pyproject.toml packages/arm-core/pyproject.toml packages/arm-rl/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel
	$(PIP) install -q -c $(CONSTRAINTS) $(TORCH_PAIR)
	$(PIP) install -q -c $(CONSTRAINTS) $(TORCH_PAIR) -e 'packages/arm-tokenizer[hf,test]' -e 'packages/arm-data[test]' -e 'packages/arm-core[hf,quant,test]' -e 'packages/arm-rl[test]' matplotlib
	touch $(STAMP)

demo: $(STAMP)
	$(PY) scripts/demo.py --profile $(PROFILE)

reproduce: $(STAMP)
	$(PY) scripts/demo.py --profile full --out runs/reproduce

# the same pipeline sized for one CUDA GPU (needs a CUDA build of torch)
reproduce-gpu: $(STAMP)
	$(PY) scripts/demo.py --profile gpu --out runs/reproduce-gpu

# arm-tokenizer's and arm-data's own tests run in a venv where each is installed without the
# packages above it (scripts/check_install_alone.sh); arm-core, arm-rl, the cross-package tests
# and the experiments' tests (experiments/, not installed) run in the full workspace venv.
test: $(STAMP)
	bash scripts/check_install_alone.sh $(VENV)
	OMP_NUM_THREADS=2 $(PY) -m pytest -q -p no:cacheprovider packages/arm-core/tests packages/arm-rl/tests tests experiments/tests $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) scripts/bench.py --out bench-results/bench.json

clean-demo:
	rm -rf runs/demo
