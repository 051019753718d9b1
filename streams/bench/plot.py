"""bench/results.png from the JSON results: throughput per workload and system, and p99 latency.

`python -m streams.bench.plot [RESULTS_DIR] [PNG]` (defaults bench/results, bench/results.png);
needs matplotlib (the `bench` extra).
"""
from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path


def _median(values):
    values = [v for v in values if v]
    return statistics.median(values) if values else None


def collect(results_dir: Path) -> tuple[dict, dict]:
    throughput: dict[str, dict[str, float]] = {}
    p99: dict[str, float] = {}
    for path in sorted(results_dir.glob("*.json")):
        if "profiled" in path.name:
            continue
        report = json.loads(path.read_text())
        runs = report["runs"]
        workers = runs[0]["options"]["workers"]
        label = f"{report['workload']} ({workers}w)"
        if report["workload"] == "latency":
            for phase in runs[0]["streambank"]:
                p99[f"streambank @{phase['rate_target_per_s'] or 'max'}/s"] = phase["latency"]["p99_ms"]
            for name, phases in runs[0]["baselines"].items():
                for phase in phases:
                    p99[f"{name} @{phase['rate_target_per_s'] or 'max'}/s"] = phase["latency"]["p99_ms"]
            continue
        systems = throughput.setdefault(label, {})
        systems["streambank"] = _median(r["streambank"]["throughput_per_s"] for r in runs)
        for name in runs[0].get("baselines", {}):
            systems[name] = _median(r["baselines"][name].get("throughput_per_s") for r in runs)
    return throughput, p99


def plot(results_dir: Path, out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    throughput, p99 = collect(results_dir)
    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 5.5), gridspec_kw={"width_ratios": [2.2, 1]})
    systems = sorted({s for per in throughput.values() for s in per}, key=lambda s: (s != "streambank", s))
    width = 0.8 / max(len(systems), 1)
    for index, system in enumerate(systems):
        xs, ys = [], []
        for position, (workload, per) in enumerate(throughput.items()):
            if per.get(system):
                xs.append(position + index * width)
                ys.append(per[system])
        bars = left.bar(xs, ys, width, label=system)
        left.bar_label(bars, labels=[f"{y:,.0f}" for y in ys], fontsize=7, rotation=90, padding=2)
    left.set_xticks([p + width * (len(systems) - 1) / 2 for p in range(len(throughput))], list(throughput))
    left.set_yscale("log")
    left.set_ylabel("records or commands per second, end to end (log)")
    left.set_title("Throughput per workload and system (medians)")
    left.legend(fontsize=8)
    names = list(p99)
    right.barh(names, [p99[n] for n in names], color=["tab:blue" if n.startswith("streambank") else "tab:orange"
                                                       for n in names])
    right.set_xscale("log")
    right.set_xlabel("p99 command-to-view latency, ms (log)")
    right.set_title("Latency at fixed rates")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    args = sys.argv[1:]
    plot(Path(args[0] if args else "bench/results"), Path(args[1] if len(args) > 1 else "bench/results.png"))
