"""pyemu's benchmarks (`python -m benchmarks`): guest workloads raced against QEMU and Bochs."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def pyemu_env() -> dict[str, str]:
    """The environment pyemu runs in when timed: the checkout on PYTHONPATH, and Python's bytecode
    cache on, as in any normal install (pip writes .pyc files when it installs). A shell that sets
    PYTHONDONTWRITEBYTECODE (as this project's sandbox does) would otherwise recompile pyemu's ~84
    modules from source on every start: 0.17 s of a 0.8 s null run."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env
