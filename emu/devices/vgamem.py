"""VGA display memory: four 64 KiB planes, the latches and the graphics controller's data path.

References: IBM VGA Technical Reference (sequencer map mask and memory mode, graphics controller
registers 00h-08h) and FreeVGA's "VGA Memory Organization", "Graphics Controller Registers" and
"Read/Write Modes" pages; the code below is written from those descriptions.

A CPU access in the A0000-BFFFF window is first decoded by the memory map select (graphics misc
register bits 2-3); the resulting host address then picks planes and a plane address:

- chain-4 (sequencer memory mode bit 3): address bits 0-1 select the plane, the plane address is
  the host address with those bits cleared (mode 13h: pixel n lives in plane n & 3);
- odd/even: address bit 0 selects planes 0/2 (even) or 1/3 (odd), the plane address has bit 0
  cleared (text modes: characters in plane 0, attributes in plane 1). Writes follow the sequencer
  memory mode's odd/even-disable bit (2), reads the graphics mode register's odd/even bit (4);
- otherwise planar: the host address is the plane address in all four planes at once.

Every read loads the four latches with the bytes at the plane address. Writes go through the data
path: rotate, set/reset, the logical function against the latches, the bit mask, then the map
mask decides which planes take the result. The four planes are handled together as one 32-bit word
(byte p = plane p), so each step is one integer operation.
"""

from __future__ import annotations

import numpy as np

PLANES = 4
PLANE_SIZE = 0x10000
PLANE_ADDR_MASK = PLANE_SIZE - 1
ALL_PLANES = 0x0F

# sequencer registers
SEQ_MAP_MASK = 0x02
SEQ_MEMORY_MODE = 0x04
SEQ_MM_ODD_EVEN_DISABLE = 0x04  # set: sequential (planar) host addressing for writes
SEQ_MM_CHAIN4 = 0x08

# graphics controller registers
GC_SET_RESET = 0x00
GC_ENABLE_SET_RESET = 0x01
GC_COLOR_COMPARE = 0x02
GC_DATA_ROTATE = 0x03
GC_ROTATE_MASK = 0x07
GC_FUNCTION_SHIFT = 3
GC_FUNCTION_MASK = 0x03
GC_READ_MAP = 0x04
GC_MODE = 0x05
GC_MODE_WRITE_MASK = 0x03
GC_MODE_READ_1 = 0x08  # read mode 1: colour compare
GC_MODE_ODD_EVEN = 0x10
GC_MISC = 0x06
GC_MISC_MAP_SHIFT = 2
GC_MISC_MAP_MASK = 0x0C
GC_COLOR_DONT_CARE = 0x07
GC_BIT_MASK = 0x08

FUNC_NONE, FUNC_AND, FUNC_OR, FUNC_XOR = 0, 1, 2, 3

# memory map select -> (first window offset, size) inside A0000-BFFFF
MEMORY_MAPS = ((0x00000, 0x20000), (0x00000, 0x10000), (0x10000, 0x8000), (0x18000, 0x8000))

BYTE_SPREAD = 0x01010101  # b * BYTE_SPREAD puts byte b in all four planes


def plane_spread(nibble: int) -> int:
    """Bit p of `nibble` -> byte p of the result all ones (FFh) or zeros."""
    return sum(0xFF << (8 * p) for p in range(PLANES) if nibble >> p & 1)


SPREAD = tuple(plane_spread(n) for n in range(16))


class PlanarMemory:
    """The planes (`planes[p, addr]`), the latches, and CPU reads and writes through the registers.

    `seq` and `gc` are the owning VGA's sequencer and graphics controller register lists (read at
    each access, so register writes take effect at once).
    """

    def __init__(self, seq: list[int], gc: list[int]):
        self.seq = seq
        self.gc = gc
        self.planes = np.zeros((PLANES, PLANE_SIZE), dtype=np.uint8)
        self.latch = 0  # byte p = plane p's latch

    # -- addressing --------------------------------------------------------------------------------
    def map_window(self) -> tuple[int, int]:
        """(offset, size) of the host window that the memory map select decodes."""
        return MEMORY_MAPS[(self.gc[GC_MISC] & GC_MISC_MAP_MASK) >> GC_MISC_MAP_SHIFT]

    def host_address(self, offset: int) -> int | None:
        """Window offset (0 = A0000) -> host address inside the selected map, None outside it."""
        base, size = self.map_window()
        rel = offset - base
        return rel if 0 <= rel < size else None

    def _load_latches(self, addr: int) -> None:
        p = self.planes
        self.latch = (int(p[0, addr]) | int(p[1, addr]) << 8 | int(p[2, addr]) << 16
                      | int(p[3, addr]) << 24)

    # -- CPU reads ---------------------------------------------------------------------------------
    def read(self, offset: int) -> int:
        """One byte read from window offset `offset` (open bus FFh outside the selected map)."""
        host = self.host_address(offset)
        if host is None:
            return 0xFF
        seq, gc = self.seq, self.gc
        if seq[SEQ_MEMORY_MODE] & SEQ_MM_CHAIN4:
            plane, addr = host & 3, host & ~3 & PLANE_ADDR_MASK
        elif gc[GC_MODE] & GC_MODE_ODD_EVEN:
            plane, addr = (gc[GC_READ_MAP] & 2) | (host & 1), host & ~1 & PLANE_ADDR_MASK
        else:
            plane, addr = gc[GC_READ_MAP] & 3, host & PLANE_ADDR_MASK
        self._load_latches(addr)
        if not gc[GC_MODE] & GC_MODE_READ_1:
            return (self.latch >> (8 * plane)) & 0xFF
        # read mode 1: a 1 bit where every plane not masked by colour don't care matches the
        # corresponding colour compare bit
        care = gc[GC_COLOR_DONT_CARE] & ALL_PLANES
        diff = (self.latch ^ SPREAD[gc[GC_COLOR_COMPARE] & ALL_PLANES]) & SPREAD[care]
        diff |= diff >> 16
        diff |= diff >> 8
        return ~diff & 0xFF

    # -- CPU writes --------------------------------------------------------------------------------
    def write(self, offset: int, value: int) -> None:
        """One byte written at window offset `offset` through the graphics controller data path."""
        host = self.host_address(offset)
        if host is None:
            return
        seq = self.seq
        enable = seq[SEQ_MAP_MASK] & ALL_PLANES
        mm = seq[SEQ_MEMORY_MODE]
        if mm & SEQ_MM_CHAIN4:
            enable &= 1 << (host & 3)
            addr = host & ~3 & PLANE_ADDR_MASK
        elif not mm & SEQ_MM_ODD_EVEN_DISABLE:
            enable &= 0x5 << (host & 1)  # even: planes 0 and 2, odd: planes 1 and 3
            addr = host & ~1 & PLANE_ADDR_MASK
        else:
            addr = host & PLANE_ADDR_MASK
        if not enable:
            return
        self.store(addr, enable, self.datapath(value))

    def datapath(self, value: int) -> int:
        """The 32-bit word (byte p for plane p) the write modes make of a CPU byte."""
        gc = self.gc
        mode = gc[GC_MODE] & GC_MODE_WRITE_MASK
        latch = self.latch
        if mode == 1:
            return latch  # write mode 1: the latches, unchanged
        rotate = gc[GC_DATA_ROTATE] & GC_ROTATE_MASK
        mask = gc[GC_BIT_MASK]
        if mode == 0:
            value = ((value >> rotate) | (value << (8 - rotate))) & 0xFF
            esr = SPREAD[gc[GC_ENABLE_SET_RESET] & ALL_PLANES]
            data = (value * BYTE_SPREAD & ~esr) | (SPREAD[gc[GC_SET_RESET] & ALL_PLANES] & esr)
        elif mode == 2:
            data = SPREAD[value & ALL_PLANES]
        else:  # write mode 3: the rotated byte ANDed with the bit mask is the bit mask
            value = ((value >> rotate) | (value << (8 - rotate))) & 0xFF
            mask &= value
            data = SPREAD[gc[GC_SET_RESET] & ALL_PLANES]
        func = (gc[GC_DATA_ROTATE] >> GC_FUNCTION_SHIFT) & GC_FUNCTION_MASK
        if func == FUNC_AND:
            data &= latch
        elif func == FUNC_OR:
            data |= latch
        elif func == FUNC_XOR:
            data ^= latch
        mask32 = mask * BYTE_SPREAD
        return (data & mask32) | (latch & ~mask32 & 0xFFFFFFFF)

    def store(self, addr: int, enable: int, word: int) -> None:
        p = self.planes
        for plane in range(PLANES):
            if enable >> plane & 1:
                p[plane, addr] = (word >> (8 * plane)) & 0xFF

    # -- state -------------------------------------------------------------------------------------
    def state(self) -> dict:
        return {"planes": self.planes.tobytes(), "latch": self.latch}

    def load_state(self, s: dict) -> None:
        self.planes[:] = np.frombuffer(s["planes"], dtype=np.uint8).reshape(PLANES, PLANE_SIZE)
        self.latch = s["latch"]
