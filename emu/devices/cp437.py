"""Code page 437 -> Unicode: what a VGA text cell's character byte looks like on screen.

This is the *glyph* table of the IBM PC ROM font, not the serial/ASCII meaning: bytes 01h-1Fh and
7Fh are the smileys, card suits, arrows and the house that the font draws for them, as in the
Unicode mapping of the IBM PC character set. 00h (an empty glyph) maps to a space, so that blank
video memory dumps as blanks; FFh is the non-breaking space. 80h-FEh agree with Python's `cp437`.
"""

from __future__ import annotations

_GLYPHS_00_1F = " ☺☻♥♦♣♠•◘○◙♂♀♪♫☼►◄↕‼¶§▬↨↑↓→←∟↔▲▼"
_GLYPHS_20_7E = "".join(chr(c) for c in range(0x20, 0x7F))
_GLYPH_7F = "⌂"
_GLYPHS_80_FF = (
    "ÇüéâäàåçêëèïîìÄÅ"
    "ÉæÆôöòûùÿÖÜ¢£¥₧ƒ"
    "áíóúñÑªº¿⌐¬½¼¡«»"
    "░▒▓│┤╡╢╖╕╣║╗╝╜╛┐"
    "└┴┬├─┼╞╟╚╔╩╦╠═╬╧"
    "╨╤╥╙╘╒╓╫╪┘┌█▄▌▐▀"
    "αßΓπΣσµτΦΘΩδ∞φε∩"
    "≡±≥≤⌠⌡÷≈°∙·√ⁿ²■\u00a0"
)

CP437: tuple[str, ...] = tuple(_GLYPHS_00_1F + _GLYPHS_20_7E + _GLYPH_7F + _GLYPHS_80_FF)
assert len(CP437) == 256

# str.translate table for decoding a bytes-like object of character codes
_DECODE = {i: ch for i, ch in enumerate(CP437)}


def decode(data: bytes) -> str:
    """Character codes -> the Unicode text the screen shows."""
    return bytes(data).decode("latin-1").translate(_DECODE)
