"""The PC machine and its run loop, driven in-process with small boot sectors assembled by nasm.

Helpers here are shared by the BIOS service tests: `run_guest(asm, ...)` assembles a boot sector,
puts it on a floppy (or hard disk) image, boots it under -icount with the built-in BIOS and returns
what the guest wrote to the 0xE9 debug console, the screen text and the exit status.
"""

from __future__ import annotations

import os

import pytest

from tests.cpu.guestasm import assemble, needs_nasm

pytestmark = needs_nasm

FLOPPY_SIZE = 1440 * 1024
GUEST_TIMEOUT = 30.0

# Prologue for test boot sectors: flat segments, a stack away from the code page, and `out_al`
# (AL to the debug console) / `done` (halt for good with IF=0).
PROLOGUE = """
bits 16
org 0x7c00
    jmp 0:start
start:
    cli
    xor ax, ax
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov sp, 0x6000
    sti
    cld
    jmp main
out_al:
    out 0xe9, al
    ret
out_ax:                 ; AX little-endian
    out 0xe9, al
    xchg al, ah
    out 0xe9, al
    xchg al, ah
    ret
done:
    cli
    hlt
    jmp done
"""


def boot_sector(body: str, signature: bool = True) -> bytes:
    code = assemble(PROLOGUE + "main:\n" + body)
    assert len(code) <= 510, f"boot sector too big: {len(code)} bytes"
    sector = code + bytes(510 - len(code)) + (b"\x55\xaa" if signature else b"\0\0")
    return sector


class Result:
    def __init__(self, status, debug, screen, machine, loop):
        self.status = status
        self.debug = debug
        self.screen = screen
        self.machine = machine
        self.loop = loop


def run_guest(body: str, *, disk: bool = False, extra_sectors: bytes = b"", image_path: str | None = None,
              snapshot: bool = False, keys: bytes = b"", ram_mb: int = 32, icount: bool = True,
              timeout: float = GUEST_TIMEOUT, disk_size: int = 4 << 20) -> Result:
    from emu.devices.diskimage import DiskImage
    from emu.display import Frontend
    from emu.machine import Machine, MachineConfig
    from emu.mainloop import MainLoop

    sector = boot_sector(body)
    debug = bytearray()
    cfg = MachineConfig(ram_mb=ram_mb, icount=icount, snapshot=snapshot, debugcon=debug.extend,
                        icount_sleep=False)
    if image_path is not None:
        if not os.path.exists(image_path):
            with open(image_path, "wb") as fh:
                fh.write(sector + extra_sectors)
                fh.truncate(disk_size if disk else FLOPPY_SIZE)
        (cfg.disks if disk else cfg.floppies)[0] = image_path
    else:
        size = disk_size if disk else FLOPPY_SIZE
        data = bytearray(size)
        data[: 512 + len(extra_sectors)] = sector + extra_sectors
        img = DiskImage.from_bytes(data)
        if disk:
            cfg.disk_images = [img]
        else:
            cfg.floppy_images = [img]
    machine = Machine(cfg)
    fe = None
    rfd = None
    if keys:
        rfd, wfd = os.pipe()
        os.write(wfd, keys)
        os.close(wfd)
        fe = Frontend(machine, "none", rfd)
    loop = MainLoop(machine, fe, timeout=timeout)
    try:
        status = loop.run()
    finally:
        machine.close()
        if rfd is not None:
            os.close(rfd)
    return Result(status, bytes(debug), machine.vga.screendump_text(), machine, loop)


# -- the machine itself -----------------------------------------------------------------------------

def test_boot_and_halt_reports_halted():
    r = run_guest("mov al, 'A'\ncall out_al\njmp done\n")
    assert r.debug == b"A"
    assert r.status == 0 and r.loop.halted_message


def test_isa_debug_exit_status():
    from emu.machine import Machine, MachineConfig
    from emu.mainloop import MainLoop

    cfg = MachineConfig(icount=True, debug_exit=(0xF4, 4))
    sector = boot_sector("mov al, 3\nout 0xf4, al\njmp done\n")
    from emu.devices.diskimage import DiskImage

    data = bytearray(FLOPPY_SIZE)
    data[:512] = sector
    cfg.floppy_images = [DiskImage.from_bytes(data)]
    m = Machine(cfg)
    assert MainLoop(m, timeout=GUEST_TIMEOUT).run() == (3 << 1) | 1


def test_triple_fault_resets_or_exits_with_no_reboot():
    from emu.devices.diskimage import DiskImage
    from emu.machine import Machine, MachineConfig
    from emu.mainloop import MainLoop

    # an IDT limit of 0: any interrupt is a triple fault
    body = "lidt [bad]\nint 0x20\njmp done\nbad: dw 0\ndd 0\n"
    sector = boot_sector(body)
    data = bytearray(FLOPPY_SIZE)
    data[:512] = sector
    cfg = MachineConfig(icount=True, no_reboot=True, floppy_images=[DiskImage.from_bytes(data)])
    m = Machine(cfg)
    loop = MainLoop(m, timeout=GUEST_TIMEOUT, no_reboot=True)
    assert loop.run() == 0
    assert not loop.halted_message


def test_keyboard_controller_reset_reboots_once_then_exit():
    from emu.devices.diskimage import DiskImage
    from emu.machine import Machine, MachineConfig
    from emu.mainloop import MainLoop

    # first boot: count in CMOS scratch? simpler: the debug console shows how many times we ran
    body = "mov al, 'R'\ncall out_al\nmov al, 0xfe\nout 0x64, al\njmp done\n"
    data = bytearray(FLOPPY_SIZE)
    data[:512] = boot_sector(body)
    debug = bytearray()
    cfg = MachineConfig(icount=True, debugcon=debug.extend, floppy_images=[DiskImage.from_bytes(data)])
    m = Machine(cfg)
    loop = MainLoop(m, timeout=3.0)
    status = loop.run()
    assert status == 124  # it keeps rebooting until the timeout
    assert debug.count(b"R") >= 2 and loop.resets >= 1


def test_unimplemented_or_bad_input_never_tracebacks(tmp_path):
    from emu.machine import Machine, MachineConfig, MachineError

    with pytest.raises(MachineError, match="not found"):
        Machine(MachineConfig(disks=[str(tmp_path / "nope.img"), None]))
    empty = tmp_path / "empty.img"
    empty.write_bytes(b"")
    with pytest.raises(MachineError):
        Machine(MachineConfig(disks=[str(empty), None]))


def test_no_bootable_device_message():
    from emu.devices.diskimage import DiskImage
    from emu.machine import Machine, MachineConfig
    from emu.mainloop import MainLoop

    data = bytearray(4 << 20)  # a blank hard disk: no 55AA
    m = Machine(MachineConfig(icount=True, disk_images=[DiskImage.from_bytes(data)]))
    loop = MainLoop(m, timeout=GUEST_TIMEOUT)
    assert loop.run() == 0 and loop.halted_message
    screen = m.vga.screendump_text()
    assert "No bootable device." in screen
    assert "not a bootable disk" in screen
    assert m.messages == ["No bootable device."]
