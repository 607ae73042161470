"""INT 10h for the VGA's graphics modes, the palette and DAC, and fonts (the parts beyond text output).

`Video(bios)` serves, on the guest registers of the `Bios` it belongs to (IBM VGA BIOS interface):

- AH=00h for modes 0Dh, 0Eh, 10h, 12h, 13h: the mode table's registers (`emu/devices/vgamodes.py`),
  the DAC, the BIOS data area, INT 43h/1Fh pointing at the ROM fonts;
- AH=0Ch/0Dh: write/read a pixel (AL bit 7: XOR in the 16-colour modes), page 0;
- AH=10h: palette registers (AL=00h-03h, 07h-09h), colour paging (13h, 1Ah), DAC registers (10h,
  12h, 15h, 17h), PEL mask (18h, 19h), grey-scale summing (1Bh);
- AH=11h: load a user font (00h/10h), the ROM 8x14/8x8/8x16 fonts (01h/02h/04h and 11h/12h/14h,
  which also set the rows), the block specifier (03h), the graphics font vectors (20h-24h) and
  font information (30h: ES:BP to the ROM fonts, CX bytes per character, DL rows - 1);
- text output in graphics modes for the teletype, AH=09h/0Ah and scrolling: glyphs from the font at
  INT 43h drawn into the planes in colour BL (background 0), as the IBM BIOS does.

The firmware writes the planes directly (page 0; the CRTC start address is not consulted), which is
what a BIOS achieves through the graphics controller.
"""

from __future__ import annotations

from emu.cpu import state as S
from emu.devices import vgafont, vgamodes
from emu.devices.vga import (
    ATTR_COLOR_SELECT,
    ATTR_MODE_BLINK,
    ATTR_MODE_CONTROL,
    ATTR_MODE_P54_SELECT,
    ATTR_PALETTE_ENTRIES,
    CRTC_MAX_SCAN_LINE,
    CRTC_MSL_MASK,
    DAC_COMPONENT_MASK,
    GC_MODE_256,
    SEQ_CHARACTER_MAP,
)
from emu.devices.vgamem import GC_MODE

from . import bda as B
from . import rom as R

ATTR_OVERSCAN = 0x11
XOR_PIXEL = 0x80  # AL bit 7 in AH=0Ch (16-colour modes)
PIXELS_PER_BYTE_PLANAR = 8
PIXELS_PER_CLOCK_256 = 4
GLYPH_WIDTH = 8
TEXT_SCAN_LINES = 400  # the text modes' display height, for rows = 400 / character height
GREY_WEIGHTS = (30, 59, 11)  # % red, green, blue (the BIOS's grey-scale summing)
INT_1F, INT_43 = 0x1F, 0x43
VGA_FLAGS_GREY = 0x02  # BDA 89h bit 1: grey-scale summing on

# BDA values of the graphics modes: (columns, rows - 1, character height, page size)
_BDA = {0x0D: (40, 24, 8, 0x2000), 0x0E: (80, 24, 8, 0x4000), 0x10: (80, 24, 14, 0x8000),
        0x12: (80, 29, 16, 0xA000), 0x13: (40, 24, 8, 0xFA00)}
_ROM_FONTS = {8: R.FONT8X8, 14: R.FONT8X14, 16: R.FONT8X16}
_FONT_LOADS = {0x01: 14, 0x02: 8, 0x04: 16}  # AH=11h AL (low nibble) -> ROM font height


class Video:
    def __init__(self, bios):
        self.b = bios
        self.m = bios.m
        self.vga = bios.m.vga

    # -- state -------------------------------------------------------------------------------------
    def graphics(self) -> bool:
        """The current BIOS mode is one of the graphics modes served here."""
        return self.b.ram.r8(B.BDA + B.VIDEO_MODE) in _BDA

    def _256(self) -> bool:
        return bool(self.vga.gc[GC_MODE] & GC_MODE_256)

    def char_height(self) -> int:
        return self.b.ram.r16(B.BDA + B.CHAR_HEIGHT) or 16

    # -- AH=00h --------------------------------------------------------------------------------------
    def set_mode(self, mode: int, clear: bool) -> bool:
        """Set a graphics mode; False for a mode this module does not handle (the text modes)."""
        if mode not in _BDA:
            return False
        ram, b = self.b.ram, B.BDA
        table = vgamodes.mode(mode)
        self.vga.set_mode(table, clear=clear)
        cols, rows1, height, page = _BDA[mode]
        ram.w8(b + B.VIDEO_MODE, mode)
        ram.w16(b + B.VIDEO_COLUMNS, cols)
        ram.w16(b + B.VIDEO_PAGE_SIZE, page)
        ram.w16(b + B.VIDEO_PAGE_START, 0)
        ram.w8(b + B.ACTIVE_PAGE, 0)
        ram.w8(b + B.VIDEO_ROWS, rows1)
        ram.w16(b + B.CHAR_HEIGHT, height)
        for p in range(8):
            ram.w16(b + B.CURSOR_POS + 2 * p, 0)
        self.set_font_vectors(height)
        return True

    def set_font_vectors(self, height: int) -> None:
        """INT 43h: the font of the current character height; INT 1Fh: the 8x8 font's upper half."""
        self.b.ram.w16(INT_43 * 4, _ROM_FONTS[height])
        self.b.ram.w16(INT_43 * 4 + 2, R.ROM_SEGMENT)
        self.b.ram.w16(INT_1F * 4, R.FONT8X8 + 128 * 8)
        self.b.ram.w16(INT_1F * 4 + 2, R.ROM_SEGMENT)

    # -- pixels --------------------------------------------------------------------------------------
    def _address(self, x: int, y: int) -> tuple[int, int]:
        """(plane address, bit or plane) of pixel (x, y) on page 0."""
        vga = self.vga
        unit, row = vga.address_unit(), vga.row_bytes()
        if self._256():
            return (y * row + (x // PIXELS_PER_CLOCK_256) * unit) & 0xFFFF, x % PIXELS_PER_CLOCK_256
        return (y * row + (x // PIXELS_PER_BYTE_PLANAR) * unit) & 0xFFFF, 0x80 >> (x % PIXELS_PER_BYTE_PLANAR)

    def put_pixel(self, x: int, y: int, colour: int) -> None:
        """One pixel into the planes (callers hold `vga.planes_access()`)."""
        planes = self.vga.planes
        addr, sel = self._address(x, y)
        if self._256():
            planes[sel, addr] = colour & 0xFF
            return
        for p in range(4):
            value = int(planes[p, addr])
            if colour & XOR_PIXEL:
                value ^= sel if colour >> p & 1 else 0
            else:
                value = (value | sel) if colour >> p & 1 else (value & ~sel)
            planes[p, addr] = value & 0xFF

    def get_pixel(self, x: int, y: int) -> int:
        planes = self.vga.planes
        addr, sel = self._address(x, y)
        if self._256():
            return int(planes[sel, addr])
        return sum(1 << p for p in range(4) if planes[p, addr] & sel)

    # -- text in graphics modes ------------------------------------------------------------------------
    def glyph(self, ch: int) -> bytes:
        """The glyph rows from the font INT 43h points at (a guest may install its own)."""
        height = self.char_height()
        ram = self.b.ram
        addr = (ram.r16(INT_43 * 4 + 2) << 4) + ram.r16(INT_43 * 4)
        return self.b.core.read_phys(addr + ch * height, height)

    def draw_char(self, row: int, col: int, ch: int, colour: int | None) -> None:
        with self.vga.planes_access():
            self._draw_char(row, col, ch, colour)

    def _draw_char(self, row: int, col: int, ch: int, colour: int | None) -> None:
        colour = 0x0F if colour is None else colour
        height = self.char_height()
        for r, bits in enumerate(self.glyph(ch)):
            for i in range(GLYPH_WIDTH):
                on = bits & (0x80 >> i)
                x, y = col * GLYPH_WIDTH + i, row * height + r
                if colour & XOR_PIXEL and not self._256():
                    if on:
                        self.put_pixel(x, y, colour)
                else:
                    self.put_pixel(x, y, colour if on else 0)

    def put_chars(self, page: int, ch: int, colour: int | None, count: int) -> None:
        """AH=09h/0Ah in a graphics mode: `count` copies from the cursor on, no cursor move."""
        row, col = self.b.get_cursor(page)
        cols = self.b.video_cols()
        with self.vga.planes_access():
            for i in range(count):
                r, c = row + (col + i) // cols, (col + i) % cols
                if r > self.b.video_rows() - 1:
                    break
                self._draw_char(r, c, ch, colour)

    def scroll(self, lines: int, colour: int, top: int, left: int, bottom: int, right: int, up: bool) -> None:
        """AH=06h/07h and the teletype's scroll in a graphics mode: move whole character rows of
        pixels in all four planes, fill the opened rows with `colour`."""
        vga = self.vga
        height, row = self.char_height(), vga.row_bytes()
        per_byte = PIXELS_PER_CLOCK_256 if self._256() else PIXELS_PER_BYTE_PLANAR
        unit = vga.address_unit()
        b0, b1 = left * GLYPH_WIDTH // per_byte * unit, (right + 1) * GLYPH_WIDTH // per_byte * unit
        n = bottom - top + 1
        if lines == 0 or lines > n:
            lines = n
        with vga.planes_access() as planes:
            self._scroll(planes, lines, colour, top, bottom, up, height, row, b0, b1)

    def _scroll(self, planes, lines: int, colour: int, top: int, bottom: int, up: bool, height: int,
                row: int, b0: int, b1: int) -> None:
        def line(text_row: int, scan: int) -> slice:
            a = (text_row * height + scan) * row
            return slice(a + b0, a + b1)

        order = range(top, bottom + 1 - lines) if up else range(bottom, top - 1 + lines, -1)
        for r in order:
            src = r + lines if up else r - lines
            for s in range(height):
                planes[:, line(r, s)] = planes[:, line(src, s)]
        blank = range(bottom + 1 - lines, bottom + 1) if up else range(top, top + lines)
        for r in blank:
            for s in range(height):
                if self._256():
                    planes[:, line(r, s)] = colour & 0xFF
                else:
                    for p in range(4):
                        planes[p, line(r, s)] = 0xFF if colour >> p & 1 else 0

    # -- AH=0Ch, 0Dh, 10h ------------------------------------------------------------------------------
    def int10(self, ah: int, al: int) -> None:
        b = self.b
        if ah == 0x0C:
            if self.graphics():
                with self.vga.planes_access():
                    self.put_pixel(b.r16(S.ECX), b.r16(S.EDX), al)
        elif ah == 0x0D:
            if self.graphics():
                with self.vga.planes_access():
                    b.set_lo(S.EAX, self.get_pixel(b.r16(S.ECX), b.r16(S.EDX)))
            else:
                b.set_lo(S.EAX, 0)
        elif ah == 0x10:
            self.palette(al)

    def _table_addr(self) -> int:
        return (self.b.seg(S.ES) << 4) + self.b.r16(S.EDX)

    def palette(self, al: int) -> None:
        b, vga = self.b, self.vga
        bh, bl = b.hi(S.EBX), b.lo(S.EBX)
        if al == 0x00:
            if bl < ATTR_PALETTE_ENTRIES:
                vga.attr[bl] = bh & 0x3F
        elif al == 0x01:
            vga.attr[ATTR_OVERSCAN] = bh
        elif al == 0x02:
            data = b.core.read_phys(self._table_addr(), ATTR_PALETTE_ENTRIES + 1)
            vga.attr[:ATTR_PALETTE_ENTRIES] = list(data[:ATTR_PALETTE_ENTRIES])
            vga.attr[ATTR_OVERSCAN] = data[ATTR_PALETTE_ENTRIES]
        elif al == 0x03:
            mode = vga.attr[ATTR_MODE_CONTROL]
            vga.attr[ATTR_MODE_CONTROL] = (mode | ATTR_MODE_BLINK) if bl & 1 else (mode & ~ATTR_MODE_BLINK)
        elif al == 0x07:
            if bl < ATTR_PALETTE_ENTRIES:
                b.set_hi(S.EBX, vga.attr[bl])
        elif al == 0x08:
            b.set_hi(S.EBX, vga.attr[ATTR_OVERSCAN])
        elif al == 0x09:
            data = bytes(vga.attr[:ATTR_PALETTE_ENTRIES]) + bytes([vga.attr[ATTR_OVERSCAN]])
            b.core.write_phys(self._table_addr(), data)
        elif al == 0x10:
            self._set_dac(b.r16(S.EBX), (b.hi(S.EDX), b.hi(S.ECX), b.lo(S.ECX)))
        elif al == 0x12:
            first, count = b.r16(S.EBX), b.r16(S.ECX)
            data = b.core.read_phys(self._table_addr(), 3 * count)
            for i in range(count):
                self._set_dac(first + i, tuple(data[3 * i: 3 * i + 3]))
        elif al == 0x13:
            mode = vga.attr[ATTR_MODE_CONTROL]
            if bl == 0x00:  # paging mode: BH=1 -> 16 pages of 16, 0 -> 4 pages of 64
                mode = (mode | ATTR_MODE_P54_SELECT) if bh & 1 else (mode & ~ATTR_MODE_P54_SELECT)
                vga.attr[ATTR_MODE_CONTROL] = mode
            else:  # the page
                page = (bh & 0x0F) if mode & ATTR_MODE_P54_SELECT else (bh & 0x03) << 2
                vga.attr[ATTR_COLOR_SELECT] = page
        elif al == 0x15:
            r, g, bl_ = vga.dac[3 * (b.r16(S.EBX) & 0xFF): 3 * (b.r16(S.EBX) & 0xFF) + 3]
            b.set_hi(S.EDX, r)
            b.w16(S.ECX, (g << 8) | bl_)
        elif al == 0x17:
            first, count = b.r16(S.EBX), b.r16(S.ECX)
            data = bytearray()
            for i in range(count):
                e = (first + i) & 0xFF
                data += bytes(vga.dac[3 * e: 3 * e + 3])
            b.core.write_phys(self._table_addr(), bytes(data))
        elif al == 0x18:
            vga.dac_mask = bl
        elif al == 0x19:
            b.set_lo(S.EBX, vga.dac_mask)
        elif al == 0x1A:
            mode = vga.attr[ATTR_MODE_CONTROL]
            b.set_lo(S.EBX, 1 if mode & ATTR_MODE_P54_SELECT else 0)
            select = vga.attr[ATTR_COLOR_SELECT]
            b.set_hi(S.EBX, select & 0x0F if mode & ATTR_MODE_P54_SELECT else (select >> 2) & 0x03)
        elif al == 0x1B:
            first, count = b.r16(S.EBX), b.r16(S.ECX)
            for i in range(count):
                e = (first + i) & 0xFF
                grey = self._grey(tuple(vga.dac[3 * e: 3 * e + 3]))
                vga.dac[3 * e: 3 * e + 3] = [grey] * 3

    @staticmethod
    def _grey(rgb: tuple[int, ...]) -> int:
        return min(DAC_COMPONENT_MASK, (sum(w * c for w, c in zip(GREY_WEIGHTS, rgb, strict=True)) + 50) // 100)

    def _set_dac(self, index: int, rgb: tuple[int, ...]) -> None:
        index &= 0xFF
        rgb = tuple(c & DAC_COMPONENT_MASK for c in rgb)
        if self.b.ram.r8(B.BDA + B.VGA_FLAGS) & VGA_FLAGS_GREY:
            rgb = (self._grey(rgb),) * 3
        self.vga.dac[3 * index: 3 * index + 3] = list(rgb)

    # -- AH=11h ----------------------------------------------------------------------------------------
    def font(self, al: int) -> None:
        b, vga, ram = self.b, self.vga, self.b.ram
        bh, bl = b.hi(S.EBX), b.lo(S.EBX)
        if al in (0x00, 0x10):  # user font: ES:BP, CX characters from DX, BH bytes each, block BL
            height = bh or 16
            addr = (b.seg(S.ES) << 4) + b.r16(S.EBP)
            data = b.core.read_phys(addr, b.r16(S.ECX) * height)
            vga.load_font(data, height, first=b.r16(S.EDX) & 0xFF, block=bl)
            if al == 0x10:
                self._set_rows(height)
        elif (al & 0x0F) in _FONT_LOADS and al < 0x20:
            height = _FONT_LOADS[al & 0x0F]
            vga.load_font(vgafont.font(height), height, block=bl)
            if al & 0x10:
                self._set_rows(height)
        elif al == 0x03:
            vga.seq[SEQ_CHARACTER_MAP] = bl
        elif al in (0x20, 0x21):  # graphics fonts from ES:BP (20h: INT 1Fh; 21h: INT 43h, CX bytes)
            vector = INT_1F if al == 0x20 else INT_43
            ram.w16(vector * 4, b.r16(S.EBP))
            ram.w16(vector * 4 + 2, b.seg(S.ES))
            if al == 0x21:
                ram.w16(B.BDA + B.CHAR_HEIGHT, b.r16(S.ECX))
        elif al in (0x22, 0x23, 0x24):  # graphics fonts from ROM: 8x14, 8x8, 8x16 at INT 43h
            height = {0x22: 14, 0x23: 8, 0x24: 16}[al]
            ram.w16(INT_43 * 4, _ROM_FONTS[height])
            ram.w16(INT_43 * 4 + 2, R.ROM_SEGMENT)
            ram.w16(B.BDA + B.CHAR_HEIGHT, height)
        elif al == 0x30:
            self.font_info(bh)

    def _set_rows(self, height: int) -> None:
        """After loading a font with recalculation: character height, rows, cursor shape."""
        b, ram = self.b, self.b.ram
        b.crtc(CRTC_MAX_SCAN_LINE, (self.vga.crtc[CRTC_MAX_SCAN_LINE] & ~CRTC_MSL_MASK) | (height - 1))
        ram.w16(B.BDA + B.CHAR_HEIGHT, height)
        ram.w8(B.BDA + B.VIDEO_ROWS, TEXT_SCAN_LINES // height - 1)
        b.set_cursor_shape(height - 2, height - 1)

    def font_info(self, which: int) -> None:
        """AX=1130h: ES:BP -> the font BH selects, CX = bytes per character, DL = rows - 1."""
        b, ram = self.b, self.b.ram
        if which in (0x00, 0x01):
            vector = INT_1F if which == 0x00 else INT_43
            seg, off = ram.r16(vector * 4 + 2), ram.r16(vector * 4)
        else:
            seg = R.ROM_SEGMENT
            off = {0x02: R.FONT8X14, 0x03: R.FONT8X8, 0x04: R.FONT8X8 + 128 * 8, 0x06: R.FONT8X16}.get(
                which, R.FONT_ALTERNATES)  # 05h/07h: the 9-dot alternates (none: an empty list)
        b.core.set_seg_real(S.ES, seg)
        b.w16(S.EBP, off)
        b.w16(S.ECX, self.char_height())
        b.set_lo(S.EDX, ram.r8(B.BDA + B.VIDEO_ROWS))
