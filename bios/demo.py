"""The built-in demo boot image (`pyemu boot --demo`).

`demo.asm` is the source; `demo.bin` is its nasm output, shipped so that running the demo needs no
assembler (tests/test_demo.py rebuilds it with nasm and checks the bytes are the same). The sector
becomes the boot sector of a blank 1.44 MB floppy held in memory.
"""

from __future__ import annotations

from importlib import resources

FLOPPY_SIZE = 1440 * 1024


def demo_sector() -> bytes:
    return resources.files("bios").joinpath("demo.bin").read_bytes()


def demo_floppy():
    from emu.devices.diskimage import DiskImage

    image = bytearray(FLOPPY_SIZE)
    sector = demo_sector()
    image[: len(sector)] = sector
    return DiskImage.from_bytes(image)
