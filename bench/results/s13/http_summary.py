"""Prints the HTTP figures of each `bank bench http --json` file given, and medians per variant."""
import json
import statistics
import sys
from collections import defaultdict

KEYS = ("post_wait_ms.p50_ms", "post_wait_ms.p99_ms", "post_then_get_ms.p99_ms", "throughput_per_s",
        "cpu_ms_per_command.broker", "cpu_ms_per_command.worker-1")


def flat(data, prefix=""):
    if isinstance(data, dict):
        for key, value in data.items():
            yield from flat(value, f"{prefix}.{key}" if prefix else key)
    else:
        yield prefix, data


by_variant = defaultdict(list)
for path in sys.argv[1:]:
    figures = dict(flat(json.load(open(path))))
    row = [next((v for k, v in figures.items() if k.endswith("streambank." + key)), None) for key in KEYS]
    print(path, row)
    by_variant[path.rsplit("-", 1)[0]].append(row)
print("columns:", KEYS)
for variant, rows in by_variant.items():
    print(variant, "median", [statistics.median(r[i] for r in rows) for i in range(len(KEYS))])
