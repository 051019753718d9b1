#!/usr/bin/env bash
# BANK_BATCH_MS 5 / 20 / 50, interleaved, two rounds: HTTP closed loop and deposits burst, streambank only.
set -euo pipefail
OUT=$(dirname "$0")
for round in 1 2; do
  for ms in 5 20 50; do
    BANK_BATCH_MS=$ms bank bench http --users 16 --count 1500 --keep-broker --force --json > "$OUT/http-$ms-$round.json"
    BANK_BATCH_MS=$ms bank bench deposits --count 10000 --accounts 500 --no-baselines --no-kstreams --no-quix \
      --keep-broker --force --json > "$OUT/deposits-$ms-$round.json"
  done
done
