"""The worker's table store: Faust's RocksDB store with one block cache and one memtable budget shared by
every database the worker opens (each table partition is one). Faust gives each database its own, so a
worker's RSS grows with tables × partitions until every memtable and cache is full: under a steady load
that reads as a leak. Shared, the worker's RocksDB memory has one bound however many partitions it holds."""
from __future__ import annotations

import rocksdict
from faust.stores import STORES
from faust.stores import rocksdb as faust_rocksdb

#: The store URL scheme of `create_app`; registered below as Faust's plug-in stores are.
SCHEME = "rocksdb-shared"

#: Bounds for the whole process, every table partition included.
BLOCK_CACHE_BYTES = 64 * 2**20
WRITE_BUFFER_BYTES = 64 * 2**20

_shared: tuple[rocksdict.Cache, rocksdict.WriteBufferManager] | None = None


def shared_memory() -> tuple[rocksdict.Cache, rocksdict.WriteBufferManager]:
    """The process's block cache and memtable budget, made when the first database opens."""
    global _shared
    if _shared is None:
        _shared = (rocksdict.Cache(BLOCK_CACHE_BYTES),
                   rocksdict.WriteBufferManager(WRITE_BUFFER_BYTES, False))  # flush early, never stall writers
    return _shared


def memory_usage() -> dict[str, int] | None:
    """Bytes the shared block cache and memtables hold now (None before the first database opens)."""
    if _shared is None:
        return None
    cache, write_buffers = _shared
    return {"block_cache": cache.get_usage(), "block_cache_pinned": cache.get_pinned_usage(),
            "memtables": write_buffers.get_usage()}


class SharedMemoryOptions(faust_rocksdb.RocksDBOptions):
    """Faust's rocksdict options, with the shared cache and write buffer manager in place of its own."""

    def as_options(self) -> rocksdict.Options:
        cache, write_buffers = shared_memory()
        options = super().as_options()
        options.set_write_buffer_manager(write_buffers)
        table = rocksdict.BlockBasedOptions()  # Faust's, but with the shared cache
        table.set_bloom_filter(self.bloom_filter_size, block_based=True)
        table.set_block_cache(cache)
        table.set_index_type(rocksdict.BlockBasedIndexType.binary_search())
        options.set_block_based_table_factory(table)
        return options


class Store(faust_rocksdb.Store):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, driver="rocksdict", **kwargs)
        self.rocksdb_options = SharedMemoryOptions(**self.options, use_rocksdict=True)


STORES.aliases[SCHEME] = f"{__name__}:Store"
