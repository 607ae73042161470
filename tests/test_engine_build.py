"""The engine's cold build stays cheap: one numba compile per engine function (issue 10, "a fast
first start"). Numba compiles a callee once per tuple of literal arguments and copies an
``inline='always'`` callee's IR into every call site; both once doubled the first start."""

from __future__ import annotations

import importlib
import pkgutil

from numba import njit, types
from numba.core.dispatcher import Dispatcher

import emu


def _engine_dispatchers():
    for sub in ("cpu", "mmu", "translate"):
        package = importlib.import_module(f"emu.{sub}")
        for info in pkgutil.iter_modules(package.__path__, f"emu.{sub}."):
            module = importlib.import_module(info.name)
            for value in vars(module).values():
                if isinstance(value, Dispatcher) and value.py_func.__module__ == info.name:
                    yield info.name, value


def test_a_call_between_engine_functions_compiles_the_callee_once_for_plain_types():
    import emu.numbaload  # noqa: F401 - installs the rule (the engine packages import it)

    def probe(size, write):
        return size * 2 if write else size

    probe.__module__ = "emu.probe"  # an engine function, as far as the rule is concerned
    callee = njit(probe)

    @njit
    def caller(x):
        return callee(4, True) + callee(2, False) + callee(x, True)

    assert caller(1) == 8 + 2 + 2
    assert callee.signatures == [(types.int64, types.boolean)]


def test_no_engine_function_is_inlined_by_numba():
    assert emu  # the package under test
    found = [(name, d.py_func.__name__) for name, d in _engine_dispatchers()
             if d.targetoptions.get("inline") == "always"]
    assert found == []
    assert sum(1 for _ in _engine_dispatchers()) > 150  # the scan saw the engine


def test_the_helper_compiles_exec_cold_for_the_signature_run_calls_it_with():
    """The helper process (emu/enginebuild.py) compiles `exec_cold` ahead of `run`: only useful if
    its signature is the one `run`'s typing asks for, which the engine's cache index records."""
    from emu.cpu.core import CpuCore
    from emu.cpu.interp import exec_cold
    from emu.enginebuild import exec_cold_signature

    CpuCore(1 << 20).run(0)  # the engine, loaded from the cache or compiled
    index = exec_cold._cache._cache_file._load_index()
    assert index, "exec_cold is in numba's cache once the engine is"
    assert {key[0] for key in index} == {exec_cold_signature()}


def test_a_compile_waits_while_another_process_holds_the_functions_lock(tmp_path, monkeypatch):
    """Two processes building the engine never compile one function twice: the second waits for
    the first's flock on the function's lock file, then finds it done."""
    import os
    import threading
    import time

    from emu import enginebuild

    if enginebuild.fcntl is None:
        import pytest

        pytest.skip("no flock on this host: the build is single-process")
    import fcntl

    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    enginebuild.install()
    (tmp_path / enginebuild.LOCK_DIR).mkdir(exist_ok=True)

    def probe(x):
        return x + 1

    probe.__module__ = "emu.probe_lock"
    jitted = njit(probe)
    path = enginebuild._lock_path(jitted, (types.int64,))
    fd = os.open(path, os.O_RDWR | os.O_CREAT)  # another open file description: as another process
    fcntl.flock(fd, fcntl.LOCK_EX)
    released = []

    def release():
        time.sleep(0.5)
        released.append(time.monotonic())
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    threading.Thread(target=release).start()
    assert jitted(41) == 42
    done = time.monotonic()
    assert released and done >= released[0]  # the compile waited for the holder
