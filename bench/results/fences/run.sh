#!/usr/bin/env bash
# The fences of this session (final tree) against the tree before them (a5d82de), same broker, interleaved.
set -u
export BANK_HOME=/tmp/ab2/home KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9900 BANK_WEB_PORT=7300 BANK_KAFKA_LIBS=/work/main/.bank/kafka/libs
PY=/work/main/.venv/bin/python
cd /tmp/ab2
$PY -m streams.cli kafka start --base-port 9900
for round in 1 2 3; do
  for side in old main; do
    tree=/work/wt-$side; [ $side = main ] && tree=/work/main
    (cd $tree && timeout 400 $PY -m streams.cli bench deposits --count 5000 --accounts 500 --no-baselines --no-kstreams --no-quix --keep-broker --force --json > /tmp/ab2/deposits-$side-$round.json 2>/tmp/ab2/deposits-$side-$round.err)
    echo "$(date +%T) deposits $side $round rc=$?"
  done
done
$PY -m streams.cli kafka stop
