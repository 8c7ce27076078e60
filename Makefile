# invrob — the two commands of the README:
#   make book   runs every notebook at the default profile, then builds the book
#   make test   runs the test suite: unit tests, then one smoke run of the notebooks that feeds
#               nbval, the numeric regression checks and a book build (tests/test_notebooks.py)
# Both create .venv and install everything on first use.

# glibc's allocator: keep freed memory for the next batch instead of handing every large tensor
# back to the kernel and faulting fresh pages in at the next step. Measured on the 2-core VM, PGD-5
# training of Wong et al.'s net on all of MNIST: 469k page faults and 26% of the time in the kernel
# per 40 batches without, none with (2.58 s against 3.36 s); the same weights bit for bit. Every
# target inherits it (book, tests, benchmarks, and the worker processes they start).
export MALLOC_MMAP_THRESHOLD_ ?= 1000000000
export MALLOC_TRIM_THRESHOLD_ ?= 100000000000

PYTHON  ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
PROFILE ?= cpu
STAMP   := $(VENV)/.installed

.PHONY: install data notebooks book test test-fast bench nbval-update screenshots clean

$(STAMP): pyproject.toml
	@free=$$(df -Pk . | awk 'NR==2 {print int($$4 / 1048576)}'); [ "$$free" -ge 7 ] || \
	  echo "warning: $$free GiB free here; .venv needs about 6.5 GiB (torch and its CUDA libraries)"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	$(BIN)/python -m ipykernel install --prefix $(VENV) --name python3 --display-name "Python 3 (invrob)" >/dev/null
	touch $(STAMP)

install: $(STAMP)

data: install  ## fetch and verify MNIST (+ the 20-image CIFAR-10 sample)
	$(BIN)/python -m invrob.data

notebooks: data  ## execute notebooks/ at PROFILE into book/experiments/
	$(BIN)/python -m invrob.tooling.runbook --profile $(PROFILE) --book

book: notebooks  ## build the Jupyter Book into _build/html
	$(BIN)/jupyter-book build . --path-output . --warningiserror --keep-going
	@echo "book: open _build/html/index.html"

test: data
	$(BIN)/python -m pytest

test-fast: data  ## unit tests only (no notebooks, no book)
	$(BIN)/python -m pytest -m "not slow"

bench: data  ## speed/memory table -> benchmarks/results.md (7: stacked training; 8: FGSM-RS vs PGD-5 training; 9: side by side)
	$(BIN)/python -m benchmarks --only pgd rotation grid spatial stacked fastat parallel

nbval-update: data  ## re-record tests/notebooks (nbval) and tests/reference/smoke (tables) from one smoke run under scalar CPU kernels
	$(BIN)/python -m invrob.tooling.regression record

screenshots:  ## the built book in headless Chromium at 1400 and 800 px -> _build/screenshots/
	$(BIN)/python tools/screenshots.py

clean:
	rm -rf _build results/smoke checkpoints/smoke
