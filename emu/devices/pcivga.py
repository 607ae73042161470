"""The VGA as a PCI function, as QEMU's `-vga std`: identity, the linear framebuffer BAR, the
expansion ROM that carries the VGA BIOS, and the Bochs VBE "dispi" registers.

Firmware that does not run its own INT 10h (SeaBIOS) finds the video BIOS the PCI way: it sizes
and assigns the expansion ROM BAR (config offset 30h), sets its enable bit, copies the image that
appears there (55AAh, then a "PCIR" structure whose vendor/device match ours) to C0000h and calls
its entry point (PCI Local Bus 3.0, 6.3 "PCI Expansion ROMs"). SeaVGABIOS's stdvga build programs
the standard VGA registers (emu/devices/vga.py) for text and planar modes and detects the Bochs
VBE extension through ports 1CEh/1CFh.

What is modelled:
- 00:02.0, vendor 1234h, device 1111h, class 030000h (VGA-compatible), subsystem 1AF4h:1100h;
- BAR0, a 32-bit prefetchable memory BAR of VRAM_SIZE for the linear framebuffer. It is sized and
  assigned like any BAR but **not backed**: the address range stays open bus (pyemu's VGA has only
  its 256 KiB of planes, and nothing scans a framebuffer out);
- the expansion ROM BAR: sizable (all ones -> size mask), decoded when its enable bit and the
  command register's Memory Space bit are set; the image is then an MMIO region at that address
  (read-only, zeros after the image up to the decoder size, writes ignored);
- the dispi registers at 1CEh (index) and 1CFh/1D0h (data): ID (B0C0h-B0C5h), XRES, YRES, BPP,
  ENABLE (with GETCAPS: XRES/YRES/BPP read the maxima), BANK, virtual size, offsets and the video
  memory size in 64 KiB units. They are stored and read back, which is all that SeaVGABIOS's
  initialisation needs; **a VBE mode is not displayed**: enabling one changes nothing on the screen
  (the VGA keeps scanning out its planes) and the LFB is unbacked.
"""

from __future__ import annotations

from collections.abc import Callable

from emu.devices import pci as P
from emu.devices.bus import IoBus, MmioRegion

PCI_SLOT = 2  # 00:02.0, where QEMU puts the first VGA
VENDOR_QEMU = 0x1234
DEVICE_STDVGA = 0x1111
CLASS_DISPLAY, SUBCLASS_VGA = 0x03, 0x00
SUBSYSTEM_VENDOR_REDHAT, SUBSYSTEM_QEMU = 0x1AF4, 0x1100
VRAM_SIZE = 16 << 20  # QEMU's default vgamem_mb=16
VRAM_BAR = 0

# Bochs VBE display interface (Bochs' vbe.h; QEMU hw/display/vga.c)
DISPI_INDEX_PORT = 0x1CE
DISPI_DATA_PORT = 0x1CF
DISPI_DATA_ALIAS = 0x1D0  # an older data port, still decoded by Bochs and QEMU on x86
DISPI_INDEX_ID = 0x0
DISPI_INDEX_XRES = 0x1
DISPI_INDEX_YRES = 0x2
DISPI_INDEX_BPP = 0x3
DISPI_INDEX_ENABLE = 0x4
DISPI_INDEX_BANK = 0x5
DISPI_INDEX_VIRT_WIDTH = 0x6
DISPI_INDEX_VIRT_HEIGHT = 0x7
DISPI_INDEX_X_OFFSET = 0x8
DISPI_INDEX_Y_OFFSET = 0x9
DISPI_INDEX_VIDEO_MEMORY_64K = 0xA
DISPI_INDEX_COUNT = 0xB
DISPI_ID0, DISPI_ID5 = 0xB0C0, 0xB0C5  # the interface versions a guest may select
DISPI_GETCAPS = 0x02  # ENABLE bit 1: XRES/YRES/BPP read the maxima
DISPI_MAX_XRES, DISPI_MAX_YRES, DISPI_MAX_BPP = 16000, 12000, 32  # QEMU's limits
DISPI_UNIT = 64 << 10


class BochsDispi:
    """The dispi register file: stored values, the ID handshake and the GETCAPS maxima."""

    def __init__(self, vram_size: int = VRAM_SIZE):
        self.vram_size = vram_size
        self.reset()

    def attach(self, bus: IoBus) -> None:
        bus.register(DISPI_INDEX_PORT, 1, self._index_read, self._index_write, owner=self)
        bus.register(DISPI_DATA_PORT, 2, self._data_read, self._data_write, owner=self)

    def reset(self) -> None:
        self.index = 0
        self.regs = [0] * DISPI_INDEX_COUNT
        self.regs[DISPI_INDEX_ID] = DISPI_ID5

    def _index_read(self, port: int, size: int) -> int:
        return self.index

    def _index_write(self, port: int, size: int, value: int) -> None:
        self.index = value & 0xFFFF

    def read(self, index: int) -> int:
        if index >= DISPI_INDEX_COUNT:
            return 0
        if self.regs[DISPI_INDEX_ENABLE] & DISPI_GETCAPS:
            caps = {DISPI_INDEX_XRES: DISPI_MAX_XRES, DISPI_INDEX_YRES: DISPI_MAX_YRES,
                    DISPI_INDEX_BPP: DISPI_MAX_BPP}
            if index in caps:
                return caps[index]
        if index == DISPI_INDEX_VIDEO_MEMORY_64K:
            return self.vram_size // DISPI_UNIT
        return self.regs[index]

    def write(self, index: int, value: int) -> None:
        value &= 0xFFFF
        if index == DISPI_INDEX_ID:
            if DISPI_ID0 <= value <= DISPI_ID5:
                self.regs[index] = value
        elif index < DISPI_INDEX_VIDEO_MEMORY_64K:  # the memory size is read-only
            self.regs[index] = value

    def _data_read(self, port: int, size: int) -> int:
        return self.read(self.index)

    def _data_write(self, port: int, size: int, value: int) -> None:
        self.write(self.index, value)

    def state(self) -> dict:
        return {"index": self.index, "regs": list(self.regs)}

    def load_state(self, state: dict) -> None:
        self.index = int(state["index"])
        self.regs = [int(v) for v in state["regs"]]


class PciVga:
    """The PCI side of the VGA. `map_region(region, base)` is the machine's hook to decode an MMIO
    region at `base` (None: stop decoding it); the ROM region moves with the ROM BAR."""

    def __init__(self, rom: bytes, map_region: Callable[[MmioRegion, int | None], None]):
        self.rom = bytes(rom)
        self.map_region = map_region
        fn = P.PciFunction(VENDOR_QEMU, DEVICE_STDVGA, CLASS_DISPLAY, SUBCLASS_VGA, name="VGA")
        fn.set16(P.SUBSYSTEM_VENDOR_ID, SUBSYSTEM_VENDOR_REDHAT)
        fn.set16(P.SUBSYSTEM_ID, SUBSYSTEM_QEMU)
        fn.set_wmask(P.COMMAND, P.COMMAND_IO | P.COMMAND_MEMORY, 2)
        fn.set_wmask(P.INTERRUPT_LINE, 0)  # no interrupt pin
        fn.add_mem_bar(VRAM_BAR, VRAM_SIZE, prefetchable=True)
        size = fn.add_rom_bar(len(self.rom))
        fn.finish()
        fn.on_write = self._config_written
        self.fn = fn
        self.rom_region = MmioRegion(0, size, self._rom_read, self._rom_write, owner=self)
        self.rom_base: int | None = None
        self.dispi = BochsDispi()

    def attach(self, pci: P.PciBus, bus: IoBus) -> None:
        pci.add(PCI_SLOT, 0, self.fn)
        self.dispi.attach(bus)

    def reset(self) -> None:
        """After the PCI bus's reset (which restores the configuration space): drop the ROM."""
        self.dispi.reset()
        self._update_rom()

    def _config_written(self, offset: int, size: int) -> None:
        if offset < P.COMMAND + 2 and offset + size > P.COMMAND or \
                offset < P.EXPANSION_ROM + 4 and offset + size > P.EXPANSION_ROM:
            self._update_rom()

    def _update_rom(self) -> None:
        base = self.fn.rom_decoded()
        if base != self.rom_base:
            if self.rom_base is not None:
                self.map_region(self.rom_region, None)
            self.rom_base = base
            if base is not None:
                self.rom_region.base = base
                self.map_region(self.rom_region, base)

    def _rom_read(self, offset: int, size: int) -> int:
        return int.from_bytes(self.rom[offset:offset + size].ljust(size, b"\0"), "little")

    def _rom_write(self, offset: int, size: int, value: int) -> None:
        pass  # a ROM

    def state(self) -> dict:
        return {"dispi": self.dispi.state()}

    def load_state(self, state: dict) -> None:
        """After the PCI bus's load_state: restore the dispi registers and redo the ROM mapping."""
        self.dispi.load_state(state["dispi"])
        self._update_rom()
