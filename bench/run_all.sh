#!/usr/bin/env bash
# Every figure of bench/RESULTS.md (issue 14, "The full run"): run from the repository root with the
# venv's `bank` on PATH. Uses KAFKA_BOOTSTRAP_SERVERS / BANK_HOME / BANK_WEB_PORT from the environment
# (defaults: 9092, ./.bank, 6066). PART=a runs the memory, soak and idle figures (RSS and lag, little
# hurt by a busy machine); PART=b the speed figures (quote them only from a quiet machine); default both.
set -euo pipefail
OUT=${OUT:-bench/results/s4}
BANK=${BANK:-bank}
PART=${PART:-ab}
mkdir -p "$OUT"
if [[ $PART == *a* ]]; then
  $BANK bench memory   --accounts 1000000 --timeout 1500 --keep-broker --force --save "$OUT/memory-1m.json"
  $BANK bench soak     --minutes 10 --keep-broker --force --save "$OUT/soak-10min.json"
  $BANK bench idle     --seconds 60 --settle 30 --keep-broker --force --save "$OUT/idle.json"
fi
if [[ $PART == *b* ]]; then
  $BANK bench deposits  --count 20000 --accounts 1000 --repeat 3 --keep-broker --force --save "$OUT/deposits.json"
  $BANK bench deposits  --count 20000 --accounts 1000 --workers 2 --repeat 3 --no-baselines --keep-broker --force \
    --save "$OUT/deposits-2w.json"
  $BANK bench transfers --count 3000  --accounts 500 --repeat 3 --keep-broker --force --save "$OUT/transfers.json"
  $BANK bench replay    --count 50000 --accounts 500 --repeat 3 --keep-broker --force --save "$OUT/replay.json"
  $BANK bench latency   --count 5000  --accounts 500 --fractions 0.25,0.5 --keep-broker --force --save "$OUT/latency.json"
  $BANK bench http      --users 16 --count 2000 --repeat 3 --keep-broker --force --save "$OUT/http.json"
fi
