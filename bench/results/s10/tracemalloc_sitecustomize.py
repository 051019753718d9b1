import sys, os
if 'worker' in sys.argv and 'streams.cli' in ' '.join(sys.argv) or os.environ.get('RX_FORCE'):
    pass
def _start():
    import threading, time, tracemalloc, gc
    tracemalloc.start(12)
    out = os.environ.get('RX_OUT', '/tmp/rx/trace')
    def run():
        time.sleep(150)
        first = tracemalloc.take_snapshot()
        t0 = time.time()
        n = 0
        while True:
            time.sleep(240)
            n += 1
            gc.collect()
            snap = tracemalloc.take_snapshot()
            cur, peak = tracemalloc.get_traced_memory()
            stats = snap.compare_to(first, 'traceback')
            with open(f'{out}-{os.getpid()}-{n}.txt', 'w') as f:
                f.write(f'after {time.time()-t0:.0f}s traced {cur/2**20:.1f} MB peak {peak/2**20:.1f}\n')
                for s in stats[:25]:
                    f.write(f'\n{s.size_diff/2**20:+.2f} MB {s.count_diff:+d} blocks (now {s.size/2**20:.2f} MB)\n')
                    for line in s.traceback.format()[-12:]:
                        f.write('   ' + line + '\n')
    threading.Thread(target=run, daemon=True, name='rx-trace').start()
if len(sys.argv) > 1 or True:
    import atexit
if os.environ.get('RX_TRACE') and 'streams.cli' in (sys.orig_argv if hasattr(sys, 'orig_argv') else []) and 'worker' in getattr(sys, 'orig_argv', []):
    _start()
