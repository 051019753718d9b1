#!/bin/bash
# Before (7749533) and after (ed81b1c: the view agents on FoldCodec) interleaved on one broker, each tree
# from its own `git archive` with the repository's .venv linked in. Usage: run.sh N WORKLOAD ARGS...
# (ran: 3 replay --count 50000 --accounts 1000 --no-baselines; 3 deposits --count 20000 --accounts 1000
#  --no-baselines --no-kstreams --no-quix, then the same with the order reversed (r1-r3);
#  3 transfers --count 3000 --accounts 500 --no-baselines)
set -e
n=$1; shift; wl=$1; shift
for t in before:7749533 after:ed81b1c; do
  name=${t%%:*}; rev=${t##*:}
  [ -d /tmp/ab-$name ] || { mkdir -p /tmp/ab-$name; git archive $rev | tar -x -C /tmp/ab-$name; ln -s "$PWD/.venv" /tmp/ab-$name/.venv; }
done
export BANK_HOME=$PWD/.bank KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9900
for i in $(seq 1 $n); do
  for name in before after; do
    (cd /tmp/ab-$name && .venv/bin/python -m streams.cli bench $wl "$@" --web-port 9970 --force --json \
      > "$OLDPWD/bench/results/s6/fold-codec/ab-$wl-$name-$i.json")
  done
done
