#!/usr/bin/env bash
# `bank replay views` end to end on its own broker: 120,000 account events produced straight to
# bank.accounts.events, one worker caught up on them, then the accounts view rebuilt into a new
# generation by the command. Writes replay-views.json (the command's report) and fold.json beside it.
set -euo pipefail
OUT=$(cd "$(dirname "$0")" && pwd)
export BANK_HOME=${RV_HOME:-/tmp/rv-home} KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:${RV_PORT:-19492} BANK_WEB_PORT=${RV_WEB:-16200}
rm -rf "$BANK_HOME"
bank kafka start --base-port "${RV_PORT:-19492}"
bank topics create
python bench/replay_views.py --events 120000 --accounts 1000 > "$OUT/fold.json"
bank worker --web-port "$BANK_WEB_PORT" --loglevel warning > "$OUT/worker.log" 2>&1 &
worker=$!
trap 'kill $worker 2>/dev/null; wait $worker 2>/dev/null; bank kafka stop' EXIT
# serving, then caught up (below) before the view is rebuilt
for _ in $(seq 600); do
  curl -sf "http://127.0.0.1:$BANK_WEB_PORT/health" > /dev/null && break; sleep 1
done
sleep 5
python - <<'PY'
# caught up: the streambank group's committed offsets on the account events at their ends
import time
from confluent_kafka import Consumer, TopicPartition
from streams.config import Settings
settings = Settings.from_env()
consumer = Consumer(settings.consumer_config(**{"group.id": "streambank", "enable.auto.commit": False}))
parts = [TopicPartition("bank.accounts.events", p) for p in range(settings.partitions)]
deadline = time.monotonic() + 900
while time.monotonic() < deadline:
    committed = consumer.committed(parts, timeout=10)
    lag = sum(consumer.get_watermark_offsets(tp, timeout=10)[1] - max(c.offset, 0) for tp, c in zip(parts, committed))
    if lag == 0:
        break
    time.sleep(2)
else:
    raise SystemExit("the worker did not catch up within 900 s")
consumer.close()
PY
/usr/bin/time -f "%e s wall" bank replay views --view accounts --json --no-progress > "$OUT/replay-views.json"
