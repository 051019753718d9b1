"""The machine, medians over runs, and a plain-text report."""
from __future__ import annotations

import os
import platform
import statistics
import subprocess


def machine() -> dict:
    model = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        free = subprocess.run(["free", "-h"], capture_output=True, text=True, timeout=5).stdout.strip()
    except Exception:
        free = ""
    try:
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        head = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "-C", root, "status", "--short", "--untracked-files=no"], capture_output=True,
                               text=True, timeout=5).stdout.strip()
        tree = f"{head}{' + uncommitted changes' if dirty else ''}"
    except Exception:
        tree = ""
    return {"tree": tree, "nproc": os.cpu_count(), "cpu_model": model, "free_h": free, "python": platform.python_version(),
            "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
            "kernel": platform.release()}


def flatten(data, prefix: str = "") -> dict[str, float]:
    """Numeric leaves as dotted paths (lists by index): the figures a median is taken of."""
    out = {}
    if isinstance(data, dict):
        items = data.items()
    elif isinstance(data, list):
        items = enumerate(data)
    else:
        return out
    for key, value in items:
        path = f"{prefix}{key}"
        if isinstance(value, bool):
            continue
        if isinstance(value, (int, float)):
            out[path] = value
        elif isinstance(value, (dict, list)):
            out.update(flatten(value, path + "."))
    return out


def summarize(runs: list[dict]) -> dict[str, float]:
    flat = [flatten({k: v for k, v in run.items() if k != "options"}) for run in runs]
    keys = set.intersection(*(set(f) for f in flat)) if flat else set()
    return {key: round(statistics.median(f[key] for f in flat), 4) for key in sorted(keys) if key != "run"}


def _phase_line(name: str, phase: dict) -> str:
    lat = phase.get("latency") or {}
    rate = phase.get("rate_target_per_s")
    parts = [f"{name:<34}", f"{phase.get('throughput_per_s', 0):>10,.0f}/s"]
    if phase.get("measured_to"):
        parts.append(f"to the {phase['measured_to']}")
        if phase.get("account_view"):
            parts.append(f"(account view {phase['account_view']['throughput_per_s'] or 0:,.0f}/s)")
    if rate:
        parts.append(f"(target {rate:,.0f}/s)")
    if lat:
        parts.append(f"p50 {lat.get('p50_ms')} ms  p95 {lat.get('p95_ms')} ms  p99 {lat.get('p99_ms')} ms")
    if phase.get("cpu_ms_per_command"):
        cpu = ", ".join(f"{k} {v:.3f}" for k, v in phase["cpu_ms_per_command"].items())
        parts.append(f"CPU ms/command: {cpu}")
    return "  ".join(parts)


def _http_lines(phase: dict) -> list[str]:
    """The http workload's phase: both summaries against their targets, the counts, the failures."""
    lines = [f"  streambank over HTTP, {phase['users']} users: {phase['throughput_per_s']:,.1f} deposits/s"
             + ("" if phase["valid"] else f"  INVALID: {phase['failures_total']} failures {phase['failures']}")]
    for name in ("post_wait_ms", "post_then_get_ms"):
        lat, target = phase[name], phase["targets"][name.replace("_ms", "_p99_ms")]
        lines.append(f"    {name:<17} p50 {lat['p50_ms']} ms  p95 {lat['p95_ms']} ms  p99 {lat['p99_ms']} ms  "
                     f"max {lat['max_ms']} ms  (target p99 <= {target} ms)")
    counts = {k: phase[k] for k in ("deposits", "accepted", "read_back", "warmup_deposits", "failures_total",
                                    "balance_total", "expected_balance_total", "accounts_with_wrong_balance")}
    lines.append(f"    counts: {counts}")
    cpu = ", ".join(f"{k} {v:.3f}" for k, v in phase["cpu_ms_per_command"].items())
    lines.append(f"    CPU ms/deposit (POST + GET): {cpu}; total per HTTP request "
                 f"{phase['cpu_ms_per_http_request_total']}")
    return lines


def text_report(report: dict) -> str:
    lines = [f"{report['workload']} on {report['bootstrap_servers']} ({report['partitions']} partitions), "
             f"{report['machine']['nproc']} cores, {report['machine']['cpu_model']}"]
    for run in report["runs"]:
        lines.append(f"run {run['run']}:")
        if "streambank" not in run:  # a workload with its own figures (memory): print them as they are
            lines.extend(f"  {key}: {value}" for key, value in run.items() if key != "run")
            continue
        if report["workload"] == "http":
            lines.extend(_http_lines(run["streambank"]))
            continue
        phases = run["streambank"] if isinstance(run["streambank"], list) else [run["streambank"]]
        for phase in phases:
            lines.append("  " + _phase_line(f"streambank ({run['options']['workers']} worker)", phase))
            counts = {k: phase[k] for k in ("commands", "accepted", "events", "terminal", "states", "view_records",
                                            "views_match_fold", "balance_total", "expected_balance_total")
                      if k in phase}
            lines.append(f"    counts: {counts}")
        for name, base in run.get("baselines", {}).items():
            for phase in base if isinstance(base, list) else [base]:
                lines.append("  " + _phase_line(name, phase))
        for name, ratio in (run.get("ratios") or {}).items():
            lines.append(f"  ratio {name}: {ratio}")
    if len(report["runs"]) > 1:
        median = report["median"]
        lines.append("median over runs: " + ", ".join(
            f"{k} {v}" for k, v in median.items() if k.endswith("throughput_per_s") or k.startswith("ratios")
            or (report["workload"] == "http" and k.endswith(("p99_ms", "failures_total")))))
    return "\n".join(lines)
