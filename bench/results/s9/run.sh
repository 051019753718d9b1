#!/usr/bin/env bash
# The full issue-14 run of 2026-12-04 (tree 9c8619d), from the repository root: the speed figures
# (bench/run_all.sh PART=b), `bank replay views` on its own broker, idle, 1M-account memory, then the
# 60-minute soak. Each step's stderr goes to its own log beside the JSON.
set -euo pipefail
export BANK_HOME=$PWD/.bank KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9900 BANK_WEB_PORT=9970
export PATH=$PWD/.venv/bin:$PATH OUT=bench/results/s9
step() { echo "$(date -u +%H:%M:%S) $*" >> $OUT/steps.log; }
step start; PART=b bench/run_all.sh 2> $OUT/part-b.log; step part-b done
RV_PORT=19492 bench/results/s4/replay-views/run.sh > $OUT/replay-views.log 2>&1 || step replay-views FAILED
cp bench/results/s4/replay-views/replay-views.json bench/results/s4/replay-views/fold.json $OUT/ 2>/dev/null || true
step replay-views done
bank bench idle --seconds 60 --settle 30 --keep-broker --force --save $OUT/idle.json 2> $OUT/idle.log; step idle done
bank bench memory --accounts 1000000 --timeout 1500 --keep-broker --force --save $OUT/memory-1m.json 2> $OUT/memory.log; step memory done
bank bench soak --minutes 60 --timeout 600 --keep-broker --force --save $OUT/soak-60min.json 2> $OUT/soak.log; step soak done
