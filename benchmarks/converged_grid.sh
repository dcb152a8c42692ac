#!/usr/bin/env bash
# The pre-registered converged N-hot grid (leaderboard/PREREGISTRATION.md) on a CPU, full
# FERPlus, every cell under CPU bf16 autocast (pinned: --fer-precision bf16):
#   P1 fast_resnet (own 9-epoch recipe), ordinary, N = 1, 3, 8, seeds 0-4   (15 cells)
#   P2 the same on the complex split                                        (15 cells)
#   P3 the same with loss=mse, ordinary, N = 1, 8, seeds 0-4                (10 cells)
#   T  the bf16 check's fp32 twins: 8-hot s0, 1-hot s0, 8-hot s1, ordinary   (3 cells)
#   P4 pilots: VGG16, ordinary, 8-hot, seed 0, 7 epochs, augmentation none (A) and
#      rand_flip_shift4 (B), in leaderboard/pilots/: they choose P4's recipe by validation
#   the sanity check: VGG16, RAN, DAN (bf16) and MTEN (fp32), 2 epochs each  (4 cells)
#   P4 VGG16, complex, N = 1, 8, seeds 0-2: added by the plan's amendment    (6 cells)
#
# Resumable: each finished cell is a JSON file in the result store leaderboard/cells/
# (committed with the leaderboard); a run cut off anywhere continues from what is there.
# Blocks run in priority order, the primary contrast's cells (N = 1, 8) first.
#
#   nohup bash benchmarks/converged_grid.sh > leaderboard/converged/grid.log 2>&1 &
#
# GRID_LEADERBOARD (default: this checkout's leaderboard/) is where cells and block JSON
# go: run the script from a frozen worktree of the code (git worktree add --detach DIR) and
# point it at the working checkout's leaderboard, so edits made meanwhile never reach a
# running grid.
set -uo pipefail
cd "$(dirname "$0")/.."
DATA="${FER_BENCH_FERPLUS:-../shared/data/ferplus}"
LEADERBOARD="${GRID_LEADERBOARD:-leaderboard}"
OUT="$LEADERBOARD/converged"
mkdir -p "$OUT"
COMMON=(--fer-data "$DATA" -p no:cacheprovider -q)
run_block() {   # run_block MODULE STORE NAME ARGS...: one pytest session of benchmarks/MODULE,
  local module=$1 store=$2 name=$3; shift 3   # its JSON in $OUT/NAME.json
  echo "=== block $name: $module $* ($(date -u +%FT%TZ))"
  python -m pytest "benchmarks/$module" "${COMMON[@]}" --fer-results "$store" "$@" \
    --benchmark-json "$OUT/$name.json"
}
block() {   # block NAME ARGS...: a fast_resnet block whose cells go to the result store
  local name=$1; shift
  run_block test_nhot.py "$LEADERBOARD/cells" "$name" --fer-models fast_resnet "$@"
}
BF16=(--fer-precision bf16)
block p1_primary "${BF16[@]}" --fer-splits ordinary --fer-nhot 1,8 --fer-seeds 0-4
block p1_n3      "${BF16[@]}" --fer-splits ordinary --fer-nhot 3   --fer-seeds 0-4
block p2_primary "${BF16[@]}" --fer-splits complex  --fer-nhot 1,8 --fer-seeds 0-4
block p2_n3      "${BF16[@]}" --fer-splits complex  --fer-nhot 3   --fer-seeds 0-4
block p3_mse     "${BF16[@]}" --fer-splits ordinary --fer-nhot 1,8 --fer-seeds 0-4 --fer-loss mse
block twins_fp32 --fer-precision fp32 --fer-splits ordinary --fer-nhot 8 --fer-seeds 0,1
block twins_fp32_n1 --fer-precision fp32 --fer-splits ordinary --fer-nhot 1 --fer-seeds 0
# P4's pilots (not grid cells: their own store, never in a contrast). The study's VGG16 recipe
# otherwise (loss mse, Adam lr 1e-4, batch 64), scratch, bf16 as the whole grid.
PILOT=(--fer-models vgg16 --fer-precision bf16 --fer-splits ordinary --fer-nhot 8 --fer-seeds 0
       --fer-epochs 7)
run_block test_nhot.py "$LEADERBOARD/pilots" p4_pilot_a "${PILOT[@]}" --fer-augmentation none
run_block test_nhot.py "$LEADERBOARD/pilots" p4_pilot_b "${PILOT[@]}" --fer-augmentation rand_flip_shift4
# The sanity check of the study's four models (benchmarks/test_sanity.py: 2 epochs, 8-hot,
# ordinary, seed 0), queued here so that one background job runs everything; MTEN in fp32
# (its depthwise convolutions are slower under bf16 on this CPU).
sanity() {   # sanity MODEL PRECISION
  run_block test_sanity.py "$LEADERBOARD/cells" "sanity_$1" --fer-models "$1" --fer-precision "$2"
}
sanity vgg16 bf16
sanity ran bf16
sanity dan bf16
sanity mten fp32
# P4 (amendment 2: pilot A won): VGG16, complex, 1-hot and 8-hot, 7 epochs, no augmentation,
# bf16; seed by seed so that every finished pair counts.
for seed in 0 1 2; do
  run_block test_nhot.py "$LEADERBOARD/cells" "p4_s$seed" --fer-models vgg16 --fer-precision bf16 \
    --fer-splits complex --fer-nhot 1,8 --fer-epochs 7 --fer-augmentation none --fer-seeds "$seed"
done
echo "=== grid done ($(date -u +%FT%TZ))"
