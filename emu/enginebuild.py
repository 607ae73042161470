"""The first start's engine build, shared between two processes (issue 10, "a fast first start").

Numba compiles one function at a time on one core, and a cold build of the engine is ~280 function
compiles of 0.1-7 s each. On a cold cache `MainLoop.warm_up` therefore starts a helper process
(`python -m emu.enginebuild`) that compiles another root of the call graph (`exec_cold`, the rarer
instruction families, and what it calls) while this process compiles the decoder and then `run`.
The two meet in numba's on-disk cache:

* Before compiling an engine function for a signature, a process takes an exclusive `flock` on a
  file named after the function and the signature in `<cache>/locks/`.
* If the other process holds it, it waits for the lock and then finds the finished function in the
  cache (numba's `compile` looks there before compiling), so no function is compiled twice.

A process waits only while holding the locks of the callers on its own compile stack, and numba
compiles a callee before its caller, so a wait never closes a cycle (the engine has no recursion).
An flock dies with its process: a helper that crashes or is killed leaves nothing to wait on, and
the main process compiles whatever is missing itself. Without `fcntl` (Windows), or without a cache
directory of ours, there is no helper and the build is the single-process one.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no flock, no helper
    fcntl = None

LOCK_DIR = "locks"
PROGRESS_FILE = "helper-compiles"  # the helper's compile count, for the progress line
_local = threading.local()
_installed = False
_helper_started = False


def cache_dir() -> Path | None:
    """The engine's numba cache directory (chosen in emu/__init__.py), or None."""
    path = os.environ.get("NUMBA_CACHE_DIR")
    return Path(path) if path else None


def available() -> bool:
    return fcntl is not None and cache_dir() is not None


def engine_cached() -> bool:
    """True when numba's cache holds `run` for the current sources (a warm start); True as well
    where numba's cache internals differ, so that nothing extra is started."""
    try:
        from emu.cpu.interp import run

        return bool(run._cache._cache_file._load_index())
    except (AttributeError, OSError, EOFError, ValueError, TypeError):
        return True


def _lock_path(dispatcher, args) -> Path:
    import hashlib

    key = hashlib.sha1(repr(tuple(args)).encode()).hexdigest()[:16]
    name = f"{dispatcher.py_func.__module__}.{dispatcher.py_func.__qualname__}-{key}.lock"
    return cache_dir() / LOCK_DIR / name


def install() -> None:
    """Make numba's compile of an engine function take its lock first (see the module docstring)."""
    global _installed
    if _installed or not available():
        return
    try:
        from numba.core import sigutils
        from numba.core.dispatcher import Dispatcher
    except ImportError:
        return
    _installed = True
    compile_ = Dispatcher.compile
    (cache_dir() / LOCK_DIR).mkdir(parents=True, exist_ok=True)

    from emu.numbaload import is_engine_function

    def compile(self, sig):
        if not is_engine_function(self):
            return compile_(self, sig)
        args, _ = sigutils.normalize_signature(sig)
        if tuple(args) in self.overloads:
            return compile_(self, sig)
        path = _lock_path(self, args)
        held = _local.__dict__.setdefault("held", set())
        if path in held:  # already ours, further up this compile stack
            return compile_(self, sig)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            return compile_(self, sig)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # waits while the other process compiles it
            held.add(path)
            try:
                return compile_(self, sig)  # finds it in the cache if the other one finished it
            finally:
                held.discard(path)
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    compile.__doc__ = compile_.__doc__
    Dispatcher.compile = compile


def start_helper() -> subprocess.Popen | None:
    """Start the helper that compiles the other half of the engine, or None where there is none."""
    global _helper_started
    if not available():
        return None
    install()
    progress = cache_dir() / LOCK_DIR / PROGRESS_FILE
    try:
        progress.unlink(missing_ok=True)
        _helper_started = True
        return subprocess.Popen([sys.executable, "-m", "emu.enginebuild"], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except OSError:
        return None


def finish_helper(helper: subprocess.Popen) -> None:
    """End the helper once this process has the whole engine: what it finished is in the cache,
    and whatever it was still compiling, this process did not need. Its count stops showing."""
    global _helper_started
    helper.kill()
    helper.wait()
    _helper_started = False


def helper_compiles() -> int:
    """How many functions the helper has compiled so far (0 when there is none)."""
    if not _helper_started:
        return 0
    try:
        return int((cache_dir() / LOCK_DIR / PROGRESS_FILE).read_text() or 0)
    except (OSError, ValueError, TypeError):
        return 0


def on_compile(callback):
    """Call `callback()` after each of numba's compiles (its `numba:compile` event) in this process;
    returns the listener, for `numba.core.event.unregister`."""
    from numba.core import event

    class Counter(event.Listener):
        def on_start(self, ev):
            pass

        def on_end(self, ev):
            callback()

    listener = Counter()
    event.register("numba:compile", listener)
    return listener


def exec_cold_signature() -> tuple:
    """The argument types `run` calls `exec_cold` with: the two int64 arrays, the four raw
    addresses (uint64) and the decoded operands (int64). tests/test_engine_build.py checks this
    against what `run`'s own typing asked for."""
    from numba import types

    i64_array = types.Array(types.int64, 1, "C")
    return (i64_array, i64_array) + (types.uint64,) * 4 + (types.int64,) * 17


def build_helper_half() -> None:
    """The helper's roots: `exec_cold` and its callees (interrupts, far transfers, system, x87)."""
    from emu.cpu.interp import exec_cold

    progress = cache_dir() / LOCK_DIR / PROGRESS_FILE
    count = 0

    def one_more() -> None:
        nonlocal count
        count += 1
        try:
            progress.write_text(str(count))
        except OSError:
            pass

    on_compile(one_more)
    exec_cold.compile(exec_cold_signature())


def build_main_half_first() -> None:
    """What this process compiles before `run` while the helper starts on `exec_cold`: the decoder,
    which only `run`'s translator calls (the largest subtree the helper never needs)."""
    import numpy as np

    from emu.translate import decoder as D

    D.decode(np.zeros(16, np.uint8), 0, 16, True, np.zeros(D.OUT_SIZE, np.int64))


def main() -> int:
    if not available():
        return 0
    install()
    build_helper_half()
    return 0


if __name__ == "__main__":
    sys.exit(main())
