"""What `bank kafka` and `bank registry` share: where $BANK_HOME is, how they fail, and their progress
lines on stderr."""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import click


def home() -> Path:
    return Path(os.environ.get("BANK_HOME") or "./.bank").expanduser().resolve()


def fail(msg: str) -> None:
    click.echo(f"error: {msg}", err=True)
    sys.exit(1)


def log_to_stderr(name: str) -> None:
    """The named module's log lines, bare, on stderr (once, however often a command asks)."""
    lg = logging.getLogger(name)
    if not any(getattr(h, "_bank_cli", False) for h in lg.handlers):
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(logging.Formatter("%(message)s"))
        h._bank_cli = True  # type: ignore[attr-defined]
        lg.addHandler(h)
        lg.setLevel(logging.INFO)
        lg.propagate = False
