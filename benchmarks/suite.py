"""The benchmark suite: pyemu against QEMU (TCG) and Bochs on the same guest images.

    python -m benchmarks [--runs 3] [--quick] [--only crc32,sort] [--peers qemu,bochs]
                         [--pyemu-args "-accel tcg,tier=0"] [--json OUT.json] [--png OUT.png]

Workloads are the guests of benchmarks/guests/ (built with nasm, gcc and ld into a cache, or the
checked-in images where no compiler exists) and, when Debian's 686 kernel and an i386 busybox are
installed, a Linux boot to a shell prompt (benchmarks/bench_boot.py). Runs are interleaved (run r of
every emulator on a workload before run r + 1) and each emulator's figure is the median of its runs.
Every run must print the workload's expected `CRC xxxxxxxx` line (benchmarks/guests/expected.json,
from the Python references in benchmarks/reference.py); a wrong or missing checksum fails the cell.
Wall times are whole processes (start to exit), the same measure for the three emulators; pyemu's
own statistics (--stats-json) add guest instructions, MIPS, block-cache hits, the compiled share,
compiles and exits by reason. The `null` workload does no work: its times are each emulator's fixed
cost (process start, BIOS, floppy load), and the `net` ratios are of the times less that cost.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import build, pyemu_env, reference  # noqa: E402

EMULATORS = ("pyemu", "qemu", "bochs")
LINUX = "linux"
CHECKSUM_RE = re.compile(rb"CRC ([0-9a-f]{8})")
DEBUG_EXIT = "isa-debug-exit,iobase=0xf4,iosize=0x04"
TIMEOUT_FULL_S, TIMEOUT_QUICK_S = 600, 120


@dataclass
class Run:
    wall: float | None = None
    checksum: str | None = None
    ok: bool = False
    error: str | None = None
    rc: int | None = None
    stats: dict | None = None


@dataclass
class Cell:
    """One emulator on one workload: its runs, or why it was not run."""

    runs: list[Run] = field(default_factory=list)
    skipped: str | None = None

    def ok_walls(self) -> list[float]:
        return [r.wall for r in self.runs if r.ok and r.wall is not None]

    def median(self) -> float | None:
        walls = self.ok_walls()
        return statistics.median(walls) if walls and len(walls) == len(self.runs) else None

    def status(self) -> str:
        if self.skipped:
            return "n/a"
        bad = [r for r in self.runs if not r.ok]
        if not bad:
            return "ok"
        return bad[0].error or "failed"


# -- the emulators ---------------------------------------------------------------------------------

def pyemu_command(img: Path, stats: Path, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "emu", "boot", "-fda", str(img), "-m", "16", "-nographic", "-no-reboot",
            "-device", DEBUG_EXIT, "--stats-json", str(stats), *extra]


def qemu_command(img: Path) -> list[str]:
    return ["qemu-system-i386", "-accel", "tcg", "-display", "none", "-serial", "stdio", "-device", DEBUG_EXIT,
            "-drive", f"file={img},if=floppy,format=raw", "-m", "16", "-no-reboot"]


# sound: driver=dummy -- without it Debian's bochs 2.7 opens ALSA, and where ALSA has no default device
# its sound thread aborts the process ("buffer overflow detected") before the guest runs.
BOCHSRC = """\
megs: 16
romimage: file={bios}
vgaromimage: file={vgabios}
floppya: 1_44={img}, status=inserted
boot: floppy
cpu: ips=100000000, reset_on_triple_fault=0
clock: sync=none
com1: enabled=1, mode=file, dev={com1}
display_library: {display}
log: {log}
panic: action=fatal
error: action=report
info: action=ignore
debug: action=ignore
port_e9_hack: enabled=1
mouse: enabled=0
sound: driver=dummy
"""


def bochs_files() -> tuple[str, str] | str:
    """(BIOS, VGA BIOS) of an installed Bochs, or the reason there is none."""
    if not shutil.which("bochs"):
        return "not installed (apt-get install bochs bochsbios vgabios)"
    bios = Path("/usr/share/bochs/BIOS-bochs-latest")
    vga = next((p for p in (Path("/usr/share/vgabios/vgabios.bin"), Path("/usr/share/bochs/VGABIOS-lgpl-latest"))
                if p.exists()), None)
    if not bios.exists() or vga is None:
        return "no BIOS images (bochsbios, vgabios)"
    return str(bios), str(vga)


def bochs_display() -> str:
    """A display library that needs no X: Debian's bochs has no 'nogui' plugin, but 'rfb' with no wait."""
    plugins = Path("/usr/lib/x86_64-linux-gnu/bochs/plugins")
    if (plugins / "libbx_nogui.so").exists() or not plugins.exists():
        return "nogui"
    return 'rfb, options="timeout=0"'


def run_process(args: list[str], timeout: float, env: dict | None = None) -> tuple[float, int | None, bytes, str]:
    t0 = time.monotonic()
    try:
        proc = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, env=env, cwd=ROOT)
    except subprocess.TimeoutExpired as exc:
        return time.monotonic() - t0, None, exc.stdout or b"", "timeout"
    wall = time.monotonic() - t0
    return wall, proc.returncode, proc.stdout, proc.stderr.decode(errors="replace")


def check_output(run: Run, out: bytes, expected: str | None, what: str) -> Run:
    m = CHECKSUM_RE.findall(out)
    run.checksum = m[-1].decode() if m else None
    if run.error:
        return run
    if run.checksum is None:
        tail = out[-120:].decode(errors="replace").strip()
        run.error = f"no checksum ({what}{'; output ends ' + repr(tail) if tail else ''})"
    elif expected and run.checksum != expected:
        run.error = f"MISMATCH {run.checksum} != {expected}"
    else:
        run.ok = True
    return run


def run_pyemu(img: Path, expected: str | None, extra: list[str], tmp: Path, timeout: float) -> Run:
    stats_path = tmp / "pyemu-stats.json"
    stats_path.unlink(missing_ok=True)
    env = pyemu_env()
    wall, rc, out, err = run_process(pyemu_command(img, stats_path, extra), timeout, env)
    run = Run(wall=wall, rc=rc)
    if rc is None:
        run.error = "timeout"
    elif rc not in (0, 1):  # isa-debug-exit with 0 makes status 1
        last = err.strip().splitlines()[-1:] or [f"status {rc}"]
        run.error = f"pyemu: {last[0][:100]}"
    if stats_path.exists():
        run.stats = json.loads(stats_path.read_text())
    last = (err.strip().splitlines() or [""])[-1][:100]
    return check_output(run, out, expected, f"pyemu status {rc}{': ' + last if last else ''}")


def run_qemu(img: Path, expected: str | None, tmp: Path, timeout: float) -> Run:
    wall, rc, out, err = run_process(qemu_command(img), timeout)
    run = Run(wall=wall, rc=rc, error="timeout" if rc is None else None)
    return check_output(run, out, expected, f"qemu status {rc}: {err.strip()[-100:]}")


def run_bochs(img: Path, expected: str | None, tmp: Path, timeout: float) -> Run:
    files = bochs_files()
    assert not isinstance(files, str)
    com1, log, rc_file, cfg = tmp / "bochs-com1.txt", tmp / "bochs.log", tmp / "bochs-debugger.rc", tmp / "bochsrc"
    com1.unlink(missing_ok=True)
    cfg.write_text(BOCHSRC.format(bios=files[0], vgabios=files[1], img=img, com1=com1, log=log,
                                  display=bochs_display()))
    rc_file.write_text("c\nquit\n")  # Debian's bochs starts in its debugger: continue
    wall, rc, out, err = run_process(["bochs", "-q", "-f", str(cfg), "-rc", str(rc_file)], timeout)
    run = Run(wall=wall, rc=rc, error="timeout" if rc is None else None)
    serial = com1.read_bytes() if com1.exists() else b""
    if rc is not None and b"Shutdown port: shutdown requested" not in out + err.encode():
        run.error = "bochs did not shut down: " + (out + err.encode())[-100:].decode(errors="replace").strip()
    return check_output(run, serial, expected, f"bochs status {rc}")


# -- the Linux boot --------------------------------------------------------------------------------

def linux_setup(tmp: Path) -> tuple[str, Path] | str:
    """(kernel, initrd) for the Linux boot workload, or why it is skipped."""
    import glob

    from tests.initramfs import busybox_initramfs, i386_busybox

    kernels = sorted(glob.glob("/boot/vmlinuz-*-686*"))
    busybox = i386_busybox()
    if not kernels or busybox is None:
        return "needs linux-image-*-686 (i386) and busybox-static (i386)"
    from benchmarks.bench_boot import INIT

    initrd = tmp / "initrd.cpio"
    initrd.write_bytes(busybox_initramfs(busybox, INIT))
    return kernels[-1], initrd


def run_linux(emu: str, setup: tuple[str, Path], extra: list[str], tmp: Path) -> Run:
    from benchmarks import bench_boot

    kernel, initrd = setup
    try:
        if emu == "pyemu":
            stats_path = tmp / "linux-stats.json"
            wall, stats = bench_boot.boot_once(kernel, str(initrd), False, stats_path, extra)
            return Run(wall=wall, ok=True, stats=stats, checksum="prompt")
        args = ["qemu-system-i386", "-accel", "tcg", "-kernel", kernel, "-initrd", str(initrd),
                "-append", "console=ttyS0 quiet", "-nographic", "-no-reboot"]
        return Run(wall=bench_boot.time_to_prompt(args), ok=True, checksum="prompt")
    except SystemExit as exc:
        return Run(error=str(exc)[:100])


# -- the suite -------------------------------------------------------------------------------------

@dataclass
class Workload:
    name: str
    image: Path | None = None
    origin: str = ""
    expected: str | None = None
    cells: dict[str, Cell] = field(default_factory=dict)
    skipped: str | None = None
    linux: tuple[str, Path] | str | None = None


def pyemu_figures(stats: dict | None) -> dict:
    """The statistics the table shows, None where pyemu does not report them (yet)."""
    if not stats:
        return {}
    insns = stats.get("guest_instructions", stats.get("insns"))
    lookups = stats.get("lookups")
    hit = stats.get("lookup_hit_rate")
    if hit is None and lookups:
        hit = 1 - stats.get("lookup_misses", 0) / lookups
    compiled = stats.get("compiled_insns")
    compile_ms = stats.get("compile_ms")
    if compile_ms is None and "compile_ns" in stats:
        compile_ms = stats["compile_ns"] / 1e6
    exits = {k[len("exits_"):]: v for k, v in stats.items() if k.startswith("exits_") and v}
    return {
        "insns": insns,
        "guest_seconds": stats.get("wall_seconds"),
        "mips": stats.get("mips"),
        "hit_rate": hit,
        "compiled_share": compiled / insns if compiled is not None and insns else None,
        "compiled_blocks": stats.get("compiled_blocks"),
        "compile_ms": compile_ms,
        "tier1_entries": stats.get("tier1_entries"),
        "exits": sum(exits.values()) if any(k.startswith("exits_") for k in stats) else None,
        "exits_by_reason": exits,
        "tb_translated": stats.get("tb_translated"),
        "tb_invalidated": stats.get("tb_invalidated"),
    }


def _fmt(v, spec: str = "", none: str = "-") -> str:
    return none if v is None else format(v, spec)


def _insns(n: int | None) -> str:
    if n is None:
        return "-"
    if n >= 1e9:
        return f"{n / 1e9:.2f}G"
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.0f}K"


def ratios(w: Workload, base: Workload | None = None) -> tuple[float | None, float | None]:
    """(pyemu / QEMU, Bochs / pyemu) of the median wall times; with `base` (the null workload), of the
    times less each emulator's fixed cost."""

    def t(emu: str) -> float | None:
        m = w.cells[emu].median() if emu in w.cells else None
        if m is None or base is None:
            return m
        m0 = base.cells[emu].median() if emu in base.cells else None
        return m - m0 if m0 is not None and m - m0 > 0.01 else None

    p, q, b = t("pyemu"), t("qemu"), t("bochs")
    return (p / q if p and q else None), (b / p if p and b else None)


def null_workload(workloads: list[Workload]) -> Workload | None:
    return next((w for w in workloads if w.name == "null" and not w.skipped), None)


def cell_text(w: Workload, emu: str) -> str:
    c = w.cells.get(emu)
    if c is None:
        return "-"
    if c.skipped:
        return "n/a"
    m = c.median()
    if m is not None:
        return f"{m:.2f}"
    st = c.status()
    return "MISMATCH" if st.startswith("MISMATCH") else ("timeout" if st == "timeout" else "FAIL")


def table(workloads: list[Workload]) -> str:
    head = ["workload", "insns", "pyemu s", "guest s", "MIPS", "hit %", "compiled %", "compiles", "compile ms",
            "exits", "qemu s", "bochs s", "pyemu/qemu", "bochs/pyemu", "net p/q", "net b/p"]
    base = null_workload(workloads)
    rows = []
    for w in workloads:
        if w.skipped:
            rows.append([w.name, f"skipped: {w.skipped}"])
            continue
        pc = w.cells["pyemu"]
        last = next((r.stats for r in reversed(pc.runs) if r.stats), None)
        f = pyemu_figures(last)
        mips = [r.stats.get("mips") for r in pc.runs if r.ok and r.stats and r.stats.get("mips")]
        pq, bp = ratios(w)
        npq, nbp = ratios(w, base) if base is not None and w is not base else (None, None)
        rows.append([
            w.name, _insns(f.get("insns")), cell_text(w, "pyemu"), _fmt(f.get("guest_seconds"), ".2f"),
            _fmt(statistics.median(mips) if mips else None, ".1f"),
            _fmt(None if f.get("hit_rate") is None else 100 * f["hit_rate"], ".2f"),
            _fmt(None if f.get("compiled_share") is None else 100 * f["compiled_share"], ".1f"),
            _fmt(f.get("compiled_blocks")), _fmt(f.get("compile_ms"), ".1f"), _fmt(f.get("exits")),
            cell_text(w, "qemu"), cell_text(w, "bochs"), _fmt(pq, ".1f", "-") + ("x" if pq else ""),
            _fmt(bp, ".2f", "-") + ("x" if bp else ""), _fmt(npq, ".1f", "-") + ("x" if npq else ""),
            _fmt(nbp, ".2f", "-") + ("x" if nbp else ""),
        ])
    full_rows = [r for r in rows if len(r) == len(head)]
    widths = [max(len(head[i]), *(len(r[i]) for r in full_rows)) for i in range(len(head))]
    lines = ["  ".join(h.rjust(widths[i]) if i else h.ljust(widths[i]) for i, h in enumerate(head))]
    lines.append("  ".join("-" * wd for wd in widths))
    for r in rows:
        if len(r) == 2:
            lines.append(f"{r[0].ljust(widths[0])}  {r[1]}")
        else:
            lines.append("  ".join(c.rjust(widths[i]) if i else c.ljust(widths[i]) for i, c in enumerate(r)))
    return "\n".join(lines)


def notes(workloads: list[Workload]) -> list[str]:
    out = []
    for w in workloads:
        if w.skipped:
            continue
        for emu, c in w.cells.items():
            if c.skipped:
                continue
            for i, r in enumerate(c.runs):
                if not r.ok:
                    out.append(f"{w.name}: {emu} run {i + 1}: {r.error}")
        sums = {emu: {r.checksum for r in c.runs if r.checksum} for emu, c in w.cells.items() if not c.skipped}
        seen = set().union(*sums.values()) if sums else set()
        if len(seen) > 1:
            out.append(f"{w.name}: the emulators disagree: " + ", ".join(f"{e} {sorted(s)}" for e, s in sums.items()))
    skipped = {emu: c.skipped for w in workloads if not w.skipped for emu, c in w.cells.items() if c.skipped}
    for emu, why in skipped.items():
        out.append(f"{emu}: {why}")
    return out


def exits_lines(workloads: list[Workload]) -> list[str]:
    out = []
    for w in workloads:
        if w.skipped or "pyemu" not in w.cells:
            continue
        last = next((r.stats for r in reversed(w.cells["pyemu"].runs) if r.stats), None)
        ex = pyemu_figures(last).get("exits_by_reason") or {}
        if ex:
            out.append(f"{w.name}: " + ", ".join(f"{k} {v}" for k, v in sorted(ex.items(), key=lambda kv: -kv[1])))
    return out


def to_json(workloads: list[Workload], meta: dict) -> dict:
    def run_d(r: Run) -> dict:
        return {"wall_s": r.wall, "ok": r.ok, "checksum": r.checksum, "error": r.error, "status": r.rc,
                "stats": r.stats}

    out = []
    base = null_workload(workloads)
    for w in workloads:
        pq, bp = ratios(w) if not w.skipped else (None, None)
        npq, nbp = ratios(w, base) if not w.skipped and base is not None and w is not base else (None, None)
        last = None
        if "pyemu" in w.cells:
            last = next((r.stats for r in reversed(w.cells["pyemu"].runs) if r.stats), None)
        out.append({
            "name": w.name, "image": str(w.image) if w.image else None, "image_origin": w.origin,
            "expected": w.expected, "skipped": w.skipped,
            "pyemu": pyemu_figures(last),
            "emulators": {e: {"median_wall_s": c.median(), "status": c.status(), "skipped": c.skipped,
                              "runs": [run_d(r) for r in c.runs]} for e, c in w.cells.items()},
            "pyemu_over_qemu": pq, "bochs_over_pyemu": bp,
            "net_pyemu_over_qemu": npq, "net_bochs_over_pyemu": nbp,
        })
    return {"meta": meta, "workloads": out}


def versions() -> dict:
    def first_line(args: list[str]) -> str | None:
        try:
            p = subprocess.run(args, capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired):
            return None
        text = (p.stdout + p.stderr).strip()
        return text.splitlines()[0] if text else None

    git = first_line(["git", "-C", str(ROOT), "describe", "--always", "--dirty"])
    bochs = None
    if shutil.which("bochs"):
        p = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "bochs"], capture_output=True, text=True)
        bochs = f"bochs {p.stdout.strip()}" if p.returncode == 0 else "bochs"
    return {"pyemu": git, "qemu": first_line(["qemu-system-i386", "--version"]) if shutil.which(
        "qemu-system-i386") else None, "bochs": bochs, "python": platform.python_version(),
        "host": platform.node(), "cpus": os.cpu_count()}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3, help="runs per emulator and workload (median; default 3)")
    ap.add_argument("--quick", action="store_true", help="the scaled-down images (about 10x less work)")
    ap.add_argument("--only", default="", help=f"comma-separated workloads: {','.join(build.WORKLOADS)},{LINUX}")
    ap.add_argument("--peers", default="qemu,bochs", help="emulators to race against pyemu: qemu,bochs or none")
    ap.add_argument("--pyemu-args", default="", help="extra pyemu arguments, passed through (e.g. -accel tcg,tier=0)")
    ap.add_argument("--json", type=Path, help="write every run and statistic as JSON")
    ap.add_argument("--png", type=Path, help="write a bar chart of the wall-time ratios")
    ap.add_argument("--prebuilt", action="store_true", help="use the checked-in images, do not build")
    ap.add_argument("--cache-dir", type=Path, default=None, help=f"default {build.default_cache_dir()}")
    ap.add_argument("--timeout", type=float, default=None, help="seconds per run")
    ap.add_argument("--no-warmup", action="store_true", help="skip pyemu's untimed first run")
    a = ap.parse_args(argv)
    names = [n for n in a.only.split(",") if n] or [*build.WORKLOADS, LINUX]
    unknown = [n for n in names if n not in (*build.WORKLOADS, LINUX)]
    if unknown:
        ap.error(f"unknown workload {', '.join(unknown)}")
    peers = [p for p in a.peers.split(",") if p and p != "none"]
    if any(p not in ("qemu", "bochs") for p in peers):
        ap.error("--peers takes qemu, bochs or none")
    if a.runs < 1:
        ap.error("--runs must be at least 1")
    a.names, a.peer_list = names, peers
    return a


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    extra = shlex.split(a.pyemu_args)
    timeout = a.timeout or (TIMEOUT_QUICK_S if a.quick else TIMEOUT_FULL_S)
    scale = "quick" if a.quick else "full"
    expected = reference.expected()
    emus = ["pyemu", *a.peer_list]
    peer_skip: dict[str, str] = {}
    if "qemu" in emus and not shutil.which("qemu-system-i386"):
        peer_skip["qemu"] = "not installed (qemu-system-x86)"
    if "bochs" in emus and isinstance(bochs_files(), str):
        peer_skip["bochs"] = bochs_files()
    with tempfile.TemporaryDirectory(prefix="pyemu-bench-") as tmpname:
        tmp = Path(tmpname)
        workloads = []
        for name in a.names:
            w = Workload(name)
            if name == LINUX:
                setup = linux_setup(tmp)
                if isinstance(setup, str):
                    w.skipped = setup
                w.linux = setup
            else:
                try:
                    w.image, w.origin = build.image(name, a.quick, a.cache_dir, a.prebuilt)
                except (build.BuildError, OSError) as exc:
                    w.skipped = f"no image: {exc}"
                w.expected = expected.get(name, {}).get(scale)
            for emu in emus:
                why = peer_skip.get(emu) or ("no -kernel loader in Bochs" if name == LINUX and emu == "bochs"
                                             else None)
                w.cells[emu] = Cell(skipped=why)
            workloads.append(w)
        live = [w for w in workloads if not w.skipped]
        print(f"pyemu benchmark suite: {len(live)} workloads ({scale} scale), {a.runs} run(s) each, "
              f"emulators: {', '.join(e for e in emus if e not in peer_skip)}"
              + (f", pyemu args: {a.pyemu_args}" if extra else ""), flush=True)
        if not a.no_warmup and live:
            small = next((w for w in live if w.image), None)
            if small:  # loads (or compiles) the numba cache before anything is timed
                t0 = time.monotonic()
                run_pyemu(build.image(small.name, True, a.cache_dir, a.prebuilt)[0], None, extra, tmp, 3600)
                print(f"warm-up: pyemu {time.monotonic() - t0:.1f} s (untimed)", flush=True)
        for r in range(a.runs):
            for w in live:
                for emu in emus:
                    cell = w.cells[emu]
                    if cell.skipped:
                        continue
                    if w.name == LINUX:
                        run = run_linux(emu, w.linux, extra, tmp)
                    elif emu == "pyemu":
                        run = run_pyemu(w.image, w.expected, extra, tmp, timeout)
                    elif emu == "qemu":
                        run = run_qemu(w.image, w.expected, tmp, timeout)
                    else:
                        run = run_bochs(w.image, w.expected, tmp, timeout)
                    cell.runs.append(run)
                    state = f"{run.wall:.2f} s" if run.ok else f"FAILED: {run.error}"
                    print(f"run {r + 1}/{a.runs} {w.name:8} {emu:6} {state}"
                          + (f"  CRC {run.checksum}" if run.ok and run.checksum != "prompt" else ""), flush=True)
    print()
    print(table(workloads))
    ex = exits_lines(workloads)
    if ex:
        print("\npyemu exits by reason (last run):")
        print("\n".join("  " + line for line in ex))
    problems = notes(workloads)
    if problems:
        print("\nnotes:")
        print("\n".join("  " + line for line in problems))
    meta = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "scale": scale,
            "runs": a.runs, "pyemu_args": a.pyemu_args, "peers": a.peer_list, "versions": versions(),
            "commands": {"pyemu": pyemu_command(Path("IMG"), Path("STATS.json"), extra),
                         "qemu": qemu_command(Path("IMG")), "bochsrc": BOCHSRC}}
    if a.json:
        a.json.write_text(json.dumps(to_json(workloads, meta), indent=1) + "\n")
        print(f"\nJSON: {a.json}")
    if a.png:
        from benchmarks.chart import bar_chart

        charted = [w for w in workloads if not w.skipped]
        pq = [ratios(w)[0] for w in charted]
        pb = [(lambda p, b: p / b if p and b else None)(w.cells["pyemu"].median(),
                                                         w.cells["bochs"].median() if "bochs" in w.cells else None)
              for w in charted]
        series = {"pyemu / QEMU": pq}
        if "bochs" in emus:
            series["pyemu / Bochs"] = pb
        a.png.write_bytes(bar_chart(f"pyemu wall time / peer wall time ({scale} scale, median of {a.runs})",
                                    [w.name for w in charted], series, "wall-time ratio (log)"))
        print(f"chart: {a.png}")
    failed = any(not r.ok for w in workloads for c in w.cells.values() for r in c.runs)
    return 1 if failed else 0
