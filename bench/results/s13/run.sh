#!/bin/bash
# The figures on tree 9831356 (conductor bypass), one after another on the broker at 127.0.0.1:9900,
# with the same commands as bench/results/s11/run.sh. Nothing else runs meanwhile.
set -e
cd "$(dirname "$0")/../../.."
export BANK_HOME=$PWD/.bank KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9900
OUT=bench/results/s13
BANK=".venv/bin/bank"
common="--web-port 9970 --keep-broker --force"
$BANK bench deposits --count 20000 --accounts 1000 --repeat 3 --no-quix --no-kstreams-simple $common --save $OUT/deposits-peer.json
$BANK bench deposits --count 20000 --accounts 1000 --workers 2 --repeat 3 --no-baselines $common --save $OUT/deposits-2w.json
$BANK bench transfers --count 3000 --accounts 500 --repeat 3 --no-baselines $common --save $OUT/transfers.json
