"""Progress bars (streams.cli.progress): on stderr, only for a terminal, never with --json/--quiet."""
from __future__ import annotations

import io

import pytest

from streams.cli import progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def fresh(monkeypatch):
    monkeypatch.setattr(progress, "_disabled", False)
    monkeypatch.delenv("BANK_NO_PROGRESS", raising=False)


def run_bar(stderr, monkeypatch) -> progress.Bar:
    monkeypatch.setattr("sys.stderr", stderr)
    with progress.bar(1000, "sending", every=100) as shown:
        for _ in range(1000):
            shown.tick()
    return shown


def test_given_a_terminal_when_work_is_done_then_a_bar_is_drawn_on_stderr(monkeypatch):
    stderr = Terminal()
    shown = run_bar(stderr, monkeypatch)
    assert shown.count == 1000 and "sending" in stderr.getvalue()


def test_given_stderr_is_not_a_terminal_then_nothing_is_drawn(monkeypatch):
    stderr = io.StringIO()
    shown = run_bar(stderr, monkeypatch)
    assert shown.count == 1000 and stderr.getvalue() == ""


def test_given_json_or_quiet_asked_for_then_nothing_is_drawn_even_on_a_terminal(monkeypatch):
    progress.disable()
    stderr = Terminal()
    run_bar(stderr, monkeypatch)
    assert stderr.getvalue() == ""


def test_given_bank_no_progress_then_nothing_is_drawn_even_on_a_terminal(monkeypatch):
    monkeypatch.setenv("BANK_NO_PROGRESS", "1")
    stderr = Terminal()
    run_bar(stderr, monkeypatch)
    assert stderr.getvalue() == ""
