"""Runs one worker: the app, wired, under Faust's Worker (signals, logging, clean shutdown)."""
from __future__ import annotations

from faust.worker import Worker

from .app import create_app, wire
from .config import Settings


def run_worker(settings: Settings, loglevel: str = "warning") -> None:
    settings.worker_dir.mkdir(parents=True, exist_ok=True)
    app = create_app(settings)
    wire(app, settings)
    worker = Worker(app, loglevel=loglevel, redirect_stdouts=False, override_logging=True)
    # With its startup spinner, Faust sets the root logger to DEBUG for good: every aiokafka and
    # Faust debug call on the hot path then builds a log record only to drop it (~7% of a worker).
    worker.spinner = None
    worker.execute_from_commandline()
