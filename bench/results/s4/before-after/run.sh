#!/usr/bin/env bash
# Before (89a384d: Faust's take_events and fetch loop, 500 records / 10 ms batches) against after (this
# tree), interleaved on one broker, three rounds of the deposits burst
# (the before tree has no `bank bench http`).
set -euo pipefail
OUT=$(cd "$(dirname "$0")" && pwd)
BEFORE=${BEFORE:-/work/before}
AFTER=${AFTER:-/work/main}
for round in 1 2 3; do
  for side in before after; do
    tree=$BEFORE; [[ $side == after ]] && tree=$AFTER
    (cd "$tree" && .venv/bin/bank bench deposits --count 10000 --accounts 500 --no-baselines --no-kstreams --no-quix \
       --keep-broker --force --json > "$OUT/deposits-$side-$round.json")
  done
done
