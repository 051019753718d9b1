"""Prints throughput and CPU per command of each bench JSON given, and the medians per variant."""
import json
import statistics
import sys
from collections import defaultdict


def find(data, key):
    if isinstance(data, dict):
        if key in data:
            return data[key]
        for value in data.values():
            found = find(value, key)
            if found is not None:
                return found
    return None


by_variant = defaultdict(list)
for path in sys.argv[1:]:
    data = json.load(open(path))
    figures = [find(data, k) for k in ("streambank.throughput_per_s", "streambank.cpu_ms_per_command.worker-1",
                                       "streambank.cpu_ms_per_command.broker")]
    print(path, *figures)
    by_variant[path.rsplit("-", 1)[0]].append(figures)
for variant, runs in by_variant.items():
    print(variant, "median", *(round(statistics.median(r[i] for r in runs), 4) for i in range(3)))
