"""VGA, text modes: the register file, the A0000-BFFFF window and text rendering.

References: IBM VGA Technical Reference ("the reference"): external registers (misc output, input
status 0/1, feature control), sequencer, CRT controller, graphics controller, attribute controller,
and the DAC; FreeVGA's register pages describe the same bits.

Video memory: `vram` is a 128 KiB `uint8` buffer covering A0000-BFFFF *as the CPU sees it* (the
physical-memory map backs that window with RAM; pass the machine's slice of its memory array, e.g.
`physmap.mem[0xA0000:0xC0000]`, and the device reads the text straight from it). In text modes the
CPU view is what matters: even bytes are characters and odd bytes attributes, at B8000 (colour) or
B0000 (mono) as the graphics controller's memory map select says. The VGA's planar organisation
(odd/even chaining into planes 0/1, fonts in plane 2) is *not* modelled: font uploads land in the
A0000 part of the buffer and are ignored. `read`/`write` give the same buffer as `MmioRegion`
handlers, for a machine that prefers to trap the window. Planar graphics and mode 13h are for later.

Timing: input status 1 (3DAh) derives vertical retrace and display-disable from the virtual clock
(70 Hz frames of 449 lines, as mode 3), so a guest waiting for retrace sees it come and go
deterministically under -icount, with no timer armed.
"""

from __future__ import annotations

import numpy as np

from emu.clock import NS_PER_SECOND, VirtualClock
from emu.devices.bus import IoBus, MmioRegion
from emu.devices.cp437 import CP437

WINDOW_BASE = 0xA0000
WINDOW_SIZE = 0x20000  # A0000-BFFFF
# graphics controller misc register (index 06h) bits 2-3: memory map select -> (offset, size)
MEMORY_MAPS = ((0x00000, 0x20000), (0x00000, 0x10000), (0x10000, 0x8000), (0x18000, 0x8000))
MONO_TEXT_OFFSET = 0x10000  # B0000
COLOUR_TEXT_OFFSET = 0x18000  # B8000

# ports
ATTR_INDEX = 0x3C0  # write: index / data by flip-flop; read: index
ATTR_DATA_READ = 0x3C1
MISC_OUTPUT_WRITE = 0x3C2  # read: input status 0
VIDEO_ENABLE = 0x3C3
SEQ_INDEX, SEQ_DATA = 0x3C4, 0x3C5
DAC_PEL_MASK = 0x3C6
DAC_READ_INDEX = 0x3C7  # read: DAC state
DAC_WRITE_INDEX = 0x3C8
DAC_DATA = 0x3C9
FEATURE_READ = 0x3CA
MISC_OUTPUT_READ = 0x3CC
GC_INDEX, GC_DATA = 0x3CE, 0x3CF
CRTC_INDEX_MONO, CRTC_DATA_MONO, STATUS1_MONO = 0x3B4, 0x3B5, 0x3BA
CRTC_INDEX_COLOUR, CRTC_DATA_COLOUR, STATUS1_COLOUR = 0x3D4, 0x3D5, 0x3DA

MISC_IO_ADDRESS_SELECT = 0x01  # 1: CRTC at 3Dxh (colour), 0: at 3Bxh (mono)

# input status 1
STATUS1_DISPLAY_DISABLED = 0x01  # in horizontal or vertical blanking
STATUS1_VRETRACE = 0x08

# attribute controller
ATTR_INDEX_MASK = 0x1F
ATTR_PAS = 0x20  # palette address source: set = screen on
ATTR_MODE_CONTROL = 0x10
ATTR_MODE_BLINK = 0x08  # attribute bit 7 = blink (else background intensity)
ATTR_MODE_GRAPHICS = 0x01
ATTR_COUNT = 0x15

# sequencer
SEQ_COUNT = 5
SEQ_CLOCKING_MODE = 1
SEQ_SCREEN_OFF = 0x20
# graphics controller
GC_COUNT = 9
GC_MISC = 6
GC_MISC_MAP_SHIFT = 2
GC_MISC_MAP_MASK = 0x0C
# CRTC registers (the reference, "CRT Controller Registers")
CRTC_COUNT = 0x19
CRTC_H_DISPLAY_END = 0x01
CRTC_OVERFLOW = 0x07
CRTC_OVERFLOW_VDE8 = 0x02
CRTC_OVERFLOW_VDE9 = 0x40
CRTC_OVERFLOW_PROTECT_EXEMPT = 0x10  # line compare bit 8 stays writable under protection
CRTC_MAX_SCAN_LINE = 0x09
CRTC_MSL_MASK = 0x1F
CRTC_MSL_DOUBLE_SCAN = 0x80
CRTC_CURSOR_START = 0x0A
CRTC_CURSOR_DISABLE = 0x20
CRTC_CURSOR_END = 0x0B
CRTC_CURSOR_SCANLINE_MASK = 0x1F
CRTC_START_HIGH, CRTC_START_LOW = 0x0C, 0x0D
CRTC_CURSOR_HIGH, CRTC_CURSOR_LOW = 0x0E, 0x0F
CRTC_V_RETRACE_END = 0x11
CRTC_PROTECT = 0x80  # bit 7 of 11h write-protects registers 00h-07h
CRTC_V_DISPLAY_END = 0x12
CRTC_OFFSET = 0x13
CRTC_PROTECTED_LAST = 0x07
DAC_ENTRIES = 256
DAC_COMPONENT_MASK = 0x3F  # 6-bit DAC
DAC_STATE_READ, DAC_STATE_WRITE = 0x03, 0x00

# mode 3 (80x25 colour text, 720x400 at 70 Hz) register values, as the BIOS programs them
MODE3_MISC = 0x67
MODE3_SEQ = (0x03, 0x00, 0x03, 0x00, 0x02)
MODE3_CRTC = (0x5F, 0x4F, 0x50, 0x82, 0x55, 0x81, 0xBF, 0x1F, 0x00, 0x4F, 0x0D, 0x0E, 0x00, 0x00,
              0x00, 0x00, 0x9C, 0x8E, 0x8F, 0x28, 0x1F, 0x96, 0xB9, 0xA3, 0xFF)
MODE3_GC = (0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x0E, 0x00, 0xFF)
MODE3_ATTR = (0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x14, 0x07, 0x38, 0x39, 0x3A, 0x3B, 0x3C, 0x3D,
              0x3E, 0x3F, 0x0C, 0x00, 0x0F, 0x08, 0x00)
# the 16 EGA/CGA colours in the 6-bit DAC (default palette entries 0-15 after the attribute map)
CGA_RGB6 = ((0, 0, 0), (0, 0, 42), (0, 42, 0), (0, 42, 42), (42, 0, 0), (42, 0, 42), (42, 21, 0),
            (42, 42, 42), (21, 21, 21), (21, 21, 63), (21, 63, 21), (21, 63, 63), (63, 21, 21),
            (63, 21, 63), (63, 63, 21), (63, 63, 63))

FRAME_NS = NS_PER_SECOND // 70  # 70 Hz vertical refresh in the 400-line modes
TOTAL_LINES = 449
VRETRACE_LINES = 2  # lines 412-413 of mode 3 (CRTC 10h/11h)
VBLANK_START_LINE = 400
LINE_NS = FRAME_NS // TOTAL_LINES
HBLANK_NS = LINE_NS * 20 // 100  # about a fifth of each line is horizontal blanking

# CGA colour number -> ANSI SGR colour number (CGA: BGR bit order, ANSI: RGB)
CGA_TO_ANSI = (0, 4, 2, 6, 1, 5, 3, 7)
ESC = "\x1b"


class Vga:
    """A VGA in text mode: registers, 128 KiB CPU-view window, text rendering."""

    def __init__(self, clock: VirtualClock, vram=None):
        self.clock = clock
        self.vram = np.zeros(WINDOW_SIZE, dtype=np.uint8) if vram is None else vram
        if len(self.vram) != WINDOW_SIZE:
            raise ValueError("VGA window buffer must be 128 KiB")
        self.reset()

    # -- wiring ----------------------------------------------------------------------------------
    def attach(self, bus: IoBus) -> None:
        bus.register(0x3C0, 0x10, self.io_read, self.io_write, owner=self)
        for port in (CRTC_INDEX_MONO, CRTC_DATA_MONO, STATUS1_MONO,
                     CRTC_INDEX_COLOUR, CRTC_DATA_COLOUR, STATUS1_COLOUR):
            bus.register(port, 1, self.io_read, self.io_write, owner=self)

    def mmio_region(self) -> MmioRegion:
        """The A0000-BFFFF window as an MMIO region over the same buffer (plain RAM semantics)."""
        return MmioRegion(WINDOW_BASE, WINDOW_SIZE, self.read, self.write, owner=self)

    def reset(self) -> None:
        """Registers as mode 3 (80x25 colour text) leaves them; video memory is kept."""
        self.misc = MODE3_MISC
        self.seq = list(MODE3_SEQ)
        self.crtc = list(MODE3_CRTC)
        self.gc = list(MODE3_GC)
        self.attr = list(MODE3_ATTR)
        self.seq_index = self.gc_index = self.crtc_index = 0
        self.attr_index = ATTR_PAS
        self.attr_flipflop = 0  # 0: next 3C0h write is an index, 1: data
        self.feature = 0
        self.dac = [0] * (DAC_ENTRIES * 3)
        for i, rgb in enumerate(CGA_RGB6):
            self.dac[3 * i: 3 * i + 3] = rgb
        self.dac_read_index = self.dac_write_index = 0
        self.dac_component = 0
        self.dac_state = DAC_STATE_WRITE
        self.dac_mask = 0xFF

    # -- memory window ---------------------------------------------------------------------------
    def read(self, offset: int, size: int) -> int:
        return int.from_bytes(self.vram[offset: offset + size].tobytes(), "little")

    def write(self, offset: int, size: int, value: int) -> None:
        self.vram[offset: offset + size] = np.frombuffer(
            (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little"), dtype=np.uint8)

    # -- ports -----------------------------------------------------------------------------------
    def io_read(self, port: int, size: int) -> int:
        value = 0
        for i in range(size):  # a word IN reads two consecutive registers
            value |= self._read8(port + i) << (8 * i)
        return value

    def io_write(self, port: int, size: int, value: int) -> None:
        for i in range(size):  # OUT DX,AX to an index port writes index then data
            self._write8(port + i, (value >> (8 * i)) & 0xFF)

    def _crtc_ports(self) -> tuple[int, int, int]:
        if self.misc & MISC_IO_ADDRESS_SELECT:
            return CRTC_INDEX_COLOUR, CRTC_DATA_COLOUR, STATUS1_COLOUR
        return CRTC_INDEX_MONO, CRTC_DATA_MONO, STATUS1_MONO

    def _read8(self, port: int) -> int:
        crtc_index, crtc_data, status1 = self._crtc_ports()
        if port == crtc_index:
            return self.crtc_index
        if port == crtc_data:
            return self.crtc[self.crtc_index] if self.crtc_index < CRTC_COUNT else 0
        if port == status1:
            self.attr_flipflop = 0  # the reference: reading input status 1 resets the flip-flop
            return self.input_status_1()
        if port == ATTR_INDEX:
            return self.attr_index
        if port == ATTR_DATA_READ:
            i = self.attr_index & ATTR_INDEX_MASK
            return self.attr[i] if i < ATTR_COUNT else 0
        if port == MISC_OUTPUT_WRITE:
            return 0  # input status 0: no switch sense, no pending vertical interrupt
        if port == SEQ_INDEX:
            return self.seq_index
        if port == SEQ_DATA:
            return self.seq[self.seq_index] if self.seq_index < SEQ_COUNT else 0
        if port == DAC_PEL_MASK:
            return self.dac_mask
        if port == DAC_READ_INDEX:
            return self.dac_state
        if port == DAC_WRITE_INDEX:
            return self.dac_write_index
        if port == DAC_DATA:
            value = self.dac[3 * self.dac_read_index + self.dac_component]
            self._dac_step("read")
            return value
        if port == FEATURE_READ:
            return self.feature
        if port == MISC_OUTPUT_READ:
            return self.misc
        if port == GC_INDEX:
            return self.gc_index
        if port == GC_DATA:
            return self.gc[self.gc_index] if self.gc_index < GC_COUNT else 0
        return 0xFF  # the other CRTC block (mono/colour not selected) or a reserved port

    def _write8(self, port: int, value: int) -> None:
        crtc_index, crtc_data, status1 = self._crtc_ports()
        if port == crtc_index:
            self.crtc_index = value
        elif port == crtc_data:
            self._write_crtc(self.crtc_index, value)
        elif port == status1:
            self.feature = value  # feature control write
        elif port == ATTR_INDEX:
            if self.attr_flipflop == 0:
                self.attr_index = value & (ATTR_INDEX_MASK | ATTR_PAS)
            else:
                i = self.attr_index & ATTR_INDEX_MASK
                if i < ATTR_COUNT:
                    self.attr[i] = value
            self.attr_flipflop ^= 1
        elif port == MISC_OUTPUT_WRITE:
            self.misc = value
        elif port == SEQ_INDEX:
            self.seq_index = value
        elif port == SEQ_DATA:
            if self.seq_index < SEQ_COUNT:
                self.seq[self.seq_index] = value
        elif port == DAC_PEL_MASK:
            self.dac_mask = value
        elif port == DAC_READ_INDEX:
            self.dac_read_index, self.dac_component, self.dac_state = value, 0, DAC_STATE_READ
        elif port == DAC_WRITE_INDEX:
            self.dac_write_index, self.dac_component, self.dac_state = value, 0, DAC_STATE_WRITE
        elif port == DAC_DATA:
            self.dac[3 * self.dac_write_index + self.dac_component] = value & DAC_COMPONENT_MASK
            self._dac_step("write")
        elif port == GC_INDEX:
            self.gc_index = value
        elif port == GC_DATA:
            if self.gc_index < GC_COUNT:
                self.gc[self.gc_index] = value

    def _write_crtc(self, index: int, value: int) -> None:
        if index >= CRTC_COUNT:
            return
        if self.crtc[CRTC_V_RETRACE_END] & CRTC_PROTECT and index <= CRTC_PROTECTED_LAST:
            if index != CRTC_OVERFLOW:
                return
            # under protection only the line compare bit 8 of the overflow register is writable
            keep = self.crtc[CRTC_OVERFLOW] & ~CRTC_OVERFLOW_PROTECT_EXEMPT
            value = keep | (value & CRTC_OVERFLOW_PROTECT_EXEMPT)
        self.crtc[index] = value

    def _dac_step(self, which: str) -> None:
        """Three components per entry, then the index auto-increments (the reference, DAC)."""
        self.dac_component += 1
        if self.dac_component == 3:
            self.dac_component = 0
            if which == "read":
                self.dac_read_index = (self.dac_read_index + 1) & 0xFF
            else:
                self.dac_write_index = (self.dac_write_index + 1) & 0xFF

    def input_status_1(self) -> int:
        """Bit 3: vertical retrace; bit 0: display disabled (either blanking), from the clock."""
        t = self.clock.now() % FRAME_NS
        line, in_line = divmod(t, LINE_NS)
        value = 0
        if VBLANK_START_LINE + (TOTAL_LINES - VBLANK_START_LINE) // 4 <= line < (
                VBLANK_START_LINE + (TOTAL_LINES - VBLANK_START_LINE) // 4 + VRETRACE_LINES):
            value |= STATUS1_VRETRACE
        if line >= VBLANK_START_LINE or in_line >= LINE_NS - HBLANK_NS:
            value |= STATUS1_DISPLAY_DISABLED
        return value

    # -- text geometry ---------------------------------------------------------------------------
    @property
    def graphics_mode(self) -> bool:
        return bool(self.attr[ATTR_MODE_CONTROL] & ATTR_MODE_GRAPHICS)

    def columns(self) -> int:
        return self.crtc[CRTC_H_DISPLAY_END] + 1

    def char_height(self) -> int:
        return (self.crtc[CRTC_MAX_SCAN_LINE] & CRTC_MSL_MASK) + 1

    def display_lines(self) -> int:
        """Vertical display end + 1, with bits 8 and 9 from the overflow register."""
        ov = self.crtc[CRTC_OVERFLOW]
        vde = (self.crtc[CRTC_V_DISPLAY_END] | (0x100 if ov & CRTC_OVERFLOW_VDE8 else 0)
               | (0x200 if ov & CRTC_OVERFLOW_VDE9 else 0))
        lines = vde + 1
        if self.crtc[CRTC_MAX_SCAN_LINE] & CRTC_MSL_DOUBLE_SCAN:
            lines //= 2
        return lines

    def rows(self) -> int:
        """25 for mode 3 (400 lines / 16), 50 with the 8-line font (400 / 8)."""
        return max(1, self.display_lines() // self.char_height())

    def row_stride(self) -> int:
        """Cells from one row to the next: the offset register counts words, 2 cells each."""
        return (self.crtc[CRTC_OFFSET] * 2) or self.columns()

    def start_address(self) -> int:
        return (self.crtc[CRTC_START_HIGH] << 8) | self.crtc[CRTC_START_LOW]

    def _text_map(self) -> tuple[int, int]:
        return MEMORY_MAPS[(self.gc[GC_MISC] & GC_MISC_MAP_MASK) >> GC_MISC_MAP_SHIFT]

    def cursor(self) -> tuple[int, int, int, int, bool]:
        """(row, column, start scan line, end scan line, visible) from CRTC 0Ah/0Bh/0Eh/0Fh."""
        loc = (self.crtc[CRTC_CURSOR_HIGH] << 8) | self.crtc[CRTC_CURSOR_LOW]
        rel = loc - self.start_address()
        stride = self.row_stride()
        row, col = divmod(rel, stride) if rel >= 0 else (-1, -1)
        start = self.crtc[CRTC_CURSOR_START] & CRTC_CURSOR_SCANLINE_MASK
        end = self.crtc[CRTC_CURSOR_END] & CRTC_CURSOR_SCANLINE_MASK
        visible = (not self.crtc[CRTC_CURSOR_START] & CRTC_CURSOR_DISABLE and 0 <= row < self.rows()
                   and 0 <= col < self.columns() and start <= end)
        return row, col, start, end, visible

    def cells(self) -> list[tuple[bytes, bytes]]:
        """Per row: (character bytes, attribute bytes) of the visible text page."""
        base, span = self._text_map()
        cols, stride, start = self.columns(), self.row_stride(), self.start_address()
        vram = self.vram
        out = []
        for r in range(self.rows()):
            first = start + r * stride
            idx = (base + (2 * (first + np.arange(cols))) % span)
            out.append((vram[idx].tobytes(), vram[idx + 1].tobytes()))
        return out

    # -- rendering -------------------------------------------------------------------------------
    def text_lines(self) -> list[str]:
        """The screen's rows as Unicode (CP437 glyphs), full width."""
        if self.graphics_mode:
            return []
        return ["".join(CP437[c] for c in chars) for chars, _ in self.cells()]

    def screendump_text(self) -> str:
        """`--screendump x.txt`: one line per row, trailing spaces stripped, UTF-8 ready."""
        return "".join(line.rstrip(" \u00a0") + "\n" for line in self.text_lines())

    def frame(self) -> tuple:
        """A snapshot to pass back to `render_ansi` as `prev`."""
        return (self.rows(), self.columns(), tuple(self.cells()), self.cursor())

    def render_ansi(self, prev: tuple | None = None) -> tuple[str, tuple]:
        """ANSI escapes that bring a terminal from `prev` (a `frame()`, or None) to the current screen.

        Only changed rows are redrawn. Colours are the 16 CGA colours of the attribute byte
        (foreground bits 0-3, background bits 4-6, bit 7 blink or bright background as the
        attribute mode control says); palette/DAC reprogramming is not reflected.
        """
        cur = self.frame()
        rows, cols, cells, cursor = cur
        full = prev is None or prev[0] != rows or prev[1] != cols
        parts: list[str] = []
        if full:
            parts.append(f"{ESC}[0m{ESC}[2J")
        blink_mode = bool(self.attr[ATTR_MODE_CONTROL] & ATTR_MODE_BLINK)
        for r, (chars, attrs) in enumerate(cells):
            if not full and prev[2][r] == (chars, attrs):
                continue
            parts.append(f"{ESC}[{r + 1};1H")
            last_attr = None
            for ch, at in zip(chars, attrs, strict=True):
                if at != last_attr:
                    parts.append(_sgr(at, blink_mode))
                    last_attr = at
                parts.append(CP437[ch])
            parts.append(f"{ESC}[0m")
        if full or cursor != prev[3] or len(parts) > 0:
            row, col, _, _, visible = cursor
            if visible:
                parts.append(f"{ESC}[{row + 1};{col + 1}H{ESC}[?25h")
            else:
                parts.append(f"{ESC}[?25l")
        return "".join(parts), cur

    # -- state -----------------------------------------------------------------------------------
    def state(self) -> dict:
        """Registers and the window contents (as bytes)."""
        return {"misc": self.misc, "seq": list(self.seq), "crtc": list(self.crtc), "gc": list(self.gc),
                "attr": list(self.attr), "seq_index": self.seq_index, "gc_index": self.gc_index,
                "crtc_index": self.crtc_index, "attr_index": self.attr_index,
                "attr_flipflop": self.attr_flipflop, "feature": self.feature, "dac": list(self.dac),
                "dac_read_index": self.dac_read_index, "dac_write_index": self.dac_write_index,
                "dac_component": self.dac_component, "dac_state": self.dac_state,
                "dac_mask": self.dac_mask, "vram": self.vram.tobytes()}

    def load_state(self, s: dict) -> None:
        for key in ("misc", "seq_index", "gc_index", "crtc_index", "attr_index", "attr_flipflop",
                    "feature", "dac_read_index", "dac_write_index", "dac_component", "dac_state",
                    "dac_mask"):
            setattr(self, key, s[key])
        self.seq, self.crtc, self.gc = list(s["seq"]), list(s["crtc"]), list(s["gc"])
        self.attr, self.dac = list(s["attr"]), list(s["dac"])
        self.vram[:] = np.frombuffer(s["vram"], dtype=np.uint8)


def _sgr(attr: int, blink_mode: bool) -> str:
    fg = attr & 0x0F
    bg = (attr >> 4) & (0x07 if blink_mode else 0x0F)
    fg_code = (90 if fg & 8 else 30) + CGA_TO_ANSI[fg & 7]
    bg_code = (100 if bg & 8 else 40) + CGA_TO_ANSI[bg & 7]
    blink = ";5" if blink_mode and attr & 0x80 else ""
    return f"{ESC}[0;{fg_code};{bg_code}{blink}m"
