# make book   build the book into _build/html (executing every chapter)
# make test   the whole test suite: unit tests, every chapter under nbval, the built book in a browser
# make bench  reference vs fast decoding, side by side
# make data   fetch the stand-in photos and the sample images into data/ (the training and
#             benchmark chapters need them; book and test fetch them first)
# Each target creates .venv and installs what it needs when missing.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# A CPU build of torch; pyproject.toml keeps a range, so pick your own build elsewhere.
TORCH ?= torch==2.13.0
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: book test unit notebooks browser bench data chromium clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet '$(TORCH)'
	$(BIN)/pip install --quiet -e '.[book,test]'
	touch $@

book: $(STAMP) data
	scripts/book_assets.sh
	$(BIN)/jupyter-book build --all .
	@echo "The book is in _build/html: open $(CURDIR)/_build/html/index.html"

# The checks of the book's cached results recompute entries from the stand-in photos.
unit: $(STAMP) data
	$(BIN)/python -m pytest -q tests --ignore=tests/test_browser.py

notebooks: $(STAMP) data
	$(BIN)/python -m pytest -q --nbval book/

# Debian's chromium drives the browser test (never a downloaded browser build).
chromium:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "chromium is not installed: the browser test will be skipped"

browser: $(STAMP) chromium
	$(BIN)/python -m pytest -q tests/test_browser.py

test: unit notebooks book browser

bench: $(STAMP)
	$(BIN)/liif bench

data: $(STAMP)
	$(BIN)/liif data fetch standin samples

clean:
	rm -rf _build .pytest_cache
