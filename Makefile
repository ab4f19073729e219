# make book         build the book into _build/html, executing each chapter
# make serve        serve _build/html on http://127.0.0.1:8000 (the live viewer runs there on
#                   several threads; opened as a file, the pages show pre-rendered frames)
# make test         the whole test suite: unit tests (the 15 slowest listed), the book build,
#                   the built book in a browser
# make notebooks    every chapter under `pytest --nbval`, one test per cell, as a reader checks them
# make bench        reference vs fast decoding, side by side
# make data         fetch the stand-in photos and the sample images into data/ (the training and
#                   benchmark chapters need them; book and test fetch them first)
# make constraints  rewrite constraints.txt from the packages installed in .venv
# make gpu-check    on a GPU machine: measure it for the book (book/results/gpu/<device>.json)
#                   with the python already there (a CUDA torch); no venv, no network; without
#                   make: python3 scripts/gpu_check.py --out DIR
#
# Each target creates .venv and installs what it needs when missing. Set-up needs make and the
# Debian packages python3-venv (Python >= 3.11), npm (the book's JavaScript) and, for make test,
# chromium (the browser test). Run as root, make installs the missing ones with apt-get; otherwise
# it stops at once and prints the apt-get line to run.
#
# make test runs each chapter once, in the book build: a cell that raises fails the build (the
# chapters state their claims in assert cells), and so does any warning. `make notebooks` would
# run every chapter a second time for the same checks, so it is not part of make test; a unit
# test runs one chapter under nbval so that `pytest --nbval book/` keeps working. Executed
# chapters are cached in _build/.jupyter_cache (jupyter-cache), so make test after make book
# executes only the chapters whose code changed. That cache is keyed on a chapter's code alone,
# so it is dropped whenever anything else the chapters read changes (the library, the cached
# results, the reference checkpoint, the pinned packages).

PYTHON ?= python3
PYTHON_FLOOR := 3.11
# For $(subst) in the Python version check.
comma := ,
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PIP_INSTALL := $(BIN)/pip install --quiet -c constraints.txt
# The torch version comes from constraints.txt, its build from TORCH_INDEX: the CPU wheels by
# default, e.g. https://download.pytorch.org/whl/cu126 for CUDA 12.6 (see pytorch.org). Where
# that index cannot be reached within seconds, the configured pip index provides torch.
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
TORCH := $(shell grep '^torch==' constraints.txt)
CACHE := _build/.jupyter_cache
# Touched whenever the cache is dropped.
CACHE_INPUTS := $(CACHE).inputs
CHAPTER_INPUTS := $(shell find liif_core book/results tests/reference $(wildcard data/weights) \
                    -type f -not -path '*__pycache__*') constraints.txt
export PATH := $(abspath $(BIN)):$(PATH)
# Idle OpenMP threads sleep instead of spinning: on a busy 2-core machine, spinning threads
# steal each other's time and the chapters that train run ten times slower. Read by the OpenMP
# runtime when torch loads, so it is set here, for every kernel the targets start.
export OMP_WAIT_POLICY ?= PASSIVE

VIEWER_MODELS := book/_static/liif/models

.PHONY: book serve test unit notebooks browser bench data prereqs constraints clean gpu-check

# Debian packages each target needs, and how to tell that each is there.
NEEDS := python3-venv
book: NEEDS := python3-venv npm
browser: NEEDS := python3-venv chromium
test: NEEDS := python3-venv npm chromium
have.python3-venv := test -x $(BIN)/python || $(PYTHON) -c 'import ensurepip, venv'
have.npm := command -v npm
have.chromium := test -x /usr/bin/chromium

prereqs:
	@missing="$(strip $(foreach p,$(NEEDS),$$($(have.$(p)) >/dev/null 2>&1 || echo $(p))))"; \
	missing=$$(echo $$missing); \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ]; then \
	  echo "apt-get install $$missing"; \
	  apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	elif [ -n "$$missing" ]; then \
	  echo "missing Debian packages; run: sudo apt-get install $$missing" >&2; exit 1; \
	fi
	@test -x $(BIN)/python || \
	  $(PYTHON) -c 'import sys; sys.exit(sys.version_info < ($(subst .,$(comma),$(PYTHON_FLOOR))))' || \
	  { echo "Python >= $(PYTHON_FLOOR) needed, $(PYTHON) is $$($(PYTHON) -V 2>&1):" \
	    "run make PYTHON=python$(PYTHON_FLOOR)" >&2; exit 1; }

# torch first, alone and without its dependencies, from TORCH_INDEX; everything else, torch's
# dependencies included, from the configured index, all at the versions of constraints.txt.
$(STAMP): pyproject.toml constraints.txt | prereqs
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(PIP_INSTALL) --no-deps --timeout 10 --retries 0 --index-url $(TORCH_INDEX) '$(TORCH)' \
	  2>/dev/null || echo "$(TORCH_INDEX) has no $(TORCH) or cannot be reached:" \
	  "torch comes from the configured pip index"
	$(PIP_INSTALL) -e '.[book,test]'
	@$(BIN)/python -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda)'
	touch $@

$(CACHE_INPUTS): $(CHAPTER_INPUTS)
	rm -rf $(CACHE)
	mkdir -p _build
	touch $@

# The live viewer's ONNX files, exported from the shipped weights (never stored in git).
$(VIEWER_MODELS)/model.json: $(STAMP) $(wildcard liif_core/*.py liif_core/weights/*)
	$(BIN)/liif export $(VIEWER_MODELS) --no-progress

book: prereqs $(STAMP) data $(CACHE_INPUTS) $(VIEWER_MODELS)/model.json
	scripts/book_assets.sh
	$(BIN)/jupyter-book build -W --keep-going --all .
	@echo "The book is in _build/html: make serve, then open http://127.0.0.1:8000/"

serve: $(STAMP)
	$(BIN)/python scripts/serve_book.py

# The checks of the book's cached results recompute entries from the stand-in photos.
unit: $(STAMP) data
	$(BIN)/python -m pytest -q --durations=15 tests --ignore=tests/test_browser.py --ignore=tests/test_viewer.py

notebooks: $(STAMP) data
	$(BIN)/python -m pytest -q --nbval book/

browser: prereqs $(STAMP)
	$(BIN)/python -m pytest -q tests/test_browser.py tests/test_viewer.py

test: prereqs unit book browser

bench: $(STAMP)
	$(BIN)/liif bench

gpu-check:
	$(PYTHON) scripts/gpu_check.py --out book/results/gpu

data: $(STAMP)
	$(BIN)/liif data fetch standin samples

# torch is pinned without its build tag (+cpu, +cu126), which TORCH_INDEX chooses.
constraints:
	test -x $(BIN)/pip
	{ echo '# Every package the book and the tests use, as installed in a .venv where make test'; \
	  echo '# passed, made with the oldest Python that make accepts (Debian 12: 3.11.2), since'; \
	  echo '# some newer releases need a newer one. The Makefile installs with -c constraints.txt;'; \
	  echo '# pyproject.toml keeps ranges for library users. Regenerate: make constraints'; \
	  $(BIN)/pip freeze --all --exclude-editable | grep -v -E '^(pip|nvidia-[a-z0-9-]+|triton)==' | \
	    sed -E 's/^(torch==[^+]+)\+.*/\1/'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

clean:
	rm -rf _build .pytest_cache
