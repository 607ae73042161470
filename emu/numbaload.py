"""Faster engine builds and loads: one compile per engine function, and no registry refresh on a load.

Numba types a constant argument of a call between jitted functions as a literal
(`Literal[int](4)`, `Literal[bool](True)`) and compiles the callee once per distinct tuple of
literals: a cold build compiled `access.seg_la` twelve times and 356 functions in all for 194 in the
source. `install` makes a call to an engine function (one defined in `emu`) type its arguments as
plain values, so each engine function compiles once per argument-type tuple (196 compiles, and
the cold compile took 135 s instead of 185 s on this project's machine).

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
    _unliteral_engine_calls()


def is_engine_function(dispatcher) -> bool:
    """A jitted function defined in pyemu (a module `emu.*`): the rules here and in enginebuild.py
    change how numba compiles these, and no one else's."""
    return getattr(dispatcher.py_func, "__module__", "").startswith("emu.")


def _unliteral_engine_calls() -> None:
    """Type the arguments of calls to `emu` functions as plain values (see the module docstring)."""
    try:
        from numba.core import types
        from numba.core.dispatcher import Dispatcher
    except ImportError:
        return
    template = getattr(Dispatcher, "get_call_template", None)
    if template is None:
        return

    def get_call_template(self, args, kws):
        if is_engine_function(self):
            args = tuple(types.unliteral(a) for a in args)
            kws = {k: types.unliteral(v) for k, v in kws.items()}
        return template(self, args, kws)

    get_call_template.__doc__ = template.__doc__
    Dispatcher.get_call_template = get_call_template


install()  # on import: `emu.cpu.core` imports this module before any engine code
