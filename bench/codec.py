"""Encode and decode time per record, compiled Avro (streams.contract.compiled) against fastavro alone.

    python bench/codec.py [--count 100000] [--repeat 5] [--save FILE]

The records are the four a deposit's processor writes (its event, the account's state, the outcome and the
dedup record) and the view entry the account view writes. Medians of `--repeat` timings of `--count` calls.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streams.bench.report import machine  # noqa: E402
from streams.contract.avro import Codec  # noqa: E402
from streams.domain.accounts import Account, MoneyDeposited  # noqa: E402
from streams.domain.outcomes import CommandOutcome, ProcessedCommand  # noqa: E402
from streams.domain.views import AccountView  # noqa: E402


def sample_records(codec: Codec) -> list:
    outcome = CommandOutcome(command_id="cmd-5f1c2a", command_type="Deposit", aggregate_id="acc-0042",
                             status="ACCEPTED", version=17, occurred_at=1_764_900_000_000)
    event = MoneyDeposited(event_id="cmd-5f1c2a.0", aggregate_id="acc-0042", version=17, command_id="cmd-5f1c2a",
                           occurred_at=1_764_900_000_000, amount=Decimal("12.50"), balance=Decimal("1234.50"))
    state = Account(account_id="acc-0042", customer_id="cust-7", title="Checking", description="",
                    balance=Decimal("1234.50"), status="OPEN", version=17)
    view = AccountView(account_id="acc-0042", customer_id="cust-7", title="Checking", description="",
                       balance=Decimal("1234.50"), status="OPEN", version=17)
    processed = ProcessedCommand(aggregate_id="acc-0042", outcome=codec.encode(outcome),
                                 events=(codec.encode(event),), commands=())
    return [event, state, outcome, processed, view]


def timed(function, argument, count: int, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        for _ in range(count):
            function(argument)
        times.append((time.perf_counter() - started) / count)
    return statistics.median(times) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--save")
    args = parser.parse_args()
    compiled = Codec(registry=None, record_format="single-object")
    plain = Codec(registry=None, record_format="single-object", compiled=False)
    rows = []
    for record in sample_records(compiled):
        data = plain.encode(record)
        assert compiled.encode(record) == data and compiled.decode(data) == record
        row = {"record": type(record).__name__,
               "encode_us": {"fastavro": timed(plain.encode, record, args.count, args.repeat),
                             "compiled": timed(compiled.encode, record, args.count, args.repeat)},
               "decode_us": {"fastavro": timed(plain.decode, data, args.count, args.repeat),
                             "compiled": timed(compiled.decode, data, args.count, args.repeat)}}
        for kind in ("encode_us", "decode_us"):
            row[kind] = {k: round(v, 2) for k, v in row[kind].items()}
            row[kind]["ratio"] = round(row[kind]["fastavro"] / row[kind]["compiled"], 2)
        rows.append(row)
        print(f"{row['record']:<18} encode {row['encode_us']['fastavro']:5.2f} -> {row['encode_us']['compiled']:5.2f} us"
              f" ({row['encode_us']['ratio']:.2f}x)   decode {row['decode_us']['fastavro']:5.2f} -> "
              f"{row['decode_us']['compiled']:5.2f} us ({row['decode_us']['ratio']:.2f}x)")
    if args.save:
        report = {"workload": "codec", "command": " ".join(["python", *sys.argv]), "count": args.count,
                  "repeat": args.repeat, "records": rows, "machine": machine()}
        Path(args.save).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
