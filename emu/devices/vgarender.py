"""VGA scan-out: the planes through the CRTC addressing, attribute controller and DAC, to RGB pixels.

What the monitor would show, at the mode's own resolution (mode 13h: 320x200, mode 12h: 640x480,
mode 3: 720x400 with 9-dot cells), computed from the registers rather than from a mode number:

- memory addressing: row r starts at start address + r x offset (CRTC 0Ch/0Dh, 13h), in byte,
  word or doubleword units (CRTC 17h bit 6, 14h bit 6); each character clock reads one byte from
  each of the four planes;
- text (attribute mode control bit 0 clear): character in plane 0, attribute in plane 1, glyph
  rows from plane 2 (32-byte slots, the font chosen by sequencer register 03h and attribute bit 3),
  8 or 9 dots per cell (sequencer 01h bit 0; the 9th column repeats the 8th for C0h-DFh when line
  graphics are enabled), foreground attribute bits 0-3, background 4-7 (4-6 with blink enabled);
  the cursor is not drawn and blinking characters are shown;
- 16-colour graphics: bit 7-n of the four plane bytes make pixel n of the character clock;
- 256-colour graphics (graphics mode register bit 6): the four plane bytes are four pixels;
- colour: a 4-bit value goes through the attribute palette, colour plane enable and colour select
  to a DAC index; an 8-bit pixel indexes the DAC directly (the attribute palette is the identity
  in mode 13h); the PEL mask applies; 6-bit DAC values are scaled to 8 bits.

Not modelled: horizontal pel panning, the line compare (split screen), CGA-compatible addressing
of modes 04h-06h, underline in monochrome text, screen blanking.
"""

from __future__ import annotations

import numpy as np

from emu.devices import vga as V
from emu.devices.vgamem import PLANE_ADDR_MASK

LINE_GRAPHICS_FIRST, LINE_GRAPHICS_LAST = 0xC0, 0xDF


def render(vga: V.Vga) -> np.ndarray:
    """(height, width, 3) uint8 RGB of the current screen."""
    vga.sync_planes()
    if not vga.graphics_mode:
        index = _text_indices(vga)
    elif vga.gc[V.M.GC_MODE] & V.GC_MODE_256:
        index = _vga256_indices(vga)
    else:
        index = _planar16_indices(vga)
    return vga.dac_rgb()[index]


def _attribute_lut(vga: V.Vga) -> np.ndarray:
    return np.array([vga.attribute_dac_index(c) for c in range(16)], dtype=np.uint8)


def _graphics_rows(vga: V.Vga) -> int:
    """Pixel rows: display lines over the scan lines each memory row repeats (CRTC 09h)."""
    return vga.graphics_size()[1]


def _fetch(vga: V.Vga, height: int) -> np.ndarray:
    """Plane bytes per (row, character clock, plane): shape (height, clocks, 4)."""
    unit = vga.address_unit()
    rows = np.arange(height)[:, None] * vga.row_bytes()
    clocks = np.arange(vga.columns())[None, :] * unit
    addr = (vga.start_plane_address() + rows + clocks) & PLANE_ADDR_MASK
    return np.moveaxis(vga.planes[:, addr], 0, -1)


def _planar16_indices(vga: V.Vga) -> np.ndarray:
    data = _fetch(vga, _graphics_rows(vga))  # (h, clocks, 4)
    bits = np.unpackbits(data[..., None], axis=-1)  # (h, clocks, 4 planes, 8 dots)
    weights = (1 << np.arange(4, dtype=np.uint8))[None, None, :, None]
    colour = (bits * weights).sum(axis=2, dtype=np.uint8)  # (h, clocks, 8)
    colour = colour.reshape(colour.shape[0], -1)
    return _attribute_lut(vga)[colour]


def _vga256_indices(vga: V.Vga) -> np.ndarray:
    data = _fetch(vga, _graphics_rows(vga))  # (h, clocks, 4): four pixels per clock
    pixels = data.reshape(data.shape[0], -1)
    return pixels & vga.dac_mask


def _text_indices(vga: V.Vga) -> np.ndarray:
    chars, attrs = vga.text_arrays()
    rows, cols = chars.shape
    height = vga.char_height()
    nine = not vga.seq[V.SEQ_CLOCKING_MODE] & V.SEQ_CLOCK_8DOT
    cmap = vga.seq[V.SEQ_CHARACTER_MAP]
    base_a = V.FONT_BASES[((cmap >> 5) & 1) << 2 | (cmap >> 2) & 3]  # attribute bit 3 set
    base_b = V.FONT_BASES[((cmap >> 4) & 1) << 2 | cmap & 3]
    plane2 = vga.planes[V.FONT_PLANE]

    def glyphs(base: int) -> np.ndarray:
        slots = plane2[base: base + 256 * V.FONT_SLOT]  # every bank fits below PLANE_SIZE
        return np.unpackbits(slots.reshape(256, V.FONT_SLOT)[:, :height, None], axis=-1)  # (256, h, 8)

    pix = glyphs(base_b)[chars]  # (rows, cols, h, 8)
    if base_a != base_b:
        pix = np.where((attrs & 0x08)[..., None, None].astype(bool), glyphs(base_a)[chars], pix)
    mode = vga.attr[V.ATTR_MODE_CONTROL]
    if nine:
        ninth = np.zeros(pix.shape[:-1] + (1,), dtype=pix.dtype)
        if mode & V.ATTR_MODE_LINE_GRAPHICS:
            line = (chars >= LINE_GRAPHICS_FIRST) & (chars <= LINE_GRAPHICS_LAST)
            ninth = np.where(line[..., None, None], pix[..., 7:8], ninth)
        pix = np.concatenate([pix, ninth], axis=-1)
    fg = attrs & 0x0F
    bg = attrs >> 4
    if mode & V.ATTR_MODE_BLINK:
        bg = bg & 0x07
    colour = np.where(pix.astype(bool), fg[..., None, None], bg[..., None, None])
    width = pix.shape[-1]
    colour = colour.transpose(0, 2, 1, 3).reshape(rows * height, cols * width)
    return _attribute_lut(vga)[colour]
