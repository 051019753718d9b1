"""Progress bars on stderr for the long-running commands (`bank send --file`, the demo, the benchmarks).

Shown only when stderr is a terminal; `--json` / `--quiet` (the commands call `disable()`) and
`BANK_NO_PROGRESS=1` turn them off, so scripts and pipes see nothing but the output they asked for.
Ticks are cheap (a counter; the bar is told every `every` ticks) so a benchmark's send loop is not
slowed by drawing.
"""
from __future__ import annotations

import os
import sys
import time

_disabled = False


def disable() -> None:
    """No bars for the rest of this process (the command was asked for --json or --quiet)."""
    global _disabled
    _disabled = True


def enabled() -> bool:
    return not _disabled and not os.environ.get("BANK_NO_PROGRESS") and sys.stderr.isatty()


class Bar:
    """One bar: `with bar(total, "sending") as b: ... b.tick()`; a no-op when bars are off."""

    def __init__(self, total: int | None, description: str, *, every: int = 1, unit: str = ""):
        self.total, self.description, self.every, self.unit = total, description, max(1, every), unit
        self.count = 0
        self._told = 0
        self._progress = None
        self._task = None

    def __enter__(self) -> "Bar":
        if enabled():
            # rich only when a bar is drawn: it takes a while to import, and most runs draw none (start-up)
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn,
                                       TimeElapsedColumn, TimeRemainingColumn)
            columns = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                       TimeElapsedColumn()]
            if self.total:
                columns.append(TimeRemainingColumn())
            self._progress = Progress(*columns, console=Console(stderr=True), transient=True)
            self._progress.start()
            self._task = self._progress.add_task(self.description, total=self.total)
        return self

    def tick(self, n: int = 1) -> None:
        self.count += n
        if self._progress is not None and self.count - self._told >= self.every:
            self._progress.update(self._task, completed=self.count)
            self._told = self.count

    def set(self, count: int, total: int | None = None) -> None:
        self.count = count
        if self._progress is not None:
            self._progress.update(self._task, completed=count, **({"total": total} if total is not None else {}))
            self._told = count

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=self.count)
            self._progress.stop()


def bar(total: int | None, description: str, *, every: int = 1) -> Bar:
    return Bar(total, description, every=every)


def waiting(description: str, count=None, total: int | None = None, interval: float = 0.25):
    """A bar for a wait: returns `update()`, to call while waiting, and the Bar to close.

    `count()` says how much is done (None: a spinner with the elapsed time)."""
    shown = Bar(total, description)
    last = [0.0]

    def update() -> None:
        now = time.monotonic()
        if now - last[0] >= interval:
            last[0] = now
            shown.set(count() if count else 0)
    return shown, update
