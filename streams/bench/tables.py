"""Markdown tables of bench/results/*.json for bench/RESULTS.md: `python -m streams.bench.tables [DIR]`."""
from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(value, digits=0):
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def phase_row(name, phases, unit_cpu=True):
    lat = lambda k: med(p["latency"].get(k) for p in phases if p.get("latency"))
    cpu = {}
    for p in phases:
        for proc, v in (p.get("cpu_ms_per_command") or {}).items():
            cpu.setdefault(proc, []).append(v)
    cpu_text = ", ".join(f"{k} {statistics.median(v):.3f}" for k, v in cpu.items()) or "-"
    return (f"| {name} | {fmt(med(p['throughput_per_s'] for p in phases))} | {fmt(lat('p50_ms'), 1)} | "
            f"{fmt(lat('p95_ms'), 1)} | {fmt(lat('p99_ms'), 1)} | {cpu_text} | "
            f"{', '.join(fmt(p['throughput_per_s']) for p in phases)} |")


HEADER = ("| system | throughput /s (median) | p50 ms | p95 ms | p99 ms | CPU ms per command | every run /s |\n"
          "|---|---|---|---|---|---|---|")


def render(path: Path) -> str:
    report = json.loads(path.read_text())
    runs = report["runs"]
    out = [f"### {path.name}: `{report['command']}`", "",
           f"{report['date']}, bootstrap {report['bootstrap_servers']}, {report['partitions']} partitions, "
           f"{len(runs)} run(s), load average at the end {report['machine'].get('load_average_1_5_15', '?')}", ""]
    out.append(HEADER)
    if report["workload"] == "latency":
        for index, phase in enumerate(runs[0]["streambank"]):
            out.append(phase_row(f"streambank @ {fmt(phase['rate_target_per_s']) if phase['rate_target_per_s'] else 'max'}/s",
                                 [phase]))
        for name in runs[0]["baselines"]:
            for phase in runs[0]["baselines"][name]:
                out.append(phase_row(f"{name} @ {fmt(phase['rate_target_per_s']) if phase['rate_target_per_s'] else 'max'}/s",
                                     [phase]))
    else:
        out.append(phase_row(f"streambank ({runs[0]['options']['workers']} worker)", [r["streambank"] for r in runs]))
        for name in runs[0].get("baselines", {}):
            out.append(phase_row(name, [r["baselines"][name] for r in runs]))
    ratios = {}
    for r in runs:
        for k, v in (r.get("ratios") or {}).items():
            ratios.setdefault(k, []).append(v)
    if ratios:
        out += ["", "| ratio (same run) | median | every run |", "|---|---|---|"]
        out += [f"| {k} | {fmt(med(v), 4)} | {', '.join(fmt(x, 4) for x in v)} |" for k, v in ratios.items()]
    counts_keys = ("commands", "accepted", "rejected", "events", "event_records", "terminal", "states",
                   "effects_never_visible", "view_records", "views_match_fold", "balance_total",
                   "expected_balance_total")
    for r in runs:
        phases = r["streambank"] if isinstance(r["streambank"], list) else [r["streambank"]]
        for p in phases:
            out.append("")
            out.append(f"counts run {r['run']}: " + ", ".join(f"{k}={p[k]}" for k in counts_keys if k in p))
    return "\n".join(out)


if __name__ == "__main__":
    directory = Path(sys.argv[1] if len(sys.argv) > 1 else "bench/results")
    print("\n\n".join(render(p) for p in sorted(directory.glob("*.json"))))
