"""`bank bench idle`: the CPU one worker spends with nothing to do (issue 14: under 2 % of a core).

Clean topics, one worker started from empty state, `--settle` seconds for its start-up and first
rebalance to pass, then its CPU time (user + system, /proc/<pid>/stat) over `--seconds`. A worker that
idles must not poll, commit or tick its timers so often that a host full of them is busy doing nothing.
"""
from __future__ import annotations

import time

from .env import BenchEnv, CpuMeter

TARGET_PERCENT_OF_A_CORE = 2.0


def idle(env: BenchEnv, *, seconds: float, settle: float, log=print) -> dict:
    env.reset_topics()
    env.start_workers(1)
    log(f"worker serving; letting it settle for {settle} s, then measuring for {seconds} s")
    time.sleep(settle)
    meter = env.cpu_meter()
    before = meter.snapshot()
    time.sleep(seconds)
    after = meter.snapshot()
    cpu = CpuMeter.delta(before, after)
    measured = after.at - before.at
    return {"seconds": round(measured, 2), "settle_s": settle, "cpu_s": cpu,
            "percent_of_a_core": {name: round(value / measured * 100, 2) for name, value in cpu.items()},
            "target_percent_of_a_core": TARGET_PERCENT_OF_A_CORE}


def text_report(result: dict) -> str:
    percent = result["percent_of_a_core"]
    lines = [f"idle: {result['seconds']} s measured after {result['settle_s']} s settling"]
    lines += [f"{name:<10} {result['cpu_s'][name]:>7.3f} CPU s  {percent[name]:>6.2f} % of a core"
              for name in percent]
    lines.append(f"worker-1 target: under {result['target_percent_of_a_core']} % of a core")
    return "\n".join(lines)
