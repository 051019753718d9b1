#!/bin/bash
# The figures after compiled Avro (tree of this directory's commit; main = compiled, /tmp/ab-base = 3f81e28,
# /tmp/ab-comp = 130757c, each a `git archive` with the repository's .venv linked in), one after another on
# the broker at 127.0.0.1:9900. Nothing else runs meanwhile.
set -e
cd "$(dirname "$0")/../../.."
export BANK_HOME=$PWD/.bank KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9900
OUT=bench/results/s11
BANK=".venv/bin/bank"
common="--web-port 9970 --keep-broker --force"
$BANK bench deposits --count 20000 --accounts 1000 --repeat 3 --no-quix --no-kstreams-simple $common --save $OUT/deposits-peer.json
$BANK bench deposits --count 20000 --accounts 1000 --workers 2 --repeat 3 --no-baselines $common --save $OUT/deposits-2w.json
$BANK bench transfers --count 3000 --accounts 500 --repeat 3 --no-baselines $common --save $OUT/transfers.json
$BANK bench http --users 16 --count 2000 --repeat 3 $common --save $OUT/http.json
for i in 1 2 3; do
  for name in base comp; do
    (cd /tmp/ab-$name && .venv/bin/python -m streams.cli bench replay --count 50000 --accounts 500 --no-baselines \
      $common --json > "$OLDPWD/$OUT/catchup-$name-$i.json")
  done
done
# The fold of `bank replay views` over one log (the last catch-up's 50,000 events plus 120,000 more), both trees
# twice, interleaved; PYTHONPATH so that each tree imports its own streams package.
(cd /tmp/ab-base && PYTHONPATH=. .venv/bin/python bench/replay_views.py --events 120000 --accounts 1000 \
  > "$OLDPWD/$OUT/replay-views-base-1.txt" 2>&1)
(cd /tmp/ab-comp && PYTHONPATH=. .venv/bin/python bench/replay_views.py --no-produce > "$OLDPWD/$OUT/replay-views-comp-1.txt" 2>&1)
(cd /tmp/ab-base && PYTHONPATH=. .venv/bin/python bench/replay_views.py --no-produce > "$OLDPWD/$OUT/replay-views-base-2.txt" 2>&1)
(cd /tmp/ab-comp && PYTHONPATH=. .venv/bin/python bench/replay_views.py --no-produce > "$OLDPWD/$OUT/replay-views-comp-2.txt" 2>&1)
