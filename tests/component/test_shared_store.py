"""The worker's tables open through streams/worker/store.py: every table partition's RocksDB database
shares one block cache and one memtable budget, and still stores and reads its own entries."""
from __future__ import annotations

import asyncio

from streams.config import Settings
from streams.worker import store
from streams.worker.app import create_app
from streams.worker.wiring import wire


def test_every_table_of_a_wired_worker_opens_its_partitions_with_the_shared_memory_bounds(tmp_path):
    async def open_tables():
        settings = Settings(home=tmp_path)
        app = create_app(settings)
        pipeline = wire(app, settings)
        stores = {name: table.data for name, table in pipeline.tables.items()}
        account = stores["account_to_view"]
        account._db_for_partition(0).put(b"a-1", b"view of a-1")
        account._db_for_partition(3).put(b"a-2", b"view of a-2")
        read = (account._db_for_partition(0)[b"a-1"], account._db_for_partition(3)[b"a-2"],
                account._db_for_partition(0).get(b"a-2"))
        return stores, read

    stores, read = asyncio.run(open_tables())
    assert stores and all(type(s) is store.Store for s in stores.values())
    assert all(isinstance(s.rocksdb_options, store.SharedMemoryOptions) for s in stores.values())
    assert read == (b"view of a-1", b"view of a-2", None)
    assert store.shared_memory() is store.shared_memory()  # one cache and one budget per process
    opened = {path.name for path in tmp_path.rglob("*.db") if path.is_dir()}
    assert {"account_to_view-0.db", "account_to_view-3.db"} <= opened  # on disk, not in memory


def test_the_shared_cache_and_memtables_report_what_they_hold_and_the_scrape_shows_it(tmp_path):
    async def write_and_read():
        settings = Settings(home=tmp_path)
        pipeline = wire(create_app(settings), settings)
        db = pipeline.tables["account_to_view"].data._db_for_partition(1)
        for i in range(2000):
            db.put(f"a-{i}".encode(), b"x" * 200)
        return pipeline.metrics.exposition().decode()

    text = asyncio.run(write_and_read())
    usage = store.memory_usage()
    assert usage is not None and usage["memtables"] >= 2000 * 200  # the writes sit in the memtables
    assert usage["block_cache"] <= store.BLOCK_CACHE_BYTES
    shown = {line.split("{")[1].split("}")[0]: float(line.rsplit(" ", 1)[1])
             for line in text.splitlines() if line.startswith("bank_rocksdb_memory_bytes{")}
    assert shown.keys() == {'kind="block_cache"', 'kind="block_cache_pinned"', 'kind="memtables"'}
    assert shown['kind="memtables"'] >= 2000 * 200
