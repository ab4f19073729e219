#!/usr/bin/env bash
# Regenerate the benchmark chapter's cached sweeps (book/results/*.json) with the shipped
# weights, both sweeps at once on one thread each (each file records its wall time). Run from
# anywhere; needs the data:
#   liif data fetch standin samples
# tests/test_book_results.py and the chapter recompute one entry of each file to check it.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=PASSIVE
# the project's venv when `liif` is not on PATH
command -v liif >/dev/null || export PATH="$PWD/.venv/bin:$PATH"
SCALES=1.5,2,2.5,3,3.7,4,6,12,18,24,30
liif test --hr data/standin/valid --crop 240 --scales "$SCALES" --protocol div2k \
  --threads 1 --label ours --json book/results/benchmark-standin.json &
standin=$!
liif test --hr data/samples/HR --scales "$SCALES" --protocol benchmark \
  --threads 1 --label ours --json book/results/benchmark-samples.json &
samples=$!
wait $standin && wait $samples
