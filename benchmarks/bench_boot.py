"""Boot benchmark: seconds from `pyemu boot` to a Linux shell prompt on COM1, with the run's
statistics (guest instructions, MIPS, block cache, TLB and exits).

    python benchmarks/bench_boot.py [--runs 3] [--kernel /boot/vmlinuz-...-686] [--icount]

Needs Debian's 32-bit kernel (linux-image-*-686, i386) and an i386 busybox-static; the initramfs
is written by tests/initramfs.py. Each run starts a fresh pyemu process (warm numba cache: one
untimed run first pays any compile), waits for the busybox prompt on COM1, types `reboot -f`
(pyemu exits under -no-reboot) and reads `--stats-json`. The median of the runs is printed.
"""

from __future__ import annotations

import argparse
import glob
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import pyemu_env  # noqa: E402
from tests.initramfs import busybox_initramfs, i386_busybox  # noqa: E402

PROMPT = b"/ # "
INIT = "exec /bin/busybox sh\n"
RUN_TIMEOUT_S = 900
REBOOT_WAIT_S = 60  # after `reboot -f`: then the run is stopped as with Ctrl-C (see time_to_prompt)


def boot_once(kernel: str, initrd: Path, icount: bool, stats_path: Path,
              extra_args: list[str] | None = None) -> tuple[float, dict]:
    args = [sys.executable, "-m", "emu", "boot", "-kernel", kernel, "-initrd", str(initrd),
            "-append", "console=ttyS0 quiet", "-nographic", "-no-reboot", "--stats-json", str(stats_path)]
    if icount:
        args.append("-icount")
    args += extra_args or []
    env = pyemu_env()
    t_prompt = time_to_prompt(args, env)
    return t_prompt, json.loads(stats_path.read_text())


def time_to_prompt(args: list[str], env: dict | None = None) -> float:
    """Seconds from starting `args` to the busybox prompt on its stdout; then types `reboot -f` and
    waits for the process to end (it must run with -no-reboot)."""
    t0 = time.monotonic()
    proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            cwd=ROOT, env=env)
    out = bytearray()
    seen = threading.Event()

    def read() -> None:
        while chunk := proc.stdout.read1(4096):
            out.extend(chunk)
            if PROMPT in out:
                seen.set()

    threading.Thread(target=read, daemon=True).start()
    if not seen.wait(RUN_TIMEOUT_S):
        proc.kill()
        raise SystemExit(f"no shell prompt after {RUN_TIMEOUT_S} s; output ends: {bytes(out[-500:])!r}")
    t_prompt = time.monotonic() - t0
    proc.stdin.write(b"/bin/busybox reboot -f\n")
    proc.stdin.flush()
    try:
        proc.wait(REBOOT_WAIT_S)
    except subprocess.TimeoutExpired:
        # Seen about once in 20-70 boots: the guest sits idle and never reads the typed command
        # (an open bug). The time to the prompt stands; stop the run as Ctrl-C would, which
        # still writes the statistics, and say so.
        print(f"bench_boot: no exit {REBOOT_WAIT_S} s after `reboot -f`: stopped with SIGINT", file=sys.stderr)
        proc.send_signal(signal.SIGINT)
        proc.wait(RUN_TIMEOUT_S)
    return t_prompt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--kernel", default=(sorted(glob.glob("/boot/vmlinuz-*-686*")) or [""])[-1])
    ap.add_argument("--icount", action="store_true", help="deterministic virtual time")
    a = ap.parse_args()
    busybox = i386_busybox()
    if not a.kernel or busybox is None:
        print("needs linux-image-*-686 (i386) and busybox-static (i386)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        initrd = Path(tmp) / "initrd.cpio"
        initrd.write_bytes(busybox_initramfs(busybox, INIT))
        stats_path = Path(tmp) / "stats.json"
        boot_once(a.kernel, initrd, a.icount, stats_path)  # untimed: warms the numba cache
        times = []
        for i in range(a.runs):
            t, st = boot_once(a.kernel, initrd, a.icount, stats_path)
            times.append(t)
            print(f"run {i + 1}: shell prompt after {t:.1f} s; {st['guest_instructions'] / 1e6:.0f} M guest "
                  f"instructions in {st['wall_seconds']:.1f} s = {st['mips']:.1f} MIPS")
    print(f"median: {statistics.median(times):.1f} s to the shell prompt ({Path(a.kernel).name}"
          f"{', -icount' if a.icount else ''})")
    keys = ("tb_translated", "tb_invalidated", "tb_flushes", "lookup_hit_rate", "tlb_hit_rate", "tlb_flushes",
            "exits_io_in", "exits_io_out", "exits_mmio_read", "exits_mmio_write", "exits_irq", "exits_hlt",
            "exits_budget", "smc_writes", "exceptions", "interrupts")
    print("last run: " + ", ".join(f"{k}={st[k]}" for k in keys if k in st))
    return 0


if __name__ == "__main__":
    sys.exit(main())
