#!/usr/bin/env bash
# Regenerate the benchmark chapter's cached sweeps (book/results/*.json) with the shipped
# weights. About 15 minutes on a quiet 2-core CPU. Run from anywhere; needs the data:
#   liif data fetch standin samples
# tests/test_book_results.py and the chapter recompute one entry of each file to check it.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=PASSIVE
SCALES=1.5,2,2.5,3,3.7,4,6,12,18,24,30
liif test --hr data/standin/valid --crop 480 --scales "$SCALES" --protocol div2k \
  --threads 2 --label ours --json book/results/benchmark-standin.json
liif test --hr data/samples/HR --scales "$SCALES" --protocol benchmark \
  --threads 2 --label ours --json book/results/benchmark-samples.json
