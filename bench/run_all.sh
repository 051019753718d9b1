#!/usr/bin/env bash
# Every figure of bench/RESULTS.md: run from the repository root with the venv's `bank` on PATH.
# Uses KAFKA_BOOTSTRAP_SERVERS / BANK_HOME / BANK_WEB_PORT from the environment (defaults: 9092, ./.bank, 6066).
set -euo pipefail
OUT=${OUT:-bench/results}
BANK=${BANK:-bank}
mkdir -p "$OUT"
$BANK bench deposits  --count 20000 --accounts 1000 --repeat 2 --keep-broker --save "$OUT/deposits-s3.json"
$BANK bench deposits  --count 20000 --accounts 1000 --workers 2 --repeat 2 --no-baselines --keep-broker --save "$OUT/deposits-2w-s3.json"
$BANK bench transfers --count 3000  --accounts 500 --repeat 2 --keep-broker --save "$OUT/transfers-s3.json"
$BANK bench replay    --count 50000 --accounts 500 --repeat 2 --keep-broker --save "$OUT/replay-s3.json"
$BANK bench latency   --count 5000  --accounts 500 --fractions 0.25,0.5 --keep-broker --save "$OUT/latency-s3.json"
# The profile: py-spy follows the worker processes the benchmark starts.
py-spy record --subprocesses --format raw --rate 100 -o "$OUT/deposits-profile.txt" -- \
  $BANK bench deposits --count 3000 --accounts 300 --no-baselines --keep-broker --save "$OUT/deposits-profiled.json"
