#!/bin/bash
# Variants interleaved on one broker. Each variant is a tree in /tmp/ab-NAME (made by the caller: a
# `git archive` of a commit, possibly patched) with the repository's .venv linked in.
# Usage: [OUT=bench/results/sN] run.sh N VARIANTS WORKLOAD ARGS...  (VARIANTS comma-separated names)
set -e
out=${OUT:-bench/results/s8}
n=$1; shift; variants=$1; shift; wl=$1; shift
export BANK_HOME=$PWD/.bank KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9900
for i in $(seq 1 $n); do
  for name in ${variants//,/ }; do
    dir=/tmp/ab-$name
    (cd $dir && .venv/bin/python -m streams.cli bench $wl "$@" --web-port 9970 --force --json \
      > "$OLDPWD/$out/$wl-$name-$i.json")
  done
done
