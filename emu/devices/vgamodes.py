"""The standard VGA modes: the register values a BIOS mode set programs, and the default DAC colours.

The values are the ones documented for the IBM VGA's BIOS modes (IBM VGA Technical Reference,
"BIOS video modes" and the register descriptions; FreeVGA lists the same per mode): misc output,
sequencer 00h-04h, CRTC 00h-18h, graphics controller 00h-08h, attribute controller 00h-14h.

The DAC defaults are generated here from their structure rather than copied: the 64-colour EGA
table (index bits rgbRGB), the CGA-compatible table of the 200-line modes (index bit 4 is the
intensity), and the 256-colour default of mode 13h (16 CGA colours, a grey ramp, then nine rings of
24 hues at three values and three saturations).
"""

from __future__ import annotations

from dataclasses import dataclass

# the 16 CGA colours in the 6-bit DAC (black, blue, green, cyan, red, magenta, brown, light grey,
# then the bright versions)
CGA_RGB6 = ((0, 0, 0), (0, 0, 42), (0, 42, 0), (0, 42, 42), (42, 0, 0), (42, 0, 42), (42, 21, 0),
            (42, 42, 42), (21, 21, 21), (21, 21, 63), (21, 63, 21), (21, 63, 63), (63, 21, 21),
            (63, 21, 63), (63, 63, 21), (63, 63, 63))
DAC_MAX = 63
EGA_PRIMARY, EGA_SECONDARY = 42, 21  # two-thirds and one-third of full scale

KIND_TEXT, KIND_PLANAR16, KIND_VGA256 = "text", "planar16", "vga256"


def ega64() -> list[tuple[int, int, int]]:
    """EGA colour i: bits 0-2 blue/green/red at 2/3, bits 3-5 blue/green/red at 1/3."""
    out = []
    for i in range(64):
        def c(primary_bit: int, secondary_bit: int, i=i) -> int:
            return EGA_PRIMARY * (i >> primary_bit & 1) + EGA_SECONDARY * (i >> secondary_bit & 1)
        out.append((c(2, 5), c(1, 4), c(0, 3)))
    return out


def cga64() -> list[tuple[int, int, int]]:
    """The 200-line modes' table: bits 0-2 RGB, bit 4 intensity, as a CGA monitor shows them."""
    return [CGA_RGB6[(i & 7) | ((i >> 1) & 8)] for i in range(64)]


HUE_SEGMENTS = 6
HUE_STEPS = 4  # entries per segment: 24 hues around the ring
RING_VALUES = (63, 28, 16)  # bright, medium, dark
RING_SATURATIONS = (0.0, 0.5, 0.72)  # share of the value the weakest component keeps


def vga256() -> list[tuple[int, int, int]]:
    """Mode 13h's default palette: CGA colours, a grey ramp, 216 hue-ring colours, 8 blacks."""
    out = list(CGA_RGB6)
    out += [(round(DAC_MAX * k / 15),) * 3 for k in range(16)]
    for hi in RING_VALUES:
        for sat in RING_SATURATIONS:
            lo = round(hi * sat)
            for seg in range(HUE_SEGMENTS):
                for k in range(HUE_STEPS):
                    up = lo + round((hi - lo) * k / HUE_STEPS)
                    down = hi - round((hi - lo) * k / HUE_STEPS)
                    out.append(((up, lo, hi), (hi, lo, down), (hi, up, lo), (down, hi, lo),
                                (lo, hi, up), (lo, down, hi))[seg])
    out += [(0, 0, 0)] * (256 - len(out))
    return out


@dataclass(frozen=True)
class VgaMode:
    """One BIOS mode: its geometry and every register value the mode set writes."""

    number: int
    kind: str
    width: int  # text: columns; graphics: pixels
    height: int  # text: rows; graphics: pixels
    char_height: int
    misc: int
    seq: tuple[int, ...]
    crtc: tuple[int, ...]
    gc: tuple[int, ...]
    attr: tuple[int, ...]
    dac: str  # "ega64", "cga64" or "vga256"

    @property
    def graphics(self) -> bool:
        return self.kind != KIND_TEXT


_EGA_ATTR = (0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x14, 0x07, 0x38, 0x39, 0x3A, 0x3B, 0x3C, 0x3D,
             0x3E, 0x3F)
_CGA_ATTR = tuple(range(8)) + tuple(range(0x10, 0x18))
_PLANAR_GC = (0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x0F, 0xFF)

MODE3 = VgaMode(
    0x03, KIND_TEXT, 80, 25, 16, misc=0x67, seq=(0x03, 0x00, 0x03, 0x00, 0x02),
    crtc=(0x5F, 0x4F, 0x50, 0x82, 0x55, 0x81, 0xBF, 0x1F, 0x00, 0x4F, 0x0D, 0x0E, 0x00, 0x00, 0x00,
          0x00, 0x9C, 0x8E, 0x8F, 0x28, 0x1F, 0x96, 0xB9, 0xA3, 0xFF),
    gc=(0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x0E, 0x00, 0xFF),
    attr=_EGA_ATTR + (0x0C, 0x00, 0x0F, 0x08, 0x00), dac="ega64")

MODE0D = VgaMode(
    0x0D, KIND_PLANAR16, 320, 200, 8, misc=0x63, seq=(0x03, 0x09, 0x0F, 0x00, 0x06),
    crtc=(0x2D, 0x27, 0x28, 0x90, 0x2B, 0x80, 0xBF, 0x1F, 0x00, 0xC0, 0x00, 0x00, 0x00, 0x00, 0x00,
          0x00, 0x9C, 0x8E, 0x8F, 0x14, 0x00, 0x96, 0xB9, 0xE3, 0xFF),
    gc=_PLANAR_GC, attr=_CGA_ATTR + (0x01, 0x00, 0x0F, 0x00, 0x00), dac="cga64")

MODE0E = VgaMode(
    0x0E, KIND_PLANAR16, 640, 200, 8, misc=0x63, seq=(0x03, 0x01, 0x0F, 0x00, 0x06),
    crtc=(0x5F, 0x4F, 0x50, 0x82, 0x54, 0x80, 0xBF, 0x1F, 0x00, 0xC0, 0x00, 0x00, 0x00, 0x00, 0x00,
          0x00, 0x9C, 0x8E, 0x8F, 0x28, 0x00, 0x96, 0xB9, 0xE3, 0xFF),
    gc=_PLANAR_GC, attr=_CGA_ATTR + (0x01, 0x00, 0x0F, 0x00, 0x00), dac="cga64")

MODE10 = VgaMode(
    0x10, KIND_PLANAR16, 640, 350, 14, misc=0xA3, seq=(0x03, 0x01, 0x0F, 0x00, 0x06),
    crtc=(0x5F, 0x4F, 0x50, 0x82, 0x54, 0x80, 0xBF, 0x1F, 0x00, 0x40, 0x00, 0x00, 0x00, 0x00, 0x00,
          0x00, 0x83, 0x85, 0x5D, 0x28, 0x0F, 0x63, 0xBA, 0xE3, 0xFF),
    gc=_PLANAR_GC, attr=_EGA_ATTR + (0x01, 0x00, 0x0F, 0x00, 0x00), dac="ega64")

MODE12 = VgaMode(
    0x12, KIND_PLANAR16, 640, 480, 16, misc=0xE3, seq=(0x03, 0x01, 0x0F, 0x00, 0x06),
    crtc=(0x5F, 0x4F, 0x50, 0x82, 0x54, 0x80, 0x0B, 0x3E, 0x00, 0x40, 0x00, 0x00, 0x00, 0x00, 0x00,
          0x00, 0xEA, 0x8C, 0xDF, 0x28, 0x00, 0xE7, 0x04, 0xE3, 0xFF),
    gc=_PLANAR_GC, attr=_EGA_ATTR + (0x01, 0x00, 0x0F, 0x00, 0x00), dac="ega64")

MODE13 = VgaMode(
    0x13, KIND_VGA256, 320, 200, 8, misc=0x63, seq=(0x03, 0x01, 0x0F, 0x00, 0x0E),
    crtc=(0x5F, 0x4F, 0x50, 0x82, 0x54, 0x80, 0xBF, 0x1F, 0x00, 0x41, 0x00, 0x00, 0x00, 0x00, 0x00,
          0x00, 0x9C, 0x8E, 0x8F, 0x28, 0x40, 0x96, 0xB9, 0xA3, 0xFF),
    gc=(0x00, 0x00, 0x00, 0x00, 0x00, 0x40, 0x05, 0x0F, 0xFF),
    attr=tuple(range(16)) + (0x41, 0x00, 0x0F, 0x00, 0x00), dac="vga256")

GRAPHICS_MODES = {m.number: m for m in (MODE0D, MODE0E, MODE10, MODE12, MODE13)}
DAC_TABLES = {"ega64": ega64, "cga64": cga64, "vga256": vga256}


def mode(number: int) -> VgaMode:
    """The table for a BIOS mode number; text modes (and unknown numbers) get mode 3's."""
    return GRAPHICS_MODES.get(number & 0x7F, MODE3)
