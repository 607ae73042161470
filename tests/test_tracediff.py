"""-one-insn-per-tb traces in QEMU's layout and `pyemu trace-diff` (emu/tracediff.py), against QEMU itself."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from emu import tracediff as T

GUEST = Path(__file__).parent / "guests" / "tracediff_boot.asm"
SETUP_INSNS = 19  # the guest's first instructions, which set every register the BIOS left


def record(pc: int, eax: int, efl: int = 0x2) -> list[str]:
    return [f"Trace 0: 0x7f0000001000 [00000000/{pc:08x}/00000040/ff000201] ",
            f"EAX={eax:08x} EBX=00000000 ECX=00000000 EDX=00000000",
            "ESI=00000000 EDI=00000000 EBP=00000000 ESP=00007c00",
            f"EIP={pc:08x} EFL={efl:08x} [-------] CPL=0 II=0 A20=1 SMM=0 HLT=0",
            "CS =0000 00000000 0000ffff 00009b00"]


def run_diff(a, b, **kw) -> tuple[int, str]:
    import io

    out = io.StringIO()
    rc = T.compare(T.parse(a), T.parse(b), out=out, **kw)
    return rc, out.getvalue()


def test_identical_after_alignment():
    bios = record(0xFE05B, 1) + record(0xFE060, 2)
    body = record(0x7C00, 5) + record(0x7C02, 6) + record(0x7C04, 7)
    rc, text = run_diff(bios + body, body)
    assert rc == 0 and "identical over 3 instructions" in text, text


def test_first_divergence_and_ignored_flags():
    a = record(0x7C00, 5) + record(0x7C02, 6, efl=0x46) + record(0x7C04, 8)
    b = record(0x7C00, 5) + record(0x7C02, 6, efl=0x47) + record(0x7C04, 9)
    rc, text = run_diff(a, b, start=0x7C00, code_at=lambda pc: bytes.fromhex("01d8"))
    assert rc == 1 and "DIVERGED at instruction 1" in text and "differs: EFL" in text, text
    assert "00007c00: 01 d8" in text and "add ax, bx" in text
    rc, text = run_diff(a, b, start=0x7C00, ignore_flags=1)
    assert rc == 1 and "DIVERGED at instruction 2" in text and "differs: EAX" in text, text


def test_bios_resync_adopts_what_excluded_code_returned_and_reports_it():
    """A differs from B in EAX after a BIOS call (excluded): adopted with --bios-resync, while it lasts."""
    a = record(0x7C00, 5) + record(0xF0000, 5) + record(0x7C02, 0x1234) + record(0x7C04, 0x1235) + record(0x7C06, 1)
    b = record(0x7C00, 5) + record(0xF0100, 5) + record(0x7C02, 0x2234) + record(0x7C04, 0x2235) + record(0x7C06, 1)
    recs = [T.select(T.parse(x), excludes=[(0xF0000, 0x100000)]) for x in (a, b)]
    import io

    out = io.StringIO()
    assert T.compare(*recs, start=0x7C00, out=out) == 1 and "differs: EAX" in out.getvalue()
    out = io.StringIO()
    assert T.compare(*recs, start=0x7C00, out=out, resync=T.Resync(bios=True)) == 0, out.getvalue()
    text = out.getvalue()
    assert "after BIOS code: EAX 00001234/00002234 adopted" in text and "1 BIOS-returned differences" in text
    # a later, different difference in the same register still counts
    b2 = b[:-5] + record(0x7C06, 2)
    out = io.StringIO()
    rc = T.compare(recs[0], T.select(T.parse(b2), excludes=[(0xF0000, 0x100000)]), start=0x7C00, out=out,
                   resync=T.Resync(bios=True))
    assert rc == 1 and "DIVERGED at instruction 3" in out.getvalue()


def test_bios_resync_adopts_interrupt_vectors_read_from_the_ivt():
    """F000:FF53 (SeaBIOS's IRET) against F000:10E0 (a pyemu ROM stub): both far pointers into the BIOS."""
    a = record(0x7C00, 0x10) + record(0x7C04, 0xF000FF53) + record(0x7C08, 0x12345678)
    b = record(0x7C00, 0x10) + record(0x7C04, 0xF00010E0) + record(0x7C08, 0x12345678)
    rc, text = run_diff(a, b, start=0x7C00, resync=T.Resync(bios=True, pointers_into=[(0xF0000, 0x100000)]))
    assert rc == 0 and "BIOS far pointers: EAX f000ff53/f00010e0 adopted" in text, text
    c = record(0x7C00, 0x10) + record(0x7C04, 0x00001234) + record(0x7C08, 0x12345678)
    rc, text = run_diff(a, c, start=0x7C00, resync=T.Resync(bios=True, pointers_into=[(0xF0000, 0x100000)]))
    assert rc == 1


def test_resync_window_skips_an_interrupt_taken_at_another_instruction():
    body = [record(0x7C00 + 2 * i, i) for i in range(6)]
    irq = record(0x3A20, 99) + record(0x3A22, 98)
    a = sum(body[:2] + [irq] + body[2:], [])
    b = sum(body[:4] + [irq] + body[4:], [])
    rc, text = run_diff(a, b, start=0x7C00)
    assert rc == 1 and "differs: PC" in text
    rc, text = run_diff(a, b, start=0x7C00, resync=T.Resync(window=10))
    assert rc == 0 and "identical over 6 instructions" in text, text
    assert "2 interrupt stretches skipped (2 records of A, 2 of B)" in text


@pytest.mark.skipif(shutil.which("qemu-system-i386") is None or shutil.which("nasm") is None,
                    reason="needs qemu-system-i386 and nasm")
def test_pyemu_trace_matches_qemu_from_0x7c00(tmp_path):
    import os
    import sys

    img = tmp_path / "boot.img"
    subprocess.run(["nasm", "-f", "bin", "-o", str(img), str(GUEST)], check=True)
    with open(img, "ab") as fh:
        fh.truncate(1474560)
    q, p = tmp_path / "q.log", tmp_path / "p.log"
    dev = ["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]
    subprocess.run(["qemu-system-i386", "-d", "exec,cpu,nochain", "-singlestep", "-dfilter", "0x7c00..0x7e00",
                    "-D", str(q), "-display", "none", "-drive", f"file={img},format=raw,if=floppy", *dev],
                   timeout=120, capture_output=True)
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(root))
    subprocess.run([sys.executable, "-m", "emu", "boot", "-d", "exec,cpu,nochain", "-one-insn-per-tb", "-D", str(p),
                    "-display", "none", "-fda", str(img), *dev], timeout=600, capture_output=True, env=env)
    # 0x7c01: pyemu may take a timer interrupt before the `cli` at 0x7c00 (its BIOS leaves IF set with
    # IRQ 0 pending); --range drops the handler, the alignment point after it drops the repeated 0x7c00
    proc = subprocess.run([sys.executable, "-m", "emu", "trace-diff", str(q), str(p), "--start", "0x7c01",
                           "--range", "0x7c00..0x7e00", "--skip", str(SETUP_INSNS - 1), "--image", str(img)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "identical over" in proc.stdout
    assert int(proc.stdout.split("identical over ")[1].split()[0]) > 700


SYSLINUX_TOOLS = ("qemu-system-i386", "syslinux", "mkfs.fat", "mcopy")
BIOS_CODE = "0xa0000..0x100000"  # SeaBIOS/SMM and pyemu's ROM stubs + VGA ROM: left out of both logs
# SeaBIOS's POST copies its 32-bit code to the top of RAM (0x6fe0000 with 128 MiB): -dfilter drops it too
QEMU_DFILTER = "0..0x9ffff,0x100000..0x6efffff"


def _log_until(cmd, log: Path, size: int, timeout: float, env=None) -> None:
    """Runs `cmd` until its log holds `size` bytes (or it ends, or `timeout`), then stops it."""
    import time

    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        end = time.monotonic() + timeout
        while proc.poll() is None and time.monotonic() < end:
            if log.exists() and log.stat().st_size >= size:
                break
            time.sleep(0.5)
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.slow  # about a minute and a half; 4 x 150 MB of logs in tmp_path
@pytest.mark.skipif(any(shutil.which(t) is None for t in SYSLINUX_TOOLS),
                    reason="needs qemu-system-i386, syslinux, dosfstools and mtools")
def test_syslinux_floppy_boot_matches_qemu_for_100000_instructions(tmp_path):
    """A real boot (README "Traces and lockstep"): SYSLINUX 6 from its boot sector through its 16-bit
    loader into its 32-bit core, compared with QEMU's SeaBIOS run outside the two BIOSes."""
    import os
    import sys

    img = tmp_path / "syslinux.img"
    subprocess.run(["mkfs.fat", "-i", "12345678", "-C", str(img), "1440"], check=True, capture_output=True)
    subprocess.run(["syslinux", "--install", str(img)], check=True, capture_output=True)
    cfg = tmp_path / "syslinux.cfg"
    cfg.write_text("PROMPT 1\nTIMEOUT 0\nSAY Hello from SYSLINUX\n")
    subprocess.run(["mcopy", "-i", str(img), str(cfg), "::syslinux.cfg"], check=True, capture_output=True)
    qimg = tmp_path / "qemu.img"  # QEMU locks its image
    qimg.write_bytes(img.read_bytes())
    q, p = tmp_path / "q.log", tmp_path / "p.log"
    size = 150 << 20  # about 170,000 records each: enough for 100,000 compared after the BIOS and interrupts
    _log_until(["qemu-system-i386", "-d", "exec,cpu,nochain", "-singlestep", "-dfilter", QEMU_DFILTER, "-D", str(q),
                "-display", "none", "-m", "128", "-nic", "none", "-drive", f"file={qimg},format=raw,if=floppy"],
               q, size, 120)
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(root))
    _log_until([sys.executable, "-m", "emu", "boot", "-d", "exec,cpu,nochain", "-one-insn-per-tb", "-D", str(p),
                "-display", "none", "-m", "128", "-fda", str(img)], p, size, 600, env=env)
    proc = subprocess.run([sys.executable, "-m", "emu", "trace-diff", str(q), str(p), "--start", "0x7c00",
                           "--exclude", BIOS_CODE, "--bios-resync", "--adopt-after", "0x7c76",
                           "--resync-window", "5000", "--limit", "100000"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "identical over 100000 instructions" in proc.stdout, proc.stdout
