"""Faster loads from numba's on-disk cache: a warm start skips numba's registry refresh.

Before it loads a cached function, numba (0.6x, `Cache.load_overload`) refreshes its target
context: it imports and installs every typing and lowering registry (numba.cpython.*, numba.np.*),
which a compiler needs and a load of finished machine code does not. On this machine that was
0.3-0.5 s of pyemu's ~1 s warm start. `install` makes the load initialise only numba's runtime
(NRT, whose symbols cached code links against); a cache miss still compiles as before, since the
compiler refreshes the context itself, and so does lowering on a first lookup.
"""

from __future__ import annotations

_installed = False


def install() -> None:
    """Patch numba's cache loader once (a no-op where numba's internals differ)."""
    global _installed
    if _installed:
        return
    _installed = True
    try:
        from numba.core import caching
        from numba.core.runtime import rtsys
    except ImportError:
        return
    cache = caching.Cache
    if not (hasattr(cache, "load_overload") and hasattr(cache, "_load_overload")
            and hasattr(cache, "_guard_against_spurious_io_errors")):
        return

    def load_overload(self, sig, target_context):
        rtsys.initialize(target_context)
        with self._guard_against_spurious_io_errors():
            return self._load_overload(sig, target_context)
        return None  # (the guard swallowed an I/O error: numba then compiles)

    load_overload.__doc__ = cache.load_overload.__doc__
    cache.load_overload = load_overload


install()  # on import: `emu.cpu.core` imports this module before any engine code
