#!/bin/bash
# Variants interleaved on one broker, each tree from its own `git archive` with the repository's .venv
# linked in: before (848836a), avro (31d77a5: money as plain bytes to fastavro), and avro with
# BANK_BATCH_MAX=4096 (Faust's stream buffer: a batch takes what is queued); main (ba60418, deposits timed to
# the customer view) and pipelined (0da7363, branch pipeline-commits: the next batch processed while the last commits). Usage: run.sh N VARIANTS WORKLOAD ARGS...
set -e
n=$1; shift; variants=$1; shift; wl=$1; shift
declare -A REV=([before]=848836a [avro]=31d77a5 [max4096]=31d77a5 [main]=ba60418 [pipelined]=0da7363)
declare -A ENVS=([before]= [avro]= [max4096]=BANK_BATCH_MAX=4096 [main]= [pipelined]=)
export BANK_HOME=$PWD/.bank KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9900
for i in $(seq 1 $n); do
  for name in ${variants//,/ }; do
    dir=/tmp/ab-${REV[$name]}
    [ -d $dir ] || { mkdir -p $dir; git archive ${REV[$name]} | tar -x -C $dir; ln -s "$PWD/.venv" $dir/.venv; }
    (cd $dir && env ${ENVS[$name]} .venv/bin/python -m streams.cli bench $wl "$@" --web-port 9970 --force --json \
      > "$OLDPWD/bench/results/s7/$wl-$name-$i.json")
  done
done
