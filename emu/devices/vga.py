"""VGA: the register file, display memory in four planes, the A0000-BFFFF window and rendering.

References: IBM VGA Technical Reference ("the reference"): external registers (misc output, input
status 0/1, feature control), sequencer, CRT controller, graphics controller, attribute controller,
and the DAC; FreeVGA's register pages describe the same bits.

Video memory is four 64 KiB planes (`emu/devices/vgamem.py`: chain-4, odd/even, the write and read
modes, the latches). The CPU reaches it in one of two ways, chosen from the registers after every
write that could change the memory configuration:

- fast paths, where the window is plain RAM: `vram` is the machine's slice of its memory array
  for A0000-BFFFF (`physmap.mem[0xA0000:0xC0000]`), so the compiled loop writes video memory
  without leaving it. Both need write mode 0 without set/reset, rotation or logical function, a
  full bit mask and read mode 0, which makes the CPU view a plain copy of some plane bytes:
  * text (odd/even, planes 0 and 1 enabled, map B8000 or B0000): the 32 KiB text window's even
    bytes are plane 0 (characters), its odd bytes plane 1 (attributes), at even plane addresses;
  * chain-4 (mode 13h: all planes enabled, map A0000): window byte 4k + p is plane p's byte 4k.
  These bytes are copied into the planes when needed (rendering, leaving the fast path, the BIOS's
  direct plane access); plane 2 (the text font) and the other plane bytes live in the planes.
- device path: any other configuration (a font upload through plane 2, the 16-colour modes, mode
  X) maps the whole window as MMIO; `read`/`write` (the `MmioRegion` handlers) decode each byte
  through the graphics controller. Switching copies the window in or out and calls
  `on_window_change(mmio)` so that the machine changes its physical map (and flushes the TLB).

Rendering: `render_rgb()` (`emu/devices/vgarender.py`) scans the planes out as the CRTC,
attribute controller and DAC describe; `cells()`/`text_lines()`/`render_ansi()` read the text page.

Timing: input status 1 (3DAh) derives vertical retrace and display-disable from the virtual clock
(70 Hz frames of 449 lines, as mode 3), so a guest waiting for retrace sees it come and go
deterministically under -icount, with no timer armed.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager

import numpy as np

from emu.clock import NS_PER_SECOND, VirtualClock
from emu.devices import vgafont, vgamodes
from emu.devices import vgamem as M
from emu.devices.bus import IoBus, MmioRegion
from emu.devices.cp437 import CP437

WINDOW_BASE = 0xA0000
WINDOW_SIZE = 0x20000  # A0000-BFFFF
MEMORY_MAPS = M.MEMORY_MAPS
MONO_TEXT_OFFSET = 0x10000  # B0000
COLOUR_TEXT_OFFSET = 0x18000  # B8000
TEXT_WINDOW_SIZE = 0x8000
FAST_TEXT, FAST_CHAIN4 = "text", "chain4"  # the plain-RAM configurations of the window
BLANK_CHAR, BLANK_ATTR = 0x20, 0x07  # what a mode set's clear leaves in the text window

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
ATTR_PALETTE_ENTRIES = 16
ATTR_MODE_CONTROL = 0x10
ATTR_MODE_GRAPHICS = 0x01
ATTR_MODE_LINE_GRAPHICS = 0x04  # 9-dot cells: column 9 repeats column 8 for C0h-DFh
ATTR_MODE_BLINK = 0x08  # attribute bit 7 = blink (else background intensity)
ATTR_MODE_8BIT = 0x40  # 256-colour: two 4-bit halves make one pixel
ATTR_MODE_P54_SELECT = 0x80  # colour select bits 0-1 replace palette bits 4-5
ATTR_COLOR_PLANE_ENABLE = 0x12
ATTR_COLOR_SELECT = 0x14
ATTR_COUNT = 0x15

# sequencer
SEQ_COUNT = 5
SEQ_CLOCKING_MODE = 1
SEQ_CLOCK_8DOT = 0x01  # set: 8-dot character cells (else 9)
SEQ_SCREEN_OFF = 0x20
SEQ_MAP_MASK = M.SEQ_MAP_MASK
SEQ_CHARACTER_MAP = 0x03
SEQ_MEMORY_MODE = M.SEQ_MEMORY_MODE
TEXT_MAP_MASK = 0x03  # text modes write planes 0 and 1 only
# graphics controller
GC_COUNT = 9
GC_MODE_256 = 0x40  # shift register: 256-colour
FONT_SLOT = 32  # bytes per character in plane 2
FONT_PLANE = 2
# character map select -> plane 2 offset of the font (the reference, sequencer register 03h)
FONT_BASES = (0x0000, 0x4000, 0x8000, 0xC000, 0x2000, 0x6000, 0xA000, 0xE000)
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
CRTC_UNDERLINE = 0x14
CRTC_UNDERLINE_DWORD = 0x40  # doubleword addressing (mode 13h)
CRTC_MODE_CONTROL = 0x17
CRTC_MODE_BYTE = 0x40  # byte addressing (else word)
CRTC_PROTECTED_LAST = 0x07
DAC_ENTRIES = 256
DAC_COMPONENT_MASK = 0x3F  # 6-bit DAC
DAC_STATE_READ, DAC_STATE_WRITE = 0x03, 0x00

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
    """A VGA: registers, four planes behind the A0000-BFFFF window, text and graphics rendering."""

    def __init__(self, clock: VirtualClock, vram=None,
                 on_window_change: Callable[[bool], None] | None = None):
        self.clock = clock
        self.vram = np.zeros(WINDOW_SIZE, dtype=np.uint8) if vram is None else vram
        if len(self.vram) != WINDOW_SIZE:
            raise ValueError("VGA window buffer must be 128 KiB")
        # the register lists are shared with the memory model: always update them in place
        self.seq = [0] * SEQ_COUNT
        self.gc = [0] * GC_COUNT
        self.crtc = [0] * CRTC_COUNT
        self.attr = [0] * ATTR_COUNT
        self.dac = [0] * (DAC_ENTRIES * 3)
        self.mem = M.PlanarMemory(self.seq, self.gc)
        self.planes = self.mem.planes
        self.on_window_change = on_window_change
        self.fast: tuple[str, int] | None = (FAST_TEXT, COLOUR_TEXT_OFFSET)  # see fast_path()
        self.reset()

    # -- wiring ----------------------------------------------------------------------------------
    def attach(self, bus: IoBus) -> None:
        bus.register(0x3C0, 0x10, self.io_read, self.io_write, owner=self)
        for port in (CRTC_INDEX_MONO, CRTC_DATA_MONO, STATUS1_MONO,
                     CRTC_INDEX_COLOUR, CRTC_DATA_COLOUR, STATUS1_COLOUR):
            bus.register(port, 1, self.io_read, self.io_write, owner=self)

    def mmio_region(self) -> MmioRegion:
        """The A0000-BFFFF window as an MMIO region (device path; plain memory on the fast path)."""
        return MmioRegion(WINDOW_BASE, WINDOW_SIZE, self.read, self.write, owner=self)

    def reset(self) -> None:
        """Registers, DAC and font as the BIOS's mode 3 leaves them; video memory is kept."""
        self.set_mode(vgamodes.MODE3, clear=False)

    def set_mode(self, mode: vgamodes.VgaMode, clear: bool = True) -> None:
        """Program every register from a mode table, load the DAC, the font (text modes) and
        optionally clear the planes, as a BIOS mode set does."""
        self._pull()  # the planes hold everything now; the window is redone below
        self.misc = mode.misc
        self.seq[:] = mode.seq
        self.crtc[:] = mode.crtc
        self.gc[:] = mode.gc
        self.attr[:] = mode.attr
        self.seq_index = self.gc_index = self.crtc_index = 0
        self.attr_index = ATTR_PAS
        self.attr_flipflop = 0  # 0: next 3C0h write is an index, 1: data
        self.feature = 0
        self.dac[:] = [0] * (DAC_ENTRIES * 3)
        for i, rgb in enumerate(vgamodes.DAC_TABLES[mode.dac]()):
            self.dac[3 * i: 3 * i + 3] = rgb
        self.dac_read_index = self.dac_write_index = 0
        self.dac_component = 0
        self.dac_state = DAC_STATE_WRITE
        self.dac_mask = 0xFF
        self.mem.latch = 0
        if clear:
            self.planes[:] = 0
        if not mode.graphics:
            self.load_font(vgafont.font(mode.char_height), mode.char_height)
        self._update_window(synced=True)
        if clear and not mode.graphics:
            self.clear_text(BLANK_CHAR, BLANK_ATTR)

    def load_font(self, data: bytes, height: int, first: int = 0, block: int = 0) -> None:
        """Glyphs of `height` bytes each into plane 2 (32-byte slots) at character map `block`,
        starting with character `first`, as INT 10h AH=11h does."""
        base = FONT_BASES[block & 7]
        count = len(data) // height
        slots = self.planes[FONT_PLANE, base: base + 256 * FONT_SLOT].reshape(256, FONT_SLOT)
        glyphs = np.frombuffer(data[: count * height], dtype=np.uint8).reshape(count, height)
        n = min(count, 256 - first)
        slots[first: first + n, :] = 0
        slots[first: first + n, :height] = glyphs[:n]

    def clear_text(self, char: int, attr: int) -> None:
        """Fill the 32 KiB text window with one cell (mode set with the clear bit)."""
        with self.planes_access() as planes:
            planes[0, 0:TEXT_WINDOW_SIZE:2] = char
            planes[1, 0:TEXT_WINDOW_SIZE:2] = attr

    # -- the CPU window ----------------------------------------------------------------------------
    @property
    def window_mmio(self) -> bool:
        """The window goes through the device (no fast path in effect)."""
        return self.fast is None

    def fast_path(self) -> tuple[str, int] | None:
        """(kind, window offset) of the plain-memory configuration the registers describe, or
        None. Both kinds need write mode 0 without set/reset, rotation or logical function, a full
        bit mask and read mode 0. Text: odd/even, planes 0 and 1, map B8000 or B0000. Chain-4:
        all four planes, map A0000 (64 KiB)."""
        seq, gc = self.seq, self.gc
        if (gc[M.GC_MODE] & (M.GC_MODE_WRITE_MASK | M.GC_MODE_READ_1) or gc[M.GC_ENABLE_SET_RESET] & M.ALL_PLANES
                or gc[M.GC_DATA_ROTATE] or gc[M.GC_BIT_MASK] != 0xFF):
            return None
        memory_mode, mask, window = seq[SEQ_MEMORY_MODE], seq[SEQ_MAP_MASK] & M.ALL_PLANES, self.mem.map_window()
        if memory_mode & M.SEQ_MM_CHAIN4:
            return (FAST_CHAIN4, window[0]) if mask == M.ALL_PLANES and window == MEMORY_MAPS[1] else None
        if (not memory_mode & M.SEQ_MM_ODD_EVEN_DISABLE and gc[M.GC_MODE] & M.GC_MODE_ODD_EVEN
                and mask == TEXT_MAP_MASK and not gc[M.GC_READ_MAP] & 2
                and window in (MEMORY_MAPS[2], MEMORY_MAPS[3])):
            return FAST_TEXT, window[0]
        return None

    def _update_window(self, synced: bool = False) -> None:
        """After a register write: move between the fast paths and the device path if needed.
        `synced`: the planes already hold everything (nothing to copy in from the window)."""
        new = self.fast_path()
        if new == self.fast:
            if new is not None and synced:
                self._push(new)
            return
        if not synced:
            self._pull()
        if new is not None:
            self._push(new)
        was_mmio = self.fast is None
        self.fast = new
        if was_mmio != (new is None) and self.on_window_change is not None:
            self.on_window_change(new is None)

    def sync_planes(self) -> None:
        """Bring the planes up to date with what the CPU wrote through a fast path."""
        self._pull()

    def _pull(self) -> None:
        """Fast path: copy what the CPU wrote to the RAM window into the planes."""
        if self.fast is None:
            return
        kind, base = self.fast
        if kind == FAST_TEXT:
            window = self.vram[base: base + TEXT_WINDOW_SIZE]
            self.planes[0, 0:TEXT_WINDOW_SIZE:2] = window[0::2]
            self.planes[1, 0:TEXT_WINDOW_SIZE:2] = window[1::2]
        else:  # chain-4: window byte 4k + p is plane p's byte 4k
            window = self.vram[base: base + M.PLANE_SIZE]
            self.planes[:, 0::M.PLANES] = window.reshape(-1, M.PLANES).T

    def _push(self, fast: tuple[str, int]) -> None:
        """Entering a fast path: the planes' CPU-visible bytes into the RAM window."""
        kind, base = fast
        if kind == FAST_TEXT:
            window = self.vram[base: base + TEXT_WINDOW_SIZE]
            window[0::2] = self.planes[0, 0:TEXT_WINDOW_SIZE:2]
            window[1::2] = self.planes[1, 0:TEXT_WINDOW_SIZE:2]
        else:
            window = self.vram[base: base + M.PLANE_SIZE]
            window.reshape(-1, M.PLANES)[:] = self.planes[:, 0::M.PLANES].T

    @contextmanager
    def planes_access(self):
        """For firmware that reads or edits the planes directly (the BIOS's pixel and graphics text
        services): the fast path's window is copied in before and back after."""
        self._pull()
        try:
            yield self.planes
        finally:
            if self.fast is not None:
                self._push(self.fast)

    def read(self, offset: int, size: int) -> int:
        if not self.window_mmio:
            return int.from_bytes(self.vram[offset: offset + size].tobytes(), "little")
        value = 0
        for i in range(size):
            value |= self.mem.read((offset + i) % WINDOW_SIZE) << (8 * i)
        return value

    def write(self, offset: int, size: int, value: int) -> None:
        if not self.window_mmio:
            self.vram[offset: offset + size] = np.frombuffer(
                (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little"), dtype=np.uint8)
            return
        for i in range(size):
            self.mem.write((offset + i) % WINDOW_SIZE, (value >> (8 * i)) & 0xFF)

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
                if self.seq_index in (SEQ_MAP_MASK, SEQ_MEMORY_MODE):
                    self._update_window()
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
                if self.gc_index not in (M.GC_COLOR_COMPARE, M.GC_COLOR_DONT_CARE):
                    self._update_window()

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

    def graphics_size(self) -> tuple[int, int]:
        """(width, height) in pixels of a graphics mode: 8 dots per character clock (4 pixels in
        256-colour mode), display lines over the scan lines each memory row repeats."""
        per_clock = 4 if self.gc[M.GC_MODE] & GC_MODE_256 else 8
        return self.columns() * per_clock, max(1, self.display_lines() // self.char_height())

    def address_unit(self) -> int:
        """Plane bytes per character clock: 4 in doubleword mode (13h), 2 in word mode (text), 1."""
        if self.crtc[CRTC_UNDERLINE] & CRTC_UNDERLINE_DWORD:
            return 4
        return 1 if self.crtc[CRTC_MODE_CONTROL] & CRTC_MODE_BYTE else 2

    def row_bytes(self) -> int:
        """Plane bytes from one character row (text) or pixel row (graphics) to the next."""
        return self.crtc[CRTC_OFFSET] * 2 * self.address_unit()

    def start_plane_address(self) -> int:
        return self.start_address() * self.address_unit()

    def cell_addresses(self) -> np.ndarray:
        """Plane addresses of the visible text cells, shape (rows, columns)."""
        unit = self.address_unit()
        rows = np.arange(self.rows())[:, None] * (self.row_bytes() or self.columns() * unit)
        cols = np.arange(self.columns())[None, :] * unit
        return (self.start_plane_address() + rows + cols) & M.PLANE_ADDR_MASK

    def text_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(characters, attributes) of the visible page from planes 0 and 1, shape (rows, columns)."""
        self._pull()
        idx = self.cell_addresses()
        return self.planes[0][idx], self.planes[1][idx]

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
        chars, attrs = self.text_arrays()
        return [(c.tobytes(), a.tobytes()) for c, a in zip(chars, attrs, strict=True)]

    # -- rendering -------------------------------------------------------------------------------
    def text_lines(self) -> list[str]:
        """The screen's rows as Unicode (CP437 glyphs), full width."""
        if self.graphics_mode:
            return []
        return ["".join(CP437[c] for c in chars) for chars, _ in self.cells()]

    def screendump_text(self) -> str:
        """`--screendump x.txt`: one line per row, trailing spaces stripped, UTF-8 ready (empty in
        a graphics mode: there is no text page)."""
        return "".join(line.rstrip(" \u00a0") + "\n" for line in self.text_lines())

    def render_rgb(self) -> np.ndarray:
        """The screen as the monitor shows it: (height, width, 3) uint8 RGB (see vgarender)."""
        from emu.devices.vgarender import render

        return render(self)

    def dac_rgb(self) -> np.ndarray:
        """The 256 DAC entries as 8-bit RGB, shape (256, 3) (6-bit values scaled to 0-255)."""
        v = np.array(self.dac, dtype=np.uint16).reshape(DAC_ENTRIES, 3)
        return ((v << 2) | (v >> 4)).astype(np.uint8)

    def attribute_dac_index(self, colour: int) -> int:
        """A 4-bit colour through the attribute controller: the DAC entry it selects."""
        a = self.attr
        pal = a[colour & a[ATTR_COLOR_PLANE_ENABLE] & 0x0F]
        select = a[ATTR_COLOR_SELECT]
        if a[ATTR_MODE_CONTROL] & ATTR_MODE_P54_SELECT:
            pal = (pal & 0x0F) | ((select & 0x03) << 4)
        return ((pal & 0x3F) | ((select & 0x0C) << 4)) & self.dac_mask

    def frame(self) -> tuple:
        """A snapshot to pass back to `render_ansi` as `prev`."""
        return (self.rows(), self.columns(), tuple(self.cells()), self.cursor())

    def render_ansi(self, prev: tuple | None = None) -> tuple[str, tuple]:
        """ANSI escapes that bring a terminal from `prev` (a `frame()`, or None) to the current screen.

        Only changed rows are redrawn. Colours are the 16 CGA colours of the attribute byte
        (foreground bits 0-3, background bits 4-6, bit 7 blink or bright background as the
        attribute mode control says); palette/DAC reprogramming is not reflected.
        """
        if self.graphics_mode:  # no text to show: say so, once
            cur = ("graphics", *self.graphics_size())
            if prev == cur:
                return "", cur
            w, h = cur[1:]
            return (f"{ESC}[0m{ESC}[2J{ESC}[1;1H[VGA graphics mode {w}x{h}: "
                    f"--screendump FILE.png shows it]{ESC}[?25l"), cur
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
        """Registers, the window contents and the planes (as bytes)."""
        return {"misc": self.misc, "seq": list(self.seq), "crtc": list(self.crtc), "gc": list(self.gc),
                "attr": list(self.attr), "seq_index": self.seq_index, "gc_index": self.gc_index,
                "crtc_index": self.crtc_index, "attr_index": self.attr_index,
                "attr_flipflop": self.attr_flipflop, "feature": self.feature, "dac": list(self.dac),
                "dac_read_index": self.dac_read_index, "dac_write_index": self.dac_write_index,
                "dac_component": self.dac_component, "dac_state": self.dac_state,
                "dac_mask": self.dac_mask, "vram": self.vram.tobytes(), "memory": self.mem.state(),
                "fast": self.fast}

    def load_state(self, s: dict) -> None:
        for key in ("misc", "seq_index", "gc_index", "crtc_index", "attr_index", "attr_flipflop",
                    "feature", "dac_read_index", "dac_write_index", "dac_component", "dac_state",
                    "dac_mask"):
            setattr(self, key, s[key])
        self.seq[:], self.crtc[:], self.gc[:] = s["seq"], s["crtc"], s["gc"]
        self.attr[:], self.dac[:] = s["attr"], s["dac"]
        self.vram[:] = np.frombuffer(s["vram"], dtype=np.uint8)
        self.mem.load_state(s["memory"])
        fast = tuple(s["fast"]) if s["fast"] is not None else None
        if self.window_mmio != (fast is None) and self.on_window_change is not None:
            self.on_window_change(fast is None)
        self.fast = fast


def _sgr(attr: int, blink_mode: bool) -> str:
    fg = attr & 0x0F
    bg = (attr >> 4) & (0x07 if blink_mode else 0x0F)
    fg_code = (90 if fg & 8 else 30) + CGA_TO_ANSI[fg & 7]
    bg_code = (100 if bg & 8 else 40) + CGA_TO_ANSI[bg & 7]
    blink = ";5" if blink_mode and attr & 0x80 else ""
    return f"{ESC}[0;{fg_code};{bg_code}{blink}m"
