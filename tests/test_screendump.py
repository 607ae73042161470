"""`--screendump`: the PNG encoder (decoded back here with zlib, chunk by chunk) and the CLI end to end."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from emu.clock import VirtualClock
from emu.devices import vgafont
from emu.devices.vga import COLOUR_TEXT_OFFSET, Vga
from emu.screendump import check_path, encode_png, write_screendump
from tests.cpu.guestasm import needs_nasm
from tests.test_boot_cli import one_line_error, pyemu, write_floppy
from tests.test_machine import boot_sector


def decode_png(data: bytes) -> np.ndarray:
    """A strict reader for what encode_png writes: 8-bit RGB, filter 0 rows, CRCs checked."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos: pos + 4])
        kind, body = data[pos + 4: pos + 8], data[pos + 8: pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length: pos + 12 + length])
        assert crc == zlib.crc32(kind + body), kind
        chunks.append((kind, body))
        pos += 12 + length
    assert [k for k, _ in chunks][0] == b"IHDR" and chunks[-1] == (b"IEND", b"")
    width, height, depth, colour, compression, filt, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert (depth, colour, compression, filt, interlace) == (8, 2, 0, 0, 0)
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(height, 1 + 3 * width)
    assert (rows[:, 0] == 0).all()  # filter type None on every row
    return rows[:, 1:].reshape(height, width, 3)


def test_png_round_trip():
    rgb = np.random.default_rng(1).integers(0, 256, size=(7, 5, 3), dtype=np.uint8)
    assert (decode_png(encode_png(rgb)) == rgb).all()


def test_text_mode_png_shows_the_glyph_of_a_known_character(tmp_path):
    vga = Vga(VirtualClock(icount=True))
    vga.write(COLOUR_TEXT_OFFSET + 2 * (80 * 2 + 3), 2, ord("g") | 0x0F << 8)  # row 2, column 3
    out = tmp_path / "screen.png"
    write_screendump(vga, str(out))
    image = decode_png(out.read_bytes())
    assert image.shape == (400, 720, 3)
    cell = image[32:48, 27:35]
    ink = (cell == 255).all(axis=-1)
    glyph = np.unpackbits(np.frombuffer(vgafont.glyph(ord("g")), dtype=np.uint8)).reshape(16, 8)
    assert (ink == glyph.astype(bool)).all()
    assert ink[12:14].any()  # the descender is there
    assert (image[:32] == 0).all()  # nothing above the character's row


def test_screendump_names_must_say_txt_or_png():
    check_path("a.txt")
    check_path("B.PNG")
    with pytest.raises(ValueError, match=r"\.txt .* \.png"):
        check_path("shot.bmp")


def test_graphics_mode_text_dump_is_empty(tmp_path):
    from emu.devices.vgamodes import MODE13

    vga = Vga(VirtualClock(icount=True))
    vga.set_mode(MODE13)
    out = tmp_path / "screen.txt"
    write_screendump(vga, str(out))
    assert out.read_text() == ""


# -- end to end: a boot sector in mode 13h --------------------------------------------------------------

MODE13_GUEST = """
    mov ax, 0x0013
    int 0x10
    mov dx, 0x3c8           ; DAC entry 42h = (63, 32, 0)
    mov al, 0x42
    out dx, al
    inc dx
    mov al, 63
    out dx, al
    mov al, 32
    out dx, al
    xor al, al
    out dx, al
    push 0xa000
    pop es
    mov di, 150*320 + 123   ; pixel (123, 150)
    mov al, 0x42
    stosb
    mov di, 10*320
    mov cx, 320
    mov al, 0x0c            ; row 10: light red from the default palette
    rep stosb
    jmp done
"""


@needs_nasm
def test_cli_png_of_a_mode_13h_pixel_has_its_dac_colour(tmp_path):
    img = write_floppy(tmp_path / "m13.img", boot_sector(MODE13_GUEST))
    shot = tmp_path / "shot.png"
    p = pyemu(str(img), "-display", "none", "-icount", "--screendump", str(shot), "--timeout", "60")
    assert p.returncode == 0, p.stderr
    image = decode_png(shot.read_bytes())
    assert image.shape == (200, 320, 3)
    assert tuple(image[150, 123]) == (255, 130, 0)
    assert tuple(image[150, 122]) == tuple(image[150, 124]) == (0, 0, 0)
    assert (image[10] == (255, 85, 85)).all()
    assert (image[11] == 0).all()


@needs_nasm
def test_cli_rejects_other_screendump_extensions(tmp_path):
    img = write_floppy(tmp_path / "m13.img", boot_sector("jmp done\n"))
    p = pyemu(str(img), "-display", "none", "--screendump", str(tmp_path / "x.bmp"))
    assert p.returncode == 1
    assert ".png" in one_line_error(p)
    assert not (tmp_path / "x.bmp").exists()
