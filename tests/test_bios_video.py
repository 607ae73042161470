"""INT 10h beyond text output (bios/video.py): graphics modes, pixels, the palette and DAC, fonts."""

from __future__ import annotations

from emu.devices import vgafont
from tests.cpu.guestasm import needs_nasm
from tests.test_machine import run_guest

pytestmark = needs_nasm

# DS:SI -> the debug console, CX bytes
SEND = """
send:
    lodsb
    out 0xe9, al
    loop send
    ret
"""


def test_int10_1130_returns_the_rom_fonts():
    body = """
    mov ax, 0x1130
    mov bh, 0x06            ; ROM 8x16
    int 0x10
    mov ax, cx              ; bytes per character, rows - 1
    call out_ax
    mov al, dl
    call out_al
    push es
    pop ds
    lea si, [bp + 'A' * 16]
    mov cx, 16
    call send
    mov ax, 0x1130
    mov bh, 0x03            ; ROM 8x8
    int 0x10
    push es
    pop ds
    lea si, [bp + 'A' * 8]
    mov cx, 8
    call send
    mov ax, 0x1130
    mov bh, 0x02            ; ROM 8x14
    int 0x10
    push es
    pop ds
    lea si, [bp + 'A' * 14]
    mov cx, 14
    call send
    jmp done
""" + SEND
    r = run_guest(body)
    assert r.debug[:3] == bytes([16, 0, 24])
    a = ord("A")
    assert r.debug[3:] == vgafont.glyph(a, 16) + vgafont.glyph(a, 8) + vgafont.glyph(a, 14)


def test_mode_13h_teletype_draws_the_font_in_colour_bl():
    body = """
    mov ax, 0x0013
    int 0x10
    mov ax, 0x0e41          ; 'A' in colour 0Eh at row 0, column 0
    mov bx, 0x000e
    int 0x10
    mov ah, 0x0f
    int 0x10
    call out_ax             ; AL = mode, AH = columns
    jmp done
"""
    r = run_guest(body)
    assert r.debug == bytes([0x13, 40])
    image = r.machine.vga.render_rgb()
    assert image.shape == (200, 320, 3)
    glyph = vgafont.glyph(ord("A"), 8)
    for y in range(8):
        for x in range(8):
            on = bool(glyph[y] & (0x80 >> x))
            assert tuple(image[y, x]) == ((255, 255, 85) if on else (0, 0, 0)), (x, y)
    assert r.screen == ""  # no text page in a graphics mode


def test_mode_12h_write_and_read_pixel_and_dac_functions():
    body = """
    mov ax, 0x0012
    int 0x10
    mov ax, 0x0c05          ; pixel (100, 50) colour 5
    xor bh, bh
    mov cx, 100
    mov dx, 50
    int 0x10
    mov ax, 0x0c83          ; XOR 3 into it: 6
    int 0x10
    mov ah, 0x0d
    int 0x10
    call out_al
    mov ax, 0x1010          ; DAC 14h (palette register 6 points there) = (1, 2, 3)
    mov bx, 0x14
    mov dh, 1
    mov cx, 0x0203
    int 0x10
    mov ax, 0x1015
    xor cx, cx
    xor dx, dx
    int 0x10
    mov al, dh
    call out_al
    mov ax, cx
    call out_ax
    mov ax, 0x1007          ; palette register 6
    mov bl, 6
    int 0x10
    mov al, bh
    call out_al
    mov ax, 0x1017          ; read DAC 14h-15h into the buffer
    mov bx, 0x14
    mov cx, 2
    mov dx, buf
    int 0x10
    mov si, buf
    mov cx, 6
    call send
    jmp done
buf: times 6 db 0
""" + SEND
    r = run_guest(body)
    assert r.debug == bytes([6, 1, 3, 2, 0x14, 1, 2, 3, 42, 21, 42])  # DAC 15h: EGA rgbRGB 010101
    image = r.machine.vga.render_rgb()
    assert image.shape == (480, 640, 3)
    assert tuple(image[50, 100]) == (4, 8, 12)
    assert tuple(image[50, 101]) == (0, 0, 0)


def test_font_load_8x8_reaches_plane_2_and_the_screen():
    body = """
    mov ax, 0x1112          ; 8x8 font, 50 rows
    xor bl, bl
    int 0x10
    mov ax, 0x0e48
    int 0x10
    jmp done
"""
    r = run_guest(body)
    vga = r.machine.vga
    assert vga.rows() == 50
    with vga.planes_access() as planes:
        assert bytes(planes[2, ord("H") * 32: ord("H") * 32 + 8]) == vgafont.glyph(ord("H"), 8)


PLANAR_FILL = """
    mov ax, 0x0012
    int 0x10
    push 0xa000
    pop es
    xor di, di
    mov al, 0xff            ; write mode 0, all planes: colour 15
    mov cx, 80              ; pixel row 0
    {fill}
    jmp done
"""


def test_stosb_loop_fills_planar_video_memory():
    r = run_guest(PLANAR_FILL.format(fill=".l: stosb\n    loop .l"))
    image = r.machine.vga.render_rgb()
    assert (image[0] == 255).all() and (image[1] == 0).all()


def test_rep_stosb_fills_planar_video_memory():
    """Each element of a REP STOS into device memory reaches the device (the REP pauses after
    an element's MMIO write, as at the end of a REP slice, and resumes after Python did it)."""
    r = run_guest(PLANAR_FILL.format(fill="rep stosb"))
    image = r.machine.vga.render_rgb()
    assert (image[0] == 255).all() and (image[1] == 0).all()
