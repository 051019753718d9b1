# Soak A/B hook (PYTHONPATH=bench/results/s11/trim): in a `streams.cli worker` only, glibc's malloc_trim(0)
# every 30 s on a daemon thread, to see whether freed native memory kept by the allocator is the RSS growth.
import os
import sys

if "streams.cli" in getattr(sys, "orig_argv", []) and "worker" in getattr(sys, "orig_argv", []):
    import ctypes
    import threading
    import time

    def _trim_forever():
        libc = ctypes.CDLL("libc.so.6")
        while True:
            time.sleep(30)
            libc.malloc_trim(0)

    threading.Thread(target=_trim_forever, daemon=True, name="malloc-trim").start()
