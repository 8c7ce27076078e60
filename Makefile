# invrob — the two commands of the README:
#   make book   runs every notebook at the default profile, then builds the book
#   make test   runs the test suite (pytest + nbval regression checks, smoke profile)
# Both create .venv and install everything on first use.

PYTHON  ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
PROFILE ?= cpu
STAMP   := $(VENV)/.installed

.PHONY: install data notebooks book test test-fast bench nbval-update clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	$(BIN)/python -m ipykernel install --prefix $(VENV) --name python3 --display-name "Python 3 (invrob)" >/dev/null
	touch $(STAMP)

install: $(STAMP)

data: install  ## fetch and verify MNIST (+ the 20-image CIFAR-10 sample)
	$(BIN)/python -m invrob.data

notebooks: data  ## execute notebooks/ at PROFILE into book/experiments/
	$(BIN)/python -m invrob.runbook --profile $(PROFILE)

book: notebooks  ## build the Jupyter Book into _build/html
	$(BIN)/jupyter-book build . --path-output . --warningiserror --keep-going
	@echo "book: open _build/html/index.html"

test: data
	$(BIN)/python -m pytest

test-fast: data  ## unit tests only (no notebooks, no book)
	$(BIN)/python -m pytest -m "not slow" --ignore=tests/notebooks

bench: data  ## speed/memory table -> benchmarks/results.md
	$(BIN)/python -m benchmarks

nbval-update: data  ## re-record the smoke-profile notebooks that nbval checks
	OMP_NUM_THREADS=1 $(BIN)/python -m invrob.runbook --profile smoke --fresh --dest tests/notebooks

clean:
	rm -rf _build results/smoke checkpoints/smoke
