"""The physical address space: RAM, the legacy holes, ROM, MMIO and open bus.

One host `uint8` array, `mem`, backs everything the CPU may touch as memory: guest RAM first, then
the ROM images. A per-page map, `pmap` (one int64 per 4 KiB physical page of the 4 GiB space), says
where each physical page lives:

    pmap[ppn] = host_offset | kind        (host_offset is page-aligned, kind sits in the low 12 bits)

The compiled memory path reads `pmap` only on a TLB miss. Kinds:
- PM_RAM: read/write memory at `mem[host_offset:]`;
- PM_ROM: readable at `mem[host_offset:]`, writes are ignored (as on a PC with the shadow locked);
- PM_MMIO: a device region: the access leaves the compiled loop and Python dispatches it;
- PM_UNMAPPED: open bus: reads return all-ones, writes vanish.

Default PC layout (what QEMU's `pc` machine shows a guest):
    00000000-0009FFFF  RAM (conventional memory)
    000A0000-000BFFFF  VGA window: RAM-backed video memory the VGA device reads (text modes)
    000C0000-000FFFFF  ROM: option ROMs and the system BIOS
    00100000-(RAM end) RAM
    FFFE0000-FFFFFFFF  the system BIOS again (the reset vector's alias at the top of 4 GiB)
"""

from __future__ import annotations

import numpy as np

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
PAGE_MASK = PAGE_SIZE - 1
PHYS_PAGES = 1 << 20  # 4 GiB / 4 KiB

PM_RAM = 0
PM_ROM = 1
PM_MMIO = 2
PM_UNMAPPED = 4
PM_KIND_MASK = PAGE_MASK

LOW_RAM_END = 0xA0000  # conventional memory ends where the VGA window starts
VGA_WINDOW = 0xA0000
VGA_WINDOW_SIZE = 0x20000
ROM_AREA = 0xC0000
ROM_AREA_END = 0x100000
HIGH_MEMORY = 0x100000
MAX_RAM = 0xE000_0000  # 3.5 GiB: RAM stops below the PCI hole (issue 4)
MEM_SLACK = 16  # spare bytes after the host array so an 8-byte access at the last byte stays inside


class PhysMap:
    """Builds `mem` and `pmap` for a machine and keeps the Python-side list of MMIO regions."""

    def __init__(self, ram_bytes: int, bios_rom: bytes | None = None):
        if ram_bytes <= 0 or ram_bytes % PAGE_SIZE:
            raise ValueError("RAM size must be a positive multiple of 4 KiB")
        if ram_bytes > MAX_RAM:
            raise ValueError(f"at most {MAX_RAM >> 20} MiB of RAM fit below the PCI hole")
        ram_bytes = max(ram_bytes, ROM_AREA_END)  # the first MiB is always backed
        self.ram_bytes = ram_bytes
        self.rom_base = ram_bytes  # ROM images live after RAM in the host array
        self.rom_size = ROM_AREA_END - ROM_AREA  # one copy of C0000-FFFFF
        self.mem = np.zeros(ram_bytes + self.rom_size + MEM_SLACK, dtype=np.uint8)
        self.pmap = np.full(PHYS_PAGES, PM_UNMAPPED, dtype=np.int64)
        self.mmio: list = []
        ppn = np.arange(ram_bytes >> PAGE_SHIFT, dtype=np.int64)
        self.pmap[: len(ppn)] = (ppn << PAGE_SHIFT) | PM_RAM
        # C0000-FFFFF: ROM, backed by the copy after RAM
        rom_pages = np.arange(self.rom_size >> PAGE_SHIFT, dtype=np.int64)
        self.pmap[(ROM_AREA >> PAGE_SHIFT) + rom_pages] = ((self.rom_base + (rom_pages << PAGE_SHIFT))
                                                           | PM_ROM)
        if bios_rom is not None:
            self.load_bios(bios_rom)

    # ------------------------------------------------------------------------------------
    def load_rom(self, phys: int, data: bytes) -> None:
        """Place a ROM image in C0000-FFFFF (host copy; guests see it read-only)."""
        if not (ROM_AREA <= phys and phys + len(data) <= ROM_AREA_END):
            raise ValueError("a ROM image must fit in C0000-FFFFF")
        off = self.rom_base + (phys - ROM_AREA)
        self.mem[off: off + len(data)] = np.frombuffer(data, dtype=np.uint8)

    def load_bios(self, image: bytes) -> None:
        """The system BIOS ends at FFFFF and is aliased at the top of 4 GiB (SDM Vol 3, 9.1.4)."""
        size = len(image)
        if size == 0 or size % 0x10000 or size > 0x40000:
            raise ValueError("a BIOS image must be 64, 128, 192 or 256 KiB")
        low = min(size, ROM_AREA_END - ROM_AREA)
        self.load_rom(ROM_AREA_END - low, image[size - low:])
        top_pages = size >> PAGE_SHIFT
        first = PHYS_PAGES - top_pages
        for i in range(top_pages):
            src = (ROM_AREA_END - size) + (i << PAGE_SHIFT)
            if src >= ROM_AREA:
                self.pmap[first + i] = self.pmap[src >> PAGE_SHIFT]
            else:  # a BIOS larger than the low window: only the top alias holds the low part
                raise ValueError("BIOS images above 256 KiB are not supported")

    def add_mmio(self, region) -> None:
        """Hand [base, base+size) to a device: accesses there exit the compiled loop."""
        if region.base % PAGE_SIZE or region.size % PAGE_SIZE:
            raise ValueError("MMIO regions are page-aligned")
        self.mmio.append(region)
        first = region.base >> PAGE_SHIFT
        self.pmap[first: first + (region.size >> PAGE_SHIFT)] = PM_MMIO

    def find_mmio(self, addr: int):
        for region in self.mmio:
            if region.contains(addr):
                return region
        return None

    def _parts(self, st) -> list[tuple[int, int, int]]:
        """(physical address, size, bit shift) of each part of the MMIO access an exit reports:
        one, or two when it runs across two device pages (EXIT_ARG3, emu/mmu/softmmu.py)."""
        from emu.cpu import state as S

        addr, size, split = int(st[S.EXIT_ARG0]), int(st[S.EXIT_ARG1]), int(st[S.EXIT_ARG3])
        if split < 0:
            return [(addr, size, 0)]
        first = split >> 32
        return [(addr, first, 0), (split & 0xFFFF_FFFF, size - first, 8 * first)]

    def exit_read(self, st) -> int:
        """The value for an EXIT_MMIO_READ: each part from its device (open bus: all ones)."""
        value = 0
        for addr, size, shift in self._parts(st):
            value |= (self.mmio_read(addr, size) & ((1 << 8 * size) - 1)) << shift
        return value

    def exit_write(self, st) -> None:
        """Perform an EXIT_MMIO_WRITE: each part to its device (none there: the write vanishes)."""
        from emu.cpu import state as S

        value = int(st[S.EXIT_ARG2])
        for addr, size, shift in self._parts(st):
            self.mmio_write(addr, size, (value >> shift) & ((1 << 8 * size) - 1))

    def mmio_read(self, addr: int, size: int) -> int:
        """A guest read of `size` bytes at physical `addr` outside RAM and ROM (emu.Machine.on_mmio
        wraps this)."""
        region = self.find_mmio(addr)
        return region.read(addr - region.base, size) if region else (1 << 8 * size) - 1

    def mmio_write(self, addr: int, size: int, value: int) -> None:
        region = self.find_mmio(addr)
        if region is not None:
            region.write(addr - region.base, size, value)

    # -- host-side access, for loaders, the BIOS and tests (never on the hot path) --------
    def host_offset(self, phys: int) -> int | None:
        entry = int(self.pmap[(phys >> PAGE_SHIFT) & (PHYS_PAGES - 1)])
        if entry & (PM_MMIO | PM_UNMAPPED):
            return None
        return (entry & ~PM_KIND_MASK) + (phys & PAGE_MASK)

    def read(self, phys: int, size: int) -> bytes:
        out = bytearray()
        for addr in range(phys, phys + size):
            off = self.host_offset(addr)
            out.append(0xFF if off is None else int(self.mem[off]))
        return bytes(out)

    def write(self, phys: int, data: bytes, rom_too: bool = False) -> None:
        """Write as a loader does (ROM only with rom_too). RAM-only runs take the fast slice."""
        end = phys + len(data)
        if end <= self.ram_bytes and (phys >= ROM_AREA_END or end <= ROM_AREA):
            self.mem[phys:end] = np.frombuffer(bytes(data), dtype=np.uint8)
            return
        for i, byte in enumerate(data):
            entry = int(self.pmap[((phys + i) >> PAGE_SHIFT) & (PHYS_PAGES - 1)])
            kind = entry & PM_KIND_MASK
            if kind == PM_RAM or (kind == PM_ROM and rom_too):
                self.mem[(entry & ~PM_KIND_MASK) + ((phys + i) & PAGE_MASK)] = byte
