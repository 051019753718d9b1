"""The live dashboard: every account with its balance and the latest transfers with their states.

Two halves, as elsewhere:

- `Board`, pure: folds account, transfer and customer events with the views' own projections
  (`streams.domain.views`), each event only when it is the next version of its aggregate, and says
  what changed. It is the same fold the workers' views do, over the whole log instead of one
  worker's partitions.
- `Feed`, the Kafka side: a confluent-kafka consumer in a thread, assigned every partition of the
  three event topics from the beginning (no consumer group: any worker sees every account, whoever
  owns its partition), handing decoded events to the event loop, which folds them and pushes the
  changes to each open `GET /api/stream` (server-sent events).

The feed starts on the first dashboard request, not with the worker, so a worker nobody looks at
reads nothing more than before.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from aiohttp import web as aioweb

from ..contract import topics
from ..contract.avro import Codec
from ..config import Settings
from ..domain.views import AccountView, is_next, project_account, project_transfer
from ..contract.jsonio import dumps, to_plain
from ..kafka.reader import Reader, ReadError
from .responses import json_response, query_float

log = logging.getLogger(__name__)

RECENT_TRANSFERS = 50  # how many transfers the page lists, the latest first
MAX_ACCOUNTS = 500  # the page lists at most this many accounts, the most recently changed first
QUEUE_SIZE = 1000  # changes buffered per open stream; a stream that falls further behind gets a new snapshot
SOURCES = (topics.ACCOUNT_EVENTS.name, topics.TRANSFER_EVENTS.name)


# The pure half ----------------------------------------------------------------------------

@dataclass
class Board:
    """Accounts and transfers, folded from their events.

    No names: personal data is sealed per customer (streams.services.privacy), and a page anyone on the
    network can open is the last place to show it. Accounts are labelled by customer id and title.
    """

    accounts: dict[str, AccountView] = field(default_factory=dict)
    transfers: dict[str, Any] = field(default_factory=dict)  # transfer id → Transfer (the transfer view)
    touched: dict[str, int] = field(default_factory=dict)  # aggregate id → occurred_at of its last event
    events: int = 0

    def apply(self, event) -> list[tuple[str, dict]]:
        """Folds one event; returns the changes to show: ("account" | "transfer", its JSON)."""
        aggregate_id = event.aggregate_id
        if type(event) in topics.ACCOUNT_EVENTS.values:
            current = self.accounts.get(aggregate_id)
            if not is_next(current.version if current else 0, event):
                return []  # a redelivery, or news older than what is shown
            view = project_account(current, event)
            self.accounts[aggregate_id] = view
            self.touched[aggregate_id] = event.occurred_at
            self.events += 1
            return [("account", self.account_json(view))]
        if type(event) in topics.TRANSFER_EVENTS.values:
            current = self.transfers.get(aggregate_id)
            if not is_next(current.version if current else 0, event):
                return []
            view = project_transfer(current, event)
            self.transfers[aggregate_id] = view
            self.touched[aggregate_id] = event.occurred_at
            self.events += 1
            return [("transfer", self.transfer_json(view))]
        return []  # customer events: nothing the page shows

    def account_json(self, view: AccountView) -> dict:
        return {"account_id": view.account_id, "customer_id": view.customer_id,
                "title": view.title,
                "balance": str(view.balance), "status": view.status, "version": view.version,
                "updated_at": self.touched.get(view.account_id, 0)}

    def transfer_json(self, view) -> dict:
        plain = to_plain(view)
        body = {k: plain[k] for k in ("transfer_id", "from_account_id", "to_account_id", "amount", "description",
                                      "state", "version")}
        if plain.get("reason"):
            body["reason"] = plain["reason"]
        body["updated_at"] = self.touched.get(view.transfer_id, 0)
        return body

    def snapshot(self) -> dict:
        """What the page shows: the most recently changed accounts and the latest transfers."""
        def latest(ids):
            return sorted(ids, key=lambda i: self.touched.get(i, 0), reverse=True)
        accounts = [self.account_json(self.accounts[i]) for i in latest(self.accounts)[:MAX_ACCOUNTS]]
        transfers = [self.transfer_json(self.transfers[i]) for i in latest(self.transfers)[:RECENT_TRANSFERS]]
        return {"accounts": sorted(accounts, key=lambda a: (a["customer_id"], a["title"], a["account_id"])),
                "transfers": transfers,
                "totals": {"accounts": len(self.accounts), "transfers": len(self.transfers),
                           "events": self.events,
                           "balance": str(sum((v.balance for v in self.accounts.values()), start=Decimal("0.00")))}}


# The Kafka half ---------------------------------------------------------------------------

class FeedUnavailable(RuntimeError):
    """The event topics could not be read."""


class Feed:
    """Reads the event topics into a `Board` and fans the changes out to subscribers (open streams)."""

    def __init__(self, settings: Settings, codec: Codec, worker: str = ""):
        self.settings = settings
        self.codec = codec
        self.worker = worker
        self.board = Board()
        self.subscribers: set[asyncio.Queue] = set()
        self.caught_up = False  # read up to the end offsets seen when the feed started
        self.error: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def start(self) -> None:
        """Starts reading (once); call from the event loop."""
        if self._thread is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="dashboard-feed", daemon=True)
        self._thread.start()

    def request_stop(self) -> None:
        self._stopping.set()

    def stop(self, timeout: float = 5.0) -> None:
        self.request_stop()
        if self._thread is not None:
            self._thread.join(timeout)

    def snapshot(self) -> dict:
        return {**self.board.snapshot(), "caught_up": self.caught_up, "worker": self.worker,
                **({"error": self.error} if self.error else {})}

    def subscribe(self) -> asyncio.Queue:
        queue: asyncio.Queue = asyncio.Queue(QUEUE_SIZE)
        self.subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue) -> None:
        self.subscribers.discard(queue)

    # In the event loop: fold and fan out.
    def _apply(self, events: list, caught_up: bool) -> None:
        changes = []
        for event in events:
            changes.extend(self.board.apply(event))
        newly_caught_up = caught_up and not self.caught_up
        self.caught_up = self.caught_up or caught_up
        if newly_caught_up:
            changes.append(("status", {"caught_up": True}))
        for queue in list(self.subscribers):
            for change in changes:
                try:
                    queue.put_nowait(change)
                except asyncio.QueueFull:  # too slow a reader: it is sent the whole picture again
                    while not queue.empty():
                        queue.get_nowait()
                    queue.put_nowait(("snapshot", None))
                    break

    def _report(self, error: str | None) -> None:
        self.error = error

    def _post(self, callback, *args) -> None:
        if self._loop is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(callback, *args)
            except RuntimeError:  # the loop closed while the worker stopped
                pass

    # In the thread: read, decode.
    def _run(self) -> None:
        reader = Reader(self.settings, "dashboard", 5.0)
        try:
            while not self._stopping.is_set():
                try:
                    found, missing = reader.ends(SOURCES, reader.topics(timeout=5))
                    if missing:
                        raise FeedUnavailable(f"{', '.join(missing)} do not exist yet (bank topics create)")
                    break
                except (ReadError, FeedUnavailable) as exc:
                    self._post(self._report, f"cannot read the event topics yet: {exc}")
                    self._stopping.wait(2)
                    reader.deadline = time.monotonic() + 5.0
            else:
                return
            self._post(self._report, None)
            ends = {where: high for where, (low, high) in found.items() if high > low}
            self._post(self._apply, [], not ends)
            told_caught_up = not ends
            for messages, caught_up in reader.follow(list(found), ends):
                if self._stopping.is_set():
                    break
                events = []
                for message in messages:
                    try:
                        events.append(self.codec.decode(message.value()))
                    except Exception:  # poison is the agents' business (bank.deadletter); the page skips it
                        continue
                if events or (caught_up and not told_caught_up):
                    self._post(self._apply, events, caught_up)
                    told_caught_up = caught_up
        except Exception as exc:  # never take the worker down; the page shows why it stopped
            log.exception("the dashboard feed stopped")
            self._post(self._report, f"the dashboard feed stopped: {exc}")
        finally:
            reader.close()


def sse(kind: str, data: bytes) -> bytes:
    """One server-sent event; `data` is one line of JSON."""
    return b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n"


# The HTTP half ----------------------------------------------------------------------------

KEEP_ALIVE = 15.0  # seconds between comments on an idle stream, so proxies and browsers keep it open
MAX_STREAM_SECONDS = 86400.0
PAGE = Path(__file__).with_name("static") / "dashboard.html"


class DashboardRoutes:
    """GET / (the page), GET /api/dashboard (a snapshot), GET /api/stream (snapshot, then changes)."""

    def __init__(self, settings: Settings, codec: Codec, worker: str):
        self.feed = Feed(settings, codec, worker)
        self.streams: set[asyncio.Queue] = set()
        self.closing = False

    def register(self, web_app) -> None:
        web_app.router.add_get("/", self.page)
        web_app.router.add_get("/api/dashboard", self.dashboard)
        web_app.router.add_get("/api/stream", self.stream)
        # aiohttp waits for open requests when it stops: end the streams first so a worker stops at once.
        web_app.on_shutdown.append(self.close)

    async def close(self, _app=None) -> None:
        self.closing = True
        for queue in list(self.feed.subscribers):
            if queue.full():  # make room: the stream is ending anyway
                queue.get_nowait()
            queue.put_nowait(("close", None))
        self.feed.request_stop()

    async def page(self, request):
        return aioweb.Response(body=PAGE.read_bytes(), content_type="text/html", charset="utf-8")

    async def dashboard(self, request):
        self.feed.start()
        return json_response(self.feed.snapshot())

    async def stream(self, request):
        max_seconds = query_float(request, "max_seconds", default=MAX_STREAM_SECONDS, upper=MAX_STREAM_SECONDS)
        self.feed.start()
        response = aioweb.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                                  "X-Accel-Buffering": "no"})
        await response.prepare(request)
        queue = self.feed.subscribe()
        deadline = time.monotonic() + max_seconds
        try:
            await response.write(b"retry: 2000\n" + sse("snapshot", dumps(self.feed.snapshot())))
            while not self.closing:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    change = await asyncio.wait_for(queue.get(), min(KEEP_ALIVE, remaining))
                except asyncio.TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                batch = [change]
                while not queue.empty() and len(batch) < 500:  # a burst goes out in one write
                    batch.append(queue.get_nowait())
                chunks = []
                for kind, data in batch:
                    if kind == "close":
                        self.closing = True
                        break
                    chunks.append(sse(kind, dumps(self.feed.snapshot() if kind == "snapshot" else data)))
                if chunks:
                    await response.write(b"".join(chunks))
        except (ConnectionResetError, ConnectionError):  # the browser went away
            pass
        finally:
            self.feed.unsubscribe(queue)
        return response
