"""`--screendump PATH`: the screen at exit as text (.txt) or as an image (.png).

`.txt`: the VGA text page as UTF-8, one line per row, CP437 glyphs mapped to Unicode, trailing
blanks stripped; in a graphics mode there is no text page and the file is empty.
`.png`: what the monitor shows (`Vga.render_rgb`), as an 8-bit RGB PNG (colour type 2, no
interlace) written with the standard library's zlib: signature, IHDR, one IDAT, IEND, each chunk
with its CRC-32 (PNG specification, sections 5 and 11).
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_BIT_DEPTH = 8
PNG_COLOUR_RGB = 2
PNG_FILTER_NONE = 0
ZLIB_LEVEL = 6
EXTENSIONS = (".txt", ".png")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def encode_png(rgb: np.ndarray) -> bytes:
    """(height, width, 3) uint8 -> PNG bytes (every row with filter type 0)."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    height, width, channels = rgb.shape
    if channels != 3:
        raise ValueError("encode_png wants RGB pixels")
    rows = np.zeros((height, 1 + 3 * width), dtype=np.uint8)  # column 0: the filter byte
    rows[:, 1:] = rgb.reshape(height, 3 * width)
    header = struct.pack(">IIBBBBB", width, height, PNG_BIT_DEPTH, PNG_COLOUR_RGB, 0, 0, 0)
    return (PNG_SIGNATURE + _chunk(b"IHDR", header)
            + _chunk(b"IDAT", zlib.compress(rows.tobytes(), ZLIB_LEVEL)) + _chunk(b"IEND", b""))


def check_path(path: str) -> None:
    """Raise ValueError unless the file name says .txt or .png."""
    if not path.lower().endswith(EXTENSIONS):
        raise ValueError(f"--screendump {path}: the file name must end in .txt (text) or .png (image)")


def write_screendump(vga, path: str) -> None:
    """Write the screen to `path` as its extension says (OSError passes through)."""
    check_path(path)
    if path.lower().endswith(".png"):
        data = encode_png(vga.render_rgb())
        with open(path, "wb") as out:
            out.write(data)
    else:
        with open(path, "w", encoding="utf-8") as out:
            out.write(vga.screendump_text())
