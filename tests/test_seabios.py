"""SeaBIOS (Debian's seabios package) as `-bios`: it finds SeaVGABIOS through the PCI VGA's expansion
ROM BAR, runs it, and shows its own screen, as on QEMU with `-vga std`.

Marked `images`; skipped without /usr/share/seabios. Runs use `-icount` with sleep=off, so SeaBIOS's
2.5 s boot-menu wait passes in virtual time only.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cpu.guestasm import needs_nasm
from tests.test_boot_cli import pyemu
from tests.test_machine import boot_sector

SEABIOS = Path("/usr/share/seabios/bios.bin")
VGA_ROM = SEABIOS.parent / "vgabios-stdvga.bin"
DEBUG_PORT = 0x402  # SeaBIOS's log port on QEMU (it checks that a read returns E9h)
DEBUGCON_READBACK = 0xE9

pytestmark = [pytest.mark.images,
              pytest.mark.skipif(not (SEABIOS.exists() and VGA_ROM.exists()), reason="needs seabios")]


def run_until_log(text: str, limit: float = 300.0, icount: bool = True):
    """Boot SeaBIOS with no drives in-process until its log (port 402h) says `text` (it prints each
    character to the screen and then to the log)."""
    from emu.machine import Machine, MachineConfig
    from emu.mainloop import MainLoop

    m = Machine(MachineConfig(ram_mb=32, bios_file=str(SEABIOS), icount=icount, icount_sleep=False))
    log = bytearray()

    def write(port: int, size: int, value: int) -> None:
        log.append(value & 0xFF)
        if text.encode() in log[-len(text) - 1:]:
            m.request_exit(0)

    m.bus.register(DEBUG_PORT, 1, lambda port, size: DEBUGCON_READBACK, write, owner="test")
    try:
        status = MainLoop(m, timeout=limit).run()
    finally:
        m.close()
    return status, log.decode("latin-1"), m.vga.screendump_text()


def test_seabios_screen_without_drives():
    status, log, screen = run_until_log("No bootable device.  Retrying in 60 seconds.\n")
    assert status == 0, log[-2000:]
    assert "Running option rom at c000:0003" in log
    assert "Start SeaVGABIOS" in log and "VBE DISPI: bdf 00:02.0, bar 0" in log
    assert screen.startswith("SeaBIOS (version ")
    assert "Press ESC for boot menu." in screen
    assert "No bootable device.  Retrying in 60 seconds." in screen


def test_seabios_measures_a_1_ghz_tsc_in_host_time():
    """SeaBIOS times its floppy and disk waits with the TSC, calibrated against PIT channel 2 over
    2,048 PIT ticks while polling port 61h. pyemu's TSC is 1 GHz of guest time: the count must come
    out near 1,000 MHz whatever the loop's speed (an instruction-rated TSC once measured "CPU
    Mhz=0" and every floppy read then timed out)."""
    status, log, _ = run_until_log("Scan for VGA option rom", icount=False)  # the line after it
    assert status == 0, log[-2000:]
    mhz = int(log.split("CPU Mhz=")[1].split()[0])
    assert 900 <= mhz <= 1100, log[-2000:]


@needs_nasm
def test_seabios_boots_a_hard_disk(tmp_path):
    body = """
    mov ax, 0xb800
    mov es, ax
    mov word [es:160*20], 0x1f4f    ; 'O' on row 20
    mov word [es:160*20+2], 0x1f4b  ; 'K'
    mov al, 'H'
    call out_al
    mov al, 0x21
    out 0xf4, al                    ; isa-debug-exit: status 0x43
    jmp done
    """
    disk = tmp_path / "disk.img"
    with open(disk, "wb") as fh:
        fh.write(boot_sector(body))
        fh.truncate(1 << 20)
    shot, log = tmp_path / "screen.txt", tmp_path / "debug.log"
    p = pyemu("-bios", str(SEABIOS), "-hda", str(disk), "-display", "none", "--screendump", str(shot),
              "-icount", "auto,sleep=off", "-device", "isa-debug-exit", "-debugcon", f"file:{log}",
              "-device", "isa-debugcon,iobase=0x402", "--timeout", "300")
    assert p.returncode == (0x21 << 1) | 1, p.stderr.decode()
    text = log.read_bytes()  # SeaBIOS's log (port 402h), then the boot sector's 'H' (port E9h)
    assert b"Start SeaVGABIOS" in text and text.endswith(b"Booting from 0000:7c00\nH")
    lines = shot.read_text().splitlines()
    assert lines[0].startswith("SeaBIOS (version ")
    assert "Booting from Hard Disk..." in lines
    assert lines[20].startswith("OK")


@needs_nasm
def test_seabios_follows_the_boot_order(tmp_path):
    """-boot c with a floppy and a disk: SeaBIOS reads the order from CMOS 3Dh/38h, as on QEMU, and
    boots the disk first (its boot sector ends the run) without trying the floppy."""
    disk, floppy = tmp_path / "disk.img", tmp_path / "floppy.img"
    with open(disk, "wb") as fh:
        fh.write(boot_sector("mov al, 0x21\n    out 0xf4, al\n    jmp done"))
        fh.truncate(1 << 20)
    with open(floppy, "wb") as fh:
        fh.write(boot_sector("mov al, 0x22\n    out 0xf4, al\n    jmp done"))
        fh.truncate(1440 * 1024)
    shot = tmp_path / "screen.txt"
    p = pyemu("-bios", str(SEABIOS), "-fda", str(floppy), "-hda", str(disk), "-boot", "c", "-display", "none",
              "--screendump", str(shot), "-icount", "auto,sleep=off", "-device", "isa-debug-exit",
              "--timeout", "300")
    assert p.returncode == (0x21 << 1) | 1, p.stderr.decode()
    screen = shot.read_text()
    assert "Booting from Hard Disk..." in screen and "Booting from Floppy" not in screen


def test_vga_rom_option_errors(tmp_path):
    p = pyemu("--vga-rom", str(tmp_path / "missing.bin"), "-bios", str(SEABIOS), "-display", "none")
    assert p.returncode == 1
    assert "--vga-rom" in p.stderr.decode() and "Traceback" not in p.stderr.decode()
