import os, sys, uuid, time, shutil, random
sys.path.insert(0, str(__import__('pathlib').Path(__file__).resolve().parents[3]))
import rocksdict
from streams.worker import store
from streams.worker.wiring import ROCKSDB_OPTIONS
cache_index = sys.argv[1] == 'cache'
N = int(sys.argv[2])
orig = store.SharedMemoryOptions.as_options
def as_options(self):
    o = orig(self)
    if cache_index:
        cache, _ = store.shared_memory()
        t = rocksdict.BlockBasedOptions()
        t.set_bloom_filter(self.bloom_filter_size, block_based=True)
        t.set_block_cache(cache)
        t.set_index_type(rocksdict.BlockBasedIndexType.binary_search())
        t.set_cache_index_and_filter_blocks(True)
        t.set_pin_l0_filter_and_index_blocks_in_cache(True)
        o.set_block_based_table_factory(t)
    return o
store.SharedMemoryOptions.as_options = as_options
def rss():
    for l in open('/proc/self/status'):
        if l.startswith('VmRSS'): return int(l.split()[1])//1024
base = f'/tmp/rocksdb-rss-{sys.argv[1]}'  # usage: rocksdb_rss.py nocache|cache KEYS
shutil.rmtree(base, ignore_errors=True); os.makedirs(base)
dbs = []
for i in range(48):
    opts = store.SharedMemoryOptions(**dict(ROCKSDB_OPTIONS), use_rocksdict=True).as_options()
    opts.create_if_missing(True)
    dbs.append(rocksdict.Rdict(f'{base}/{i}', options=opts))
print('start', rss())
val = os.urandom(150)
t=time.time()
for n in range(N):
    k = uuid.uuid4().bytes.hex().encode()
    dbs[n % 48][k] = val
    if n % 500000 == 0 and n:
        tr = sum(d.property_int_value('rocksdb.estimate-table-readers-mem') or 0 for d in dbs)//2**20
        mt = sum(d.property_int_value('rocksdb.cur-size-all-mem-tables') or 0 for d in dbs)//2**20
        print(n, 'rss', rss(), 'table_readers_MB', tr, 'memtables_MB', mt, 'cache_MB', (dbs[0].property_int_value('rocksdb.block-cache-usage') or 0)//2**20, round(time.time()-t,1), flush=True)
# read some random
for n in range(100000):
    dbs[n%48].get(uuid.uuid4().bytes.hex().encode())
tr = sum(d.property_int_value('rocksdb.estimate-table-readers-mem') or 0 for d in dbs)//2**20
print('end rss', rss(), 'table_readers_MB', tr)
