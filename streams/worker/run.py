"""Runs one worker: the app, wired, under Faust's Worker (signals, logging, clean shutdown)."""
from __future__ import annotations

import logging
import os
import sys

from faust.worker import Worker

from . import localstate
from .app import create_app
from .wiring import wire
from ..config import Settings
from ..contract.avro import Codec
from ..contract.schema_registry import RegistryError
from ..kafka.pointer import follow as follow_pointer


def run_worker(settings: Settings, loglevel: str = "warning", reset_local_state: bool = False) -> None:
    if reset_local_state:
        logging.getLogger(__name__).warning("local state deleted (%s); recovering it from the changelogs",
                                            localstate.reset(settings))
    settings.worker_dir.mkdir(parents=True, exist_ok=True)
    # Local state that Kafka contradicts would stop Faust's recovery (or never end it): drop it first.
    localstate.repair(settings)
    app = create_app(settings)
    codec = Codec.from_settings(settings)
    try:
        codec.prepare()  # BANK_RECORD_FORMAT=confluent: every writer's schema id now, not mid-stream
    except RegistryError as exc:
        sys.exit(f"error: the schema registry did not register the writers' schemas: {exc}")
    pipeline = wire(app, settings, codec=codec)
    follow_pointer(pipeline.generations, settings)
    pipeline.on_batch_failure = stop_at_once
    worker = Worker(app, loglevel=loglevel, redirect_stdouts=False, override_logging=True)
    # With its startup spinner, Faust sets the root logger to DEBUG for good: every aiokafka and
    # Faust debug call on the hot path then builds a log record only to drop it (~7% of a worker).
    worker.spinner = None
    worker.execute_from_commandline()


def stop_at_once(agent: str, exc: BaseException) -> None:
    """An agent failed on a batch: exit before Faust commits the batch's offsets (at-least-once)."""
    logging.getLogger(__name__).critical("%s failed on a batch; stopping the worker at once so that nothing "
                                         "of it is committed (a supervisor restarts it)", agent, exc_info=exc)
    logging.shutdown()
    sys.stderr.flush()
    os._exit(70)
