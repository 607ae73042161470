"""The built-in demo boot sector: shipped bytes match the source, and it runs."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from bios.demo import demo_floppy, demo_sector

BIOS_DIR = Path(__file__).resolve().parents[1] / "bios"


def test_demo_sector_is_a_boot_sector():
    sector = demo_sector()
    assert len(sector) == 512 and sector[510:] == b"\x55\xaa"
    img = demo_floppy()
    assert img.size == 1440 * 1024 and img.read_sectors(0, 1) == sector


@pytest.mark.skipif(shutil.which("nasm") is None, reason="nasm is not installed")
def test_demo_bin_is_built_from_demo_asm(tmp_path):
    out = tmp_path / "demo.bin"
    subprocess.run(["nasm", "-f", "bin", "-o", str(out), str(BIOS_DIR / "demo.asm")], check=True)
    assert out.read_bytes() == (BIOS_DIR / "demo.bin").read_bytes()


def test_demo_echoes_keys_and_quits_on_escape():
    from emu.display import Frontend
    from emu.machine import Machine, MachineConfig
    from emu.mainloop import MainLoop

    m = Machine(MachineConfig(icount=True, floppy_images=[demo_floppy()]))
    rfd, wfd = os.pipe()
    os.write(wfd, b"Hi there\r\x08!\x1b")
    os.close(wfd)
    try:
        loop = MainLoop(m, Frontend(m, "none", rfd), timeout=60)
        assert loop.run() == 0 and loop.halted_message
    finally:
        os.close(rfd)
    lines = m.vga.screendump_text().splitlines()
    assert any("pyemu demo" in line for line in lines)
    assert "> Hi there" in lines
    assert "!" in lines  # backspace at column 0 then '!'
    assert "Bye." in lines
    assert "Base memory (INT 12h): 639 KiB" in lines
