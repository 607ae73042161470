"""`pyemu fuzz --boundscheck`: the engine built with numba's bounds checks, in a cache of its own, so
that an array index out of range during fuzzing raises IndexError (a finding) instead of reading or
writing outside the array."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHOW = ("import os, sys; from emu.fuzz.campaign import use_boundscheck; use_boundscheck(); "
        "import numba.core.config as c; print(os.environ['NUMBA_CACHE_DIR'], c.BOUNDSCHECK)")


def _python(code: str, **env) -> str:
    e = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "NUMBA_BOUNDSCHECK")}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=dict(e, **env), capture_output=True,
                          text=True, check=True).stdout.split()


def test_the_bounds_checked_engine_has_its_own_cache_and_numba_checks_on():
    plain = _python("import os, emu; print(os.environ['NUMBA_CACHE_DIR'])")[0]
    checked, on = _python(SHOW)
    assert checked != plain and Path(checked).parent == Path(plain).parent
    assert on in ("1", "True")  # numba read NUMBA_BOUNDSCHECK: every njit function checks its indices


@pytest.mark.slow  # the first run compiles the checked engine (minutes)
def test_a_bounds_checked_campaign_finds_nothing(tmp_path):
    p = subprocess.run([sys.executable, "-m", "emu", "fuzz", "--boundscheck", "--programs", "500", "--workers", "0",
                        "--budget", "5000", "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                       timeout=1800)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert "500 programs" in p.stdout and "0 findings" in p.stdout
