"""BIOS Data Area (segment 40h) offsets and small accessors on guest RAM.

Offsets follow the IBM PC/AT BIOS technical reference and what DOS, bootloaders and Linux read.
The BDA, the IVT and the EBDA are plain RAM below 640 KiB, so the firmware reads and writes them in
the host array directly (no code lives there, so no translated block can go stale).
"""

from __future__ import annotations

BDA = 0x400
COM_PORTS = 0x00  # 4 words
LPT_PORTS = 0x08  # 3 words
EBDA_SEG = 0x0E
EQUIPMENT = 0x10
MEMORY_KB = 0x13
KBD_FLAGS0 = 0x17
KBD_FLAGS1 = 0x18
KBD_HEAD = 0x1A
KBD_TAIL = 0x1C
KBD_BUFFER = 0x1E  # 16 words, offsets relative to segment 40h
KBD_BUFFER_END = 0x3E
FLOPPY_RECAL = 0x3E
FLOPPY_MOTOR = 0x3F
FLOPPY_STATUS = 0x41
VIDEO_MODE = 0x49
VIDEO_COLUMNS = 0x4A
VIDEO_PAGE_SIZE = 0x4C
VIDEO_PAGE_START = 0x4E
CURSOR_POS = 0x50  # 8 words: column low byte, row high byte
CURSOR_SHAPE = 0x60  # end scan line, then start scan line
ACTIVE_PAGE = 0x62
CRTC_BASE = 0x63
VIDEO_MODE_CTL = 0x65
VIDEO_PALETTE = 0x66
TIMER_TICKS = 0x6C
TIMER_OVERFLOW = 0x70
BREAK_FLAG = 0x71
RESET_FLAG = 0x72
DISK_STATUS = 0x74
DISK_COUNT = 0x75
KBD_BUF_START = 0x80
KBD_BUF_END_PTR = 0x82
VIDEO_ROWS = 0x84  # rows - 1
CHAR_HEIGHT = 0x85
VIDEO_CTL = 0x87
VIDEO_SWITCHES = 0x88
VGA_FLAGS = 0x89
KBD_FLAGS3 = 0x96
KBD_FLAGS2 = 0x97

TICKS_PER_DAY = 0x1800B0  # 18.2065 Hz x 86400 s

EBDA_KB = 1
BASE_MEMORY_KB = 640 - EBDA_KB
EBDA_SEGMENT = BASE_MEMORY_KB * 1024 >> 4


class Ram:
    """Little-endian accessors on the machine's host RAM array (physical addresses)."""

    def __init__(self, mem):
        self.mem = mem

    def r8(self, addr: int) -> int:
        return int(self.mem[addr])

    def r16(self, addr: int) -> int:
        m = self.mem
        return int(m[addr]) | (int(m[addr + 1]) << 8)

    def r32(self, addr: int) -> int:
        return self.r16(addr) | (self.r16(addr + 2) << 16)

    def w8(self, addr: int, v: int) -> None:
        self.mem[addr] = v & 0xFF

    def w16(self, addr: int, v: int) -> None:
        self.mem[addr] = v & 0xFF
        self.mem[addr + 1] = (v >> 8) & 0xFF

    def w32(self, addr: int, v: int) -> None:
        self.w16(addr, v)
        self.w16(addr + 2, v >> 16)

    def read(self, addr: int, n: int) -> bytes:
        return self.mem[addr: addr + n].tobytes()
