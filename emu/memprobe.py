"""Where pyemu's memory goes: a sampler thread for long runs (PYEMU_MEMPROBE=FILE).

Every PYEMU_MEMPROBE_S seconds (default MEMPROBE_INTERVAL_S) it appends one JSON line to FILE:
the RSS split by /proc/self/smaps region kind (the brk heap, anonymous mappings, files), glibc's
malloc totals (mallinfo2: arenas, mmapped chunks, in use, free), the thread count, Python's own
view (gc object counts of the types that grew most since the first sample) and, with
PYEMU_MEMPROBE_TRACE=1, tracemalloc's biggest growths since the first sample (file:line; slows
the guest). The growths count from the first sample, PYEMU_MEMPROBE_WARMUP_S seconds after start
(default 0). benchmarks/soak.py passes the variable on, so a soak can say which of these grew.
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import threading
import time
from collections import Counter

MEMPROBE_INTERVAL_S = 30.0
TOP = 12  # growths reported per sample


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


_mallinfo2 = None  # glibc's mallinfo2 once looked up (False: not there)


def mallinfo() -> dict:
    """glibc's malloc totals in KiB (all arenas), or {} off glibc."""
    global _mallinfo2
    if _mallinfo2 is None:
        try:
            _mallinfo2 = ctypes.CDLL(None).mallinfo2
            _mallinfo2.restype = _Mallinfo2
        except (OSError, AttributeError):
            _mallinfo2 = False
    if not _mallinfo2:
        return {}
    m = _mallinfo2()
    return {"arena_kb": m.arena >> 10, "mmap_kb": m.hblkhd >> 10, "used_kb": m.uordblks >> 10,
            "free_kb": m.fordblks >> 10}


def smaps() -> dict:
    """Rss in KiB by region kind: heap, stack, anon (unnamed mappings), file (everything else)."""
    out: Counter = Counter()
    kind = "anon"
    try:
        with open("/proc/self/smaps") as f:
            for line in f:
                first = line.split(None, 1)[0]
                if "-" in first and not first.endswith(":"):  # a mapping's header line
                    parts = line.split()
                    name = parts[5] if len(parts) > 5 else ""
                    kind = ("heap" if name == "[heap]" else "stack" if name.startswith("[stack")
                            else "anon" if not name or name.startswith("[anon") else
                            "vdso" if name.startswith("[") else "file")
                    out[kind + "_maps"] += 1
                elif first == "Rss:":
                    out[kind] += int(line.split()[1])
    except OSError:
        pass
    return dict(out)


def _type_counts() -> Counter:
    return Counter(type(o).__name__ for o in gc.get_objects())


def start(path: str, interval: float | None = None) -> threading.Thread:
    """Start the sampler (a daemon thread) writing to `path`."""
    interval = float(os.environ.get("PYEMU_MEMPROBE_S", interval or MEMPROBE_INTERVAL_S))
    trace = bool(os.environ.get("PYEMU_MEMPROBE_TRACE"))

    warmup = float(os.environ.get("PYEMU_MEMPROBE_WARMUP_S", "0"))

    def run() -> None:
        t0 = time.monotonic()
        time.sleep(warmup)  # (the boot's allocations are not what a soak asks about)
        if trace:
            import tracemalloc
            tracemalloc.start(1)
        types0 = _type_counts()
        snap0 = None
        while True:
            row = {"t": round(time.monotonic() - t0, 1), "smaps": smaps(), "malloc": mallinfo(),
                   "threads": threading.active_count(), "os_threads": len(os.listdir("/proc/self/task"))}
            types = _type_counts()
            row["gc_objects"] = sum(types.values())
            row["types"] = {k: v for k, v in (types - types0).most_common(TOP)}
            if trace:
                import tracemalloc
                snap = tracemalloc.take_snapshot()
                row["traced_kb"] = tracemalloc.get_traced_memory()[0] >> 10
                if snap0 is None:
                    snap0 = snap
                else:
                    row["trace"] = [(str(s.traceback[0]), s.size_diff >> 10, s.count_diff)
                                    for s in snap.compare_to(snap0, "lineno")[:TOP]]
            with open(path, "a") as f:
                f.write(json.dumps(row) + "\n")
            time.sleep(interval)

    th = threading.Thread(target=run, name="pyemu-memprobe", daemon=True)
    th.start()
    return th


def start_from_env() -> None:
    """Start the sampler if PYEMU_MEMPROBE names a file."""
    path = os.environ.get("PYEMU_MEMPROBE")
    if path:
        start(path)
