#!/bin/bash
# Soak A/B of the worker's native memory: glibc's default malloc arenas; MALLOC_ARENA_MAX=2 (inherited by
# the worker the bench starts); and MALLOC_ARENA_MAX=2 with malloc_trim(0) every 30 s (trim/sitecustomize.py).
# Same fixed rate (250 commands/s, the 60-minute soak's half max), MINUTES each (default 12), one after another.
set -e
cd "$(dirname "$0")/../../.."
export BANK_HOME=$PWD/.bank KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9900
for variant in ${VARIANTS:-default arenas2 arenas2-trim}; do
  unset MALLOC_ARENA_MAX PYTHONPATH
  case $variant in
    arenas2) export MALLOC_ARENA_MAX=2 ;;
    arenas2-trim) export MALLOC_ARENA_MAX=2 PYTHONPATH=$PWD/bench/results/s11/trim ;;
  esac
  dir=.; [ $variant = smallrocks ] && dir=/tmp/ab-smallrocks
  (cd $dir && .venv/bin/python -m streams.cli bench soak --minutes ${MINUTES:-12} --rate 250 --web-port 9970 --force \
    --save $OLDPWD/bench/results/s11/soak-$variant.json) > bench/results/s11/soak-$variant.log 2>&1
done
# Afterwards (VARIANTS=smallrocks): RocksDB's shared block cache and memtable budget cut from 64 to 8 MiB each
# (/tmp/ab-smallrocks: this tree with streams/worker/store.py so patched), to see whether they are the growth.
