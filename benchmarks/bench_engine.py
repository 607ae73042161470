"""Engine benchmark: guest MIPS and block-cache figures on a 32-bit integer workload.

    python benchmarks/bench_engine.py [--runs 5] [--paging] [--tier 0|1]

The guest (benchmarks/guest/intloop.asm, assembled bytes below) runs CRC-32, a bubble sort and a
copy loop in flat 32-bit protected mode. Each run resets the CPU and runs the program to its HLT;
the first run also pays for translating the blocks, for compiling the hot ones (tier 1) and, on a
cold numba cache, for compiling the engine: that run is reported separately and left out of the
median. The program is loaded once, so later runs find its blocks translated and compiled. Prints guest MIPS per run,
the median, and the block-cache statistics of the last run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from emu import stats as K  # noqa: E402
from emu.cpu import state as S  # noqa: E402
from emu.cpu.core import CpuCore  # noqa: E402

LOAD = 0x10000
# nasm -f bin benchmarks/guest/intloop.asm (tests/test_benchmarks.py checks these bytes against the source)
INTLOOP = bytes.fromhex(
    "bc00000900bd28000000bf00000200b900100000b83930000069c06d4ec64105393000008807474975efbe00000200b9"
    "00100000baffffffff0fb60631c2bb08000000d1ea730681f22083b8ed4b75f3464975e5f7d2891500000500bf000003"
    "00b90001000089d069c0cd0d010040890783c7044975f1b9ff000000be0000030089cb8b068b560439d0760589168946"
    "0483c6044b75ec4975e2be00000200bf00000400b9000400008b06890783c60483c7044975f34d0f856dfffffff4"
)


def run_once(core: CpuCore, paging: bool) -> tuple[float, int]:
    core.reset()
    core.stats[:] = 0
    core.mem[LOAD:LOAD + len(INTLOOP)] = np.frombuffer(INTLOOP, dtype=np.uint8)  # same bytes: code stays
    core.setup_flat32(paging=paging)
    core.st[S.EIP] = LOAD
    t0 = time.perf_counter()
    reason = core.run()
    elapsed = time.perf_counter() - t0
    if reason != S.EXIT_HLT:
        raise SystemExit(f"benchmark guest stopped with {S.EXIT_REASON_NAMES[reason]} at {core.st[S.EIP]:#x}")
    return elapsed, int(core.stats_dict()["insns"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--paging", action="store_true", help="run with 4 KiB paging on (identity map)")
    ap.add_argument("--tier", type=int, choices=(0, 1), default=1, help="1: compile hot blocks (default)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    core = CpuCore(ram_bytes=32 << 20, tier1_threshold=None if args.tier else 0)
    core.write_phys(LOAD, INTLOOP)
    first, n = run_once(core, args.paging)
    print(f"first run (translation{', cold compile' if first > 5 else ''}): {first:.2f} s, "
          f"{n / first / 1e6:.1f} MIPS (setup {time.perf_counter() - t0 - first:.2f} s)")
    mips = []
    for i in range(args.runs):
        elapsed, n = run_once(core, args.paging)
        mips.append(n / elapsed / 1e6)
        print(f"run {i + 1}: {n} instructions in {elapsed:.3f} s = {mips[-1]:.1f} MIPS")
    d = core.stats_dict()
    lookups = d["lookups"]
    hits = d["lookup_fast_hits"] + d["lookup_slow_hits"] + d["chained"]
    print(f"median: {statistics.median(mips):.1f} MIPS ({'paging on' if args.paging else 'paging off'})")
    print(f"block cache: {lookups} block entries, hit rate {100.0 * hits / max(lookups, 1):.3f} % "
          f"(chained {d['chained']}, fast {d['lookup_fast_hits']}, second way {d['lookup_slow_hits']}, "
          f"misses {d['lookup_misses']}); blocks live {d['tb_live']}, "
          f"avg {d['tb_insns'] / max(d['tb_translated'], 1):.1f} insns/block")
    print(f"TLB: {d['tlb_hits']} hits, {d['tlb_misses']} misses, {d['mem_slow']} slow-path accesses")
    print(f"tier 1: {100.0 * d['compiled_insns'] / max(d['insns'], 1):.1f} % of the instructions compiled, "
          f"{core.stats[K.COMPILED_BLOCKS]} blocks compiled in all ({core.stats[K.COMPILE_NS] / 1e6:.0f} ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
