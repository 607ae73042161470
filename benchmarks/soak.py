"""Soak: a busy Linux guest for a long time, with pyemu's resident memory sampled all along.

    python benchmarks/soak.py [--minutes 60] [--interval 10] [--json soak.json] [--png soak.png]

Debian's 32-bit kernel boots with a busybox initramfs (tests/initramfs.py) whose /init runs a loop
that keeps every part of the machine busy: a new process per applet (fresh code pages: blocks are
translated, invalidated and compiled again, and the block cache fills and flushes), checksums and
compression (hot loops: tier 1), the timer (`sleep`), and a line on COM1 per round. The harness
waits for the first round (the guest has booted: that RSS is the baseline) and then reads the pyemu
process's VmRSS every `--interval` seconds until `--minutes` are up. It ends pyemu with SIGTERM,
which writes `--stats-json`, and reports the RSS curve, its peak over the baseline, the rounds the
guest completed and the block-cache statistics. The promise (issue 14): RSS stays within 10 % of
its value after boot.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.chart import line_chart  # noqa: E402
from tests.initramfs import busybox_initramfs, i386_busybox  # noqa: E402

LIMIT = 1.10  # the peak RSS may be at most this times the RSS after boot
BOOT_TIMEOUT_S = 600
BB = "/bin/busybox"
INIT = f"""\
{BB} mount -t proc proc /proc
{BB} mount -t sysfs sys /sys
i=0
while true; do
  i=$((i + 1))
  {BB} md5sum {BB} > /dev/null
  {BB} dd if=/dev/zero bs=4k count=64 2>/dev/null | {BB} gzip -c | {BB} wc -c > /dev/null
  {BB} ls -lR /sys/kernel > /dev/null 2>&1
  {BB} sort -r /proc/kallsyms | {BB} head -c 2000 > /dev/null
  {BB} sleep 1
  {BB} echo "soak round $i up $({BB} cut -d' ' -f1 /proc/uptime)"
done
"""


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def soak(minutes: float, interval: float, kernel: str, extra: list[str] | None = None) -> dict:
    """Run the soak; returns {samples: [(seconds since boot, RSS KiB, rounds)], baseline_kb, peak_kb,
    ratio, rounds, boot_s, stats}."""
    busybox = i386_busybox()
    with tempfile.TemporaryDirectory() as tmp:
        initrd = Path(tmp) / "initrd.cpio"
        initrd.write_bytes(busybox_initramfs(busybox, INIT))
        stats_path = Path(tmp) / "stats.json"
        args = [sys.executable, "-m", "emu", "boot", "-kernel", kernel, "-initrd", str(initrd), "-append",
                "console=ttyS0 quiet", "-nographic", "-m", "128", "--stats-json", str(stats_path)] + (extra or [])
        t0 = time.monotonic()
        proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)))
        rounds = [0]
        problems: list[str] = []  # kernel warnings, oopses and panics: the guest must stay healthy
        booted = threading.Event()

        def read() -> None:
            for line in proc.stdout:
                if line.startswith(b"soak round "):
                    rounds[0] = int(line.split()[2])
                    booted.set()
                elif any(w in line for w in (b"WARNING:", b"BUG:", b"Oops", b"Kernel panic")):
                    problems.append(line.decode(errors="replace").strip())

        threading.Thread(target=read, daemon=True).start()
        if not booted.wait(BOOT_TIMEOUT_S):
            proc.kill()
            raise SystemExit(f"the guest did not start its first round within {BOOT_TIMEOUT_S} s")
        t_boot = time.monotonic()
        baseline = rss_kb(proc.pid)
        samples = [(0.0, baseline, rounds[0])]
        end = t_boot + minutes * 60
        while time.monotonic() < end and proc.poll() is None:
            time.sleep(min(interval, max(0.0, end - time.monotonic())))
            samples.append((round(time.monotonic() - t_boot, 1), rss_kb(proc.pid), rounds[0]))
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        stats = json.loads(stats_path.read_text()) if stats_path.exists() else {}
    peak = max(s[1] for s in samples)
    return dict(samples=samples, baseline_kb=baseline, peak_kb=peak, ratio=round(peak / baseline, 4),
                rounds=rounds[0], problems=problems, boot_s=round(t_boot - t0, 1), minutes=minutes, stats=stats)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--interval", type=float, default=10.0, help="seconds between RSS samples")
    ap.add_argument("--kernel", default=(sorted(glob.glob("/boot/vmlinuz-*-686*")) or [""])[-1])
    ap.add_argument("--json", type=Path)
    ap.add_argument("--png", type=Path)
    ap.add_argument("--emu-args", default="", help="more pyemu options, e.g. '-accel tcg,tier=0'")
    a = ap.parse_args()
    if not a.kernel or i386_busybox() is None:
        print("needs linux-image-*-686 (i386) and busybox-static (i386)", file=sys.stderr)
        return 2
    r = soak(a.minutes, a.interval, a.kernel, shlex.split(a.emu_args))
    st = r["stats"]
    flat = {k: v for d in st.values() if isinstance(d, dict) for k, v in d.items()} | st
    print(f"booted in {r['boot_s']} s; {r['rounds']} rounds in {a.minutes:g} min; RSS after boot "
          f"{r['baseline_kb'] / 1024:.0f} MiB, peak {r['peak_kb'] / 1024:.0f} MiB ({r['ratio']:.3f}x; "
          f"limit {LIMIT}x)")
    print(f"guest problems: {len(r['problems'])}" + "".join(f"\n  {p}" for p in r["problems"][:5]))
    print("block cache: " + ", ".join(f"{k}={flat[k]}" for k in ("tb_translated", "tb_invalidated", "tb_flushes",
                                                                 "compiled_blocks", "guest_instructions")
                                      if k in flat))
    if a.json:
        a.json.write_text(json.dumps(r, indent=1))
    if a.png:
        xs = [s[0] / 60 for s in r["samples"]]
        ys = [s[1] / 1024 for s in r["samples"]]
        a.png.write_bytes(line_chart(f"pyemu soak: RSS of a busy Linux guest ({a.minutes:g} min)", xs, ys,
                                     "minutes after boot", "RSS MiB",
                                     bands=((r["baseline_kb"] / 1024, "after boot"),
                                            (LIMIT * r["baseline_kb"] / 1024, f"{LIMIT}x"))))
        print(f"chart: {a.png}")
    return 0 if r["ratio"] <= LIMIT and not r["problems"] else 1


if __name__ == "__main__":
    sys.exit(main())
