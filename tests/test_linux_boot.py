"""Debian's 32-bit Linux kernel booted with -kernel/-initrd down to a busybox shell on COM1.

Marked `images` and `slow`; skips unless Debian's linux-image-*-686 (i386) and busybox-static (i386)
are installed: `dpkg --add-architecture i386 && apt-get install linux-image-6.1.0-47-686-unsigned:i386
busybox-static:i386`. The initramfs is written by tests/initramfs.py at test time.
"""

from __future__ import annotations

import glob
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.initramfs import busybox_initramfs, i386_busybox
from tests.test_boot_cli import ROOT, pyemu

pytestmark = [pytest.mark.images, pytest.mark.slow]

KERNELS = sorted(glob.glob("/boot/vmlinuz-*-686*"))
BUSYBOX = i386_busybox()

needs_linux = pytest.mark.skipif(not KERNELS or BUSYBOX is None,
                                 reason="needs Debian's linux-image-*-686 and busybox-static for i386")

INIT = """\
/bin/busybox mount -t proc proc /proc
/bin/busybox echo "pyemu-linux: init running on $(/bin/busybox uname -m)"
exec /bin/busybox sh
"""


class SerialSession:
    """pyemu with -nographic: COM1 is the process's stdin/stdout. Lines are typed only once the
    guest has printed what we wait for, as a person at the terminal would."""

    def __init__(self, *args: str):
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.proc = subprocess.Popen([sys.executable, "-m", "emu", "boot", *args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=env)
        self.out = bytearray()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while chunk := self.proc.stdout.read1(4096):
            self.out += chunk

    def text(self) -> str:
        return self.out.decode(errors="replace")

    def wait_for(self, needle: str, timeout: float, start: int = 0) -> int:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            at = self.text().find(needle, start)
            if at >= 0:
                return at + len(needle)
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"{needle!r} did not appear; output ends:\n{self.text()[-3000:]}")

    def type(self, line: str) -> None:
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def finish(self, timeout: float) -> tuple[int, str]:
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.reader.join(5)
        return rc, self.proc.stderr.read().decode(errors="replace")


@needs_linux
def test_linux_boots_to_a_busybox_shell_that_answers_on_the_serial_port(tmp_path):
    initrd = tmp_path / "initrd.cpio"
    initrd.write_bytes(busybox_initramfs(BUSYBOX, INIT))
    s = SerialSession("-kernel", KERNELS[-1], "-initrd", str(initrd), "-append", "console=ttyS0 quiet",
                      "-nographic", "-no-reboot", "--timeout", "900")
    at = s.wait_for("pyemu-linux: init running on i686", 900)  # COM1 output: the kernel ran our /init
    at = s.wait_for("/ # ", 120, at)  # busybox's prompt
    s.type("echo answer=$((6*7))")  # COM1 input: typed keys reach the shell
    s.wait_for("answer=42", 120, at)
    s.type("/bin/busybox reboot -f")
    rc, err = s.finish(120)
    assert "Traceback" not in err
    assert rc == 0, err  # `reboot -f` resets the PC; -no-reboot turns that into a clean exit


@needs_linux
def test_linux_kernel_log_reaches_the_serial_console(tmp_path):
    """Without `quiet`: the kernel's own banner and its view of our PC (memory from E820, the
    8250 UART, the PIT and the RTC it found)."""
    initrd = tmp_path / "initrd.cpio"
    initrd.write_bytes(busybox_initramfs(BUSYBOX, "exec /bin/busybox reboot -f\n"))
    p = pyemu("-kernel", KERNELS[-1], "-initrd", str(initrd), "-append", "console=ttyS0", "-m", "64",
              "-nographic", "-no-reboot", "--timeout", "600")
    out = p.stdout.decode(errors="replace")
    assert "Linux version" in out
    assert "BIOS-e820" in out
    assert "ttyS0 at I/O 0x3f8 (irq = 4" in out and "16550A" in out
    assert Path(KERNELS[-1]).exists() and p.returncode == 0
