"""pyemu: a PC emulator that runs x86 guest code as cached, compiled translation blocks."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # for type checkers; at run time the API is imported when first asked for
    from emu.api import Machine as Machine

__version__ = "0.1.0"

_KEEP_CACHES = 3
_COMPILED_PACKAGES = ("cpu", "mmu", "translate")  # where the numba code (and its constants) live
# Nothing compiled into the engine depends on these (tier1_rt's cfuncs are keyed by numba on their
# own file, and depend only on hashed modules).
_PYTHON_ONLY = {"translate/disasm.py", "translate/tier1.py", "translate/tier1_rt.py",
                "cpu/core.py"}  # nothing compiled depends on these


def _select_numba_cache() -> None:
    """Point numba's on-disk cache at a directory keyed by the source of the whole package.

    Numba keys a cached function on its own file only, so a change to a helper in another module
    would leave a stale compiled caller behind (execution.md also notes that the cache ignores
    NUMBA_OPT). Hashing every source file that holds compiled code gives each build its own cache; old ones are
    pruned. An explicit NUMBA_CACHE_DIR wins.
    """
    if "NUMBA_CACHE_DIR" in os.environ:
        return
    root = Path(__file__).resolve().parent
    digest = hashlib.sha1(os.environ.get("NUMBA_OPT", "3").encode())
    if os.environ.get("NUMBA_BOUNDSCHECK", "") not in ("", "0"):  # `pyemu fuzz --boundscheck`: its own build
        digest.update(b"boundscheck")
    compiled = [root / "rawptr.py", root / "stats.py", root / "numbaload.py"]
    for sub in _COMPILED_PACKAGES:
        compiled.extend((root / sub).rglob("*.py"))
    for path in sorted(compiled):
        name = path.relative_to(root).as_posix()
        if name in _PYTHON_ONLY:
            continue
        digest.update(name.encode())
        digest.update(path.read_bytes())
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pyemu"
    target = base / f"numba-{digest.hexdigest()[:16]}"
    try:
        target.mkdir(parents=True, exist_ok=True)
        old = sorted((p for p in base.glob("numba-*") if p != target), key=lambda p: p.stat().st_mtime)
        for stale in old[:-(_KEEP_CACHES - 1)] if len(old) >= _KEEP_CACHES else []:
            import shutil

            shutil.rmtree(stale, ignore_errors=True)
        os.utime(target)
    except OSError:
        return  # no writable cache directory: numba falls back to its default
    os.environ["NUMBA_CACHE_DIR"] = str(target)


_select_numba_cache()


def __getattr__(name: str):
    if name == "Machine":  # the Python API (emu/api.py), imported when first asked for
        from emu.api import Machine

        return Machine
    raise AttributeError(f"module 'emu' has no attribute {name!r}")
