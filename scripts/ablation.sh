#!/usr/bin/env bash
# Train and evaluate the ablation chapter's runs: LIIF, LIIF(-c), LIIF(-u), LIIF(-e), LIIF(-d)
# and MetaSR (configs cpu/ablation/ablation_*), seeds 0 and 1, two runs at a time on one thread
# each (about 2.5 hours on a 2-core CPU). Each run keeps its checkpoints in save/ablation/ and
# leaves in book/results/ablation/ its training log (<run>.log.jsonl) and its sweep on the
# stand-in validation photos (<run>.json, DIV2K protocol, 240x240 centre crops). A seed-0 run
# also leaves its weights, rounded to float16 (weights/<run>.pth, about 3 MB, which load_model
# reads back into float32), and its sweep is scored from those, so that the tests can recompute
# its entries from the repository alone. A stopped run resumes where it stopped when the script
# is started again; finished runs are skipped.
#   scripts/ablation.sh                 all twelve runs
#   scripts/ablation.sh liif-c:0 ...    only these (variant:seed)
#   ABLATION_OUT=DIR ABLATION_JOBS=1 scripts/ablation.sh   results into DIR, one run at a time
# Needs the data: liif data fetch standin
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=PASSIVE
command -v liif >/dev/null || export PATH="$PWD/.venv/bin:$PATH"
SCALES=2,3,4,6,12,18,24,30
OUT=${ABLATION_OUT:-book/results/ablation}
JOBS=${ABLATION_JOBS:-2}
mkdir -p "$OUT"

run_one() {
  # xargs runs this in a fresh bash: without these, a stopped training would still be scored
  set -euo pipefail
  local variant=${1%:*} seed=${1#*:}
  local run=$variant-seed$seed save=save/ablation/$variant-seed$seed
  [[ -f $OUT/$run.json ]] && { echo "$run: done ($OUT/$run.json)"; return; }
  local resume=()
  [[ -f $save/epoch-last.pth ]] && resume=(--resume)
  liif train "cpu/ablation/ablation_$variant" --seed "$seed" --save-dir "$save" --threads 1 \
    "${resume[@]}" > "$save.train.txt" 2>&1
  cp "$save/log.jsonl" "$OUT/$run.log.jsonl"
  local weights=$save/epoch-last.pth
  if [[ $seed == 0 ]]; then
    weights=$OUT/weights/$run.pth
    mkdir -p "$OUT/weights"
    python -c 'import sys; from liif_core import load_model, save_model
save_model(load_model(sys.argv[1]).half(), sys.argv[2])' "$save/epoch-last.pth" "$weights"
  fi
  liif test --weights "$weights" --hr data/standin/valid --crop 240 \
    --scales "$SCALES" --protocol div2k --threads 1 --label "$run" --json "$OUT/$run.json" \
    > "$save.test.txt" 2>&1
  echo "$run: $(tail -1 "$OUT/$run.log.jsonl")"
}
export -f run_one
export OUT SCALES

# The longest runs first, so that the two lanes finish together.
RUNS=("$@")
[[ ${#RUNS[@]} -gt 0 ]] || for seed in 0 1; do
  for variant in liif liif-c liif-d liif-u metasr liif-e; do RUNS+=("$variant:$seed"); done
done
mkdir -p save/ablation
printf '%s\n' "${RUNS[@]}" | xargs -P "$JOBS" -I{} bash -c 'run_one "$@"' _ {}
# The chapter's side-by-side crops, once every seed-0 run is scored (delete them to redo).
# (Only for the chapter's own folder: the crops script writes there.)
if [[ $OUT == book/results/ablation ]] &&
   ls "$OUT"/{liif,liif-c,liif-u,liif-e,liif-d,metasr}-seed0.json >/dev/null 2>&1 &&
   [[ ! -d $OUT/crops ]]; then
  python scripts/ablation_crops.py
fi
