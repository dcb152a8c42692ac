#!/usr/bin/env bash
# The published leaderboard's grid on a CPU: fast_resnet (cpu profile), N-hot 1..8, ordinary
# and complex tests, seeds 0, 1, 2 (48 cells) on the real FERPlus data.
#
# Resumable: every finished cell is a JSON file under leaderboard/cells/ (the result store,
# committed with the leaderboard), so a run cut off at any point continues from what is
# there; finished cells are read back, not retrained. Phase 1 runs the pre-specified 1-hot
# and 8-hot cells first, so a partial run already answers the study's question.
#
#   nohup bash benchmarks/cpu_grid.sh > leaderboard/grid.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${FER_BENCH_FERPLUS:-../shared/data/ferplus}"
COMMON=(benchmarks/test_nhot.py --fer-profile cpu --fer-data "$DATA" --fer-seeds 0,1,2
        --fer-splits ordinary,complex --fer-results leaderboard/cells -p no:cacheprovider -q)
python -m pytest "${COMMON[@]}" --fer-nhot 1,8 --benchmark-disable || true
python -m pytest "${COMMON[@]}" --fer-nhot 1-8 --benchmark-json leaderboard/results.json || true
extra=()
[ -f leaderboard/speedrun.json ] && extra=(leaderboard/speedrun.json)
fer-bench leaderboard leaderboard/results.json "${extra[@]}" --out leaderboard/
