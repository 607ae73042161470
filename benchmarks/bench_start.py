"""Start-up benchmark: a cold first start (empty numba cache) and a warm one, to the guest's exit.

    python benchmarks/bench_start.py [--runs 3] [--warm-runs 5]

Each cold run gives pyemu a fresh, empty NUMBA_CACHE_DIR, so it compiles the engine as the first
start after an install does (emu/enginebuild.py: two processes on a cold cache), then boots the
`null` benchmark guest (boot sector, 32-bit payload, checksum on COM1, isa-debug-exit). The wall
time to the process's exit bounds the time to the guest's first instruction from above. Warm runs
reuse the last cold run's cache. Prints every run, the medians and the compile line pyemu printed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import pyemu_env  # noqa: E402

IMAGE = ROOT / "benchmarks" / "guests" / "img" / "null.img"
DEBUG_EXIT = "isa-debug-exit,iobase=0xf4,iosize=0x04"


def one_start(cache: Path) -> tuple[float, str]:
    env = dict(pyemu_env(), NUMBA_CACHE_DIR=str(cache))
    args = [sys.executable, "-m", "emu", "boot", "-fda", str(IMAGE), "-snapshot", "-m", "16", "-nographic",
            "-no-reboot", "-device", DEBUG_EXIT]
    t0 = time.monotonic()
    proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    wall = time.monotonic() - t0
    if "CRC 00000000" not in proc.stdout:
        raise SystemExit(f"the null guest did not finish: {proc.stderr.strip()[-300:]}")
    notice = [line for line in proc.stderr.splitlines() if "done in" in line]
    return wall, notice[-1].strip() if notice else ""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3, help="cold starts (each compiles the engine)")
    ap.add_argument("--warm-runs", type=int, default=5)
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="pyemu-start-"))
    cold, warm = [], []
    try:
        for i in range(args.runs):
            cache = base / f"cold{i}"
            wall, notice = one_start(cache)
            cold.append(wall)
            print(f"cold {i + 1}/{args.runs}: {wall:6.1f} s   {notice}", flush=True)
            if i + 1 < args.runs:
                shutil.rmtree(cache, ignore_errors=True)
        for i in range(args.warm_runs):
            wall, _ = one_start(base / f"cold{args.runs - 1}")
            warm.append(wall)
            print(f"warm {i + 1}/{args.warm_runs}: {wall:6.2f} s", flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(f"median cold start: {statistics.median(cold):.1f} s ({len(cold)} runs, {os.cpu_count()} CPUs)")
    if warm:
        print(f"median warm start: {statistics.median(warm):.2f} s ({len(warm)} runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
