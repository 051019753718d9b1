#!/usr/bin/env bash
# Before/after transactions, same broker, interleaved, 3 rounds.
set -u
export BANK_HOME=/tmp/ab/home KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9900 BANK_WEB_PORT=7300
cd /tmp/ab
/work/main/.venv/bin/bank kafka start --base-port 9900
for round in 1 2 3; do
  for side in before main; do
    tree=/work/wt-$side; [ $side = main ] && tree=/work/main
    (cd $tree && .venv/bin/bank bench deposits --count 5000 --accounts 500 --no-baselines --no-kstreams --keep-broker --force --json > /tmp/ab/deposits-$side-$round.json 2>/tmp/ab/deposits-$side-$round.err)
    echo "$(date +%T) deposits $side $round rc=$?"
  done
  for side in before main; do
    tree=/work/wt-$side; [ $side = main ] && tree=/work/main
    (cd $tree && .venv/bin/bank bench latency --count 2000 --accounts 500 --rates 150 --no-baselines --no-kstreams --keep-broker --force --json > /tmp/ab/latency-$side-$round.json 2>/tmp/ab/latency-$side-$round.err)
    echo "$(date +%T) latency $side $round rc=$?"
  done
done
/work/main/.venv/bin/bank kafka stop
