"""VGA text-mode behaviour from the IBM VGA technical reference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from emu.clock import VirtualClock
from emu.devices.bus import IoBus
from emu.devices.cp437 import CP437, decode
from emu.devices.vga import COLOUR_TEXT_OFFSET, FRAME_NS, MONO_TEXT_OFFSET, STATUS1_VRETRACE, Vga


@pytest.fixture
def rig():
    clock = VirtualClock(icount=True)
    bus = IoBus()
    vga = Vga(clock)
    vga.attach(bus)
    return clock, bus, vga


def put_text(vga, row, col, text: bytes, attr=0x07, offset=COLOUR_TEXT_OFFSET, cols=80):
    for i, ch in enumerate(text):
        a = offset + 2 * (row * cols + col + i)
        vga.write(a, 2, ch | (attr << 8))


def crtc(bus, index, value, port=0x3D4):
    bus.write(port, 1, index)
    bus.write(port + 1, 1, value)


def test_mode3_defaults_are_80x25(rig):
    _, _, vga = rig
    assert (vga.columns(), vga.rows()) == (80, 25)
    assert len(vga.text_lines()) == 25


def test_80x50_from_max_scan_line(rig):
    """An 8-line font (CRTC 09h = 07h) over 400 display lines gives 50 rows."""
    _, bus, vga = rig
    crtc(bus, 0x09, 0x47)
    assert vga.rows() == 50


def test_rows_follow_vertical_display_end(rig):
    _, bus, vga = rig
    crtc(bus, 0x12, 0x5D)  # 350 lines with overflow bit 8 -> 0x15D + 1 = 350
    crtc(bus, 0x09, 0x4D)  # 14-line font (EGA-style 80x25)
    assert vga.rows() == 25


def test_screendump_strips_trailing_spaces(rig):
    _, _, vga = rig
    put_text(vga, 0, 0, b"Hello, world   ")
    put_text(vga, 2, 5, b"x")
    dump = vga.screendump_text().split("\n")
    assert dump[0] == "Hello, world"
    assert dump[1] == ""
    assert dump[2] == "     x"
    assert len(dump) == 26  # 25 lines, each ending in a newline


def test_screendump_maps_cp437_box_drawing_to_unicode(rig):
    _, _, vga = rig
    put_text(vga, 0, 0, bytes([0xC9, 0xCD, 0xBB]))
    put_text(vga, 1, 0, bytes([0xBA, 0x01, 0xBA]))
    put_text(vga, 2, 0, bytes([0xC8, 0xCD, 0xBC]))
    assert vga.screendump_text().startswith("╔═╗\n║☺║\n╚═╝\n")


def test_cp437_high_half_matches_the_standard_mapping():
    assert "".join(CP437[0x80:0xFF]) == bytes(range(0x80, 0xFF)).decode("cp437")
    assert decode(b"\xb0\xb1\xb2\xdb") == "░▒▓█"


def test_writing_crtc_0e_0f_moves_the_cursor(rig):
    _, bus, vga = rig
    pos = 3 * 80 + 7
    crtc(bus, 0x0E, pos >> 8)
    crtc(bus, 0x0F, pos & 0xFF)
    row, col, start, end, visible = vga.cursor()
    assert (row, col, visible) == (3, 7, True)
    assert (start, end) == (0x0D, 0x0E)


def test_cursor_shape_and_disable(rig):
    _, bus, vga = rig
    crtc(bus, 0x0A, 0x00)
    crtc(bus, 0x0B, 0x0F)
    assert vga.cursor()[2:] == (0, 15, True)
    crtc(bus, 0x0A, 0x20)  # cursor off bit
    assert vga.cursor()[4] is False


def test_word_out_writes_index_and_data(rig):
    _, bus, vga = rig
    bus.write(0x3D4, 2, 0x0E | (0x01 << 8))  # OUT DX,AX: AL=index, AH=data
    assert vga.crtc[0x0E] == 0x01
    bus.write(0x3D4, 1, 0x0E)
    assert bus.read(0x3D5, 1) == 0x01


def test_start_address_scrolls_the_page(rig):
    _, bus, vga = rig
    put_text(vga, 1, 0, b"second row")
    crtc(bus, 0x0C, 0)
    crtc(bus, 0x0D, 80)
    assert vga.text_lines()[0].rstrip() == "second row"


def test_crtc_protect_bit_guards_registers_0_to_7(rig):
    _, bus, vga = rig
    crtc(bus, 0x11, 0x8E)
    crtc(bus, 0x01, 0x27)
    assert vga.columns() == 80
    crtc(bus, 0x11, 0x0E)
    crtc(bus, 0x01, 0x27)
    assert vga.columns() == 40


def test_mono_misc_output_moves_crtc_to_3b4(rig):
    _, bus, vga = rig
    bus.write(0x3C2, 1, 0x66)  # I/O address select clear
    assert bus.read(0x3CC, 1) == 0x66
    crtc(bus, 0x0F, 0x42, port=0x3B4)
    assert vga.crtc[0x0F] == 0x42
    crtc(bus, 0x0F, 0x99, port=0x3D4)  # ignored now
    assert vga.crtc[0x0F] == 0x42


def test_mono_memory_map_renders_b0000(rig):
    _, bus, vga = rig
    bus.write(0x3CE, 1, 0x06)
    bus.write(0x3CF, 1, 0x0A)  # memory map 10b: B0000-B7FFF
    put_text(vga, 0, 0, b"mono", offset=MONO_TEXT_OFFSET)
    assert vga.text_lines()[0].startswith("mono")


def test_reading_3da_resets_the_attribute_flip_flop(rig):
    _, bus, vga = rig
    bus.write(0x3C0, 1, 0x10)  # index: mode control
    bus.read(0x3DA, 1)  # back to "index" state
    bus.write(0x3C0, 1, 0x31)  # so this is an index (with PAS), not data
    bus.write(0x3C0, 1, 0x05)  # data for register 11h
    assert vga.attr[0x11] == 0x05
    assert vga.attr[0x10] == 0x0C
    assert bus.read(0x3C0, 1) == 0x31
    assert bus.read(0x3C1, 1) == 0x05


def test_sequencer_and_graphics_registers_read_back(rig):
    _, bus, _ = rig
    bus.write(0x3C4, 2, 0x0F02)
    bus.write(0x3C4, 1, 0x02)
    assert bus.read(0x3C5, 1) == 0x0F
    bus.write(0x3CE, 2, 0x0508)
    bus.write(0x3CE, 1, 0x08)
    assert bus.read(0x3CF, 1) == 0x05


def test_dac_write_and_read_auto_increment(rig):
    _, bus, _ = rig
    bus.write(0x3C8, 1, 0x10)
    for v in (1, 2, 3, 4, 5, 6):
        bus.write(0x3C9, 1, v)
    assert bus.read(0x3C8, 1) == 0x12
    bus.write(0x3C7, 1, 0x10)
    assert bus.read(0x3C7, 1) == 0x03  # DAC state: read mode
    assert [bus.read(0x3C9, 1) for _ in range(6)] == [1, 2, 3, 4, 5, 6]


def test_vertical_retrace_toggles_with_virtual_time(rig):
    clock, bus, _ = rig
    seen = []
    step = FRAME_NS // 2000
    for i in range(4000):  # two frames
        clock.instructions = (i * step) >> clock.shift
        seen.append(bool(bus.read(0x3DA, 1) & STATUS1_VRETRACE))
    edges = sum(1 for a, b in zip(seen, seen[1:], strict=False) if not a and b)
    assert edges == 2
    assert 0 < sum(seen) < len(seen) // 50


def test_window_read_write_is_little_endian_memory(rig):
    _, _, vga = rig
    vga.write(0x18000, 4, 0x44434241)
    assert vga.read(0x18000, 1) == 0x41
    assert vga.read(0x18002, 2) == 0x4443
    region = vga.mmio_region()
    assert region.base == 0xA0000 and region.size == 0x20000
    assert region.read(0x18000, 2) == 0x4241


def test_external_vram_buffer_is_used_in_place():
    mem = np.zeros(0x100000, dtype=np.uint8)
    vga = Vga(VirtualClock(icount=True), vram=mem[0xA0000:0xC0000])
    mem[0xB8000] = ord("Z")
    assert vga.text_lines()[0][0] == "Z"


def test_render_ansi_redraws_only_changed_rows(rig):
    _, bus, vga = rig
    crtc(bus, 0x0A, 0x20)  # cursor off, so the only positioning is for redrawn rows
    first, frame = vga.render_ansi(None)
    assert "\x1b[2J" in first and "\x1b[25;1H" in first
    put_text(vga, 4, 0, b"hi", attr=0x1F)  # bright white on blue
    update, frame = vga.render_ansi(frame)
    assert "\x1b[5;1H" in update
    assert "\x1b[1;1H" not in update
    assert "\x1b[0;97;44mhi" in update
    assert update.endswith("\x1b[?25l")
    nothing, _ = vga.render_ansi(frame)
    assert nothing == ""


def test_state_round_trip(rig):
    clock, bus, vga = rig
    put_text(vga, 0, 0, b"saved")
    crtc(bus, 0x0F, 5)
    other = Vga(clock)
    other.load_state(vga.state())
    assert other.text_lines()[0].startswith("saved")
    assert other.cursor()[:2] == (0, 5)


@given(st.binary(min_size=1, max_size=80))
def test_any_bytes_on_row_0_dump_as_their_cp437_glyphs(data):
    vga = Vga(VirtualClock(icount=True))
    put_text(vga, 0, 0, data)
    assert vga.text_lines()[0][: len(data)] == decode(data)


# -- planes, latches and the graphics controller (IBM VGA reference / FreeVGA, "Graphics Registers") --

A0000 = 0x00000  # window offsets
SEQ, GC = 0x3C4, 0x3CE


def reg(bus, port, index, value):
    bus.write(port, 2, index | (value << 8))


def planar(rig_bus):
    """Mode 12h's memory configuration: planar, map A0000 64K, all planes, write mode 0."""
    reg(rig_bus, SEQ, 0x02, 0x0F)
    reg(rig_bus, SEQ, 0x04, 0x06)
    reg(rig_bus, GC, 0x05, 0x00)
    reg(rig_bus, GC, 0x06, 0x05)


def plane_bytes(vga, addr):
    with vga.planes_access() as planes:
        return [int(planes[p, addr]) for p in range(4)]


def test_leaving_the_text_configuration_maps_the_window_through_the_device(rig):
    _, bus, vga = rig
    seen = []
    vga.on_window_change = seen.append
    put_text(vga, 0, 0, b"kept")
    assert not vga.window_mmio
    planar(bus)
    assert vga.window_mmio and seen == [True]
    assert plane_bytes(vga, 0)[:2] == [ord("k"), 0x07]  # the text went into planes 0 and 1
    vga.reset()
    assert not vga.window_mmio and seen == [True, False]
    assert vga.text_lines()[0].startswith("kept")


def test_write_mode_0_set_reset_and_map_mask(rig):
    _, bus, vga = rig
    planar(bus)
    reg(bus, GC, 0x00, 0x05)  # set/reset: planes 0 and 2 on
    reg(bus, GC, 0x01, 0x03)  # enable set/reset for planes 0 and 1
    reg(bus, SEQ, 0x02, 0x0B)  # plane 2 write-protected
    vga.write(A0000 + 10, 1, 0x3C)
    # planes 0/1 take set/reset (FFh, 00h); plane 3 the CPU byte; plane 2 is masked off
    assert plane_bytes(vga, 10) == [0xFF, 0x00, 0x00, 0x3C]


def test_rotate_and_logical_functions_use_the_latches(rig):
    _, bus, vga = rig
    planar(bus)
    vga.write(A0000 + 1, 1, 0xF0)  # all planes F0h
    for func, expect in ((1, 0xF0 & 0x0F), (2, 0xF0 | 0x0F), (3, 0xF0 ^ 0x0F)):
        vga.write(A0000 + 1, 1, 0xF0)
        vga.read(A0000 + 1, 1)  # latch F0h in every plane
        reg(bus, GC, 0x03, (func << 3) | 4)  # rotate right by 4: F0h -> 0Fh
        vga.write(A0000 + 1, 1, 0xF0)
        reg(bus, GC, 0x03, 0)
        assert plane_bytes(vga, 1) == [expect] * 4, func


def test_bit_mask_keeps_latched_bits(rig):
    _, bus, vga = rig
    planar(bus)
    vga.write(A0000 + 2, 1, 0xAA)
    vga.read(A0000 + 2, 1)
    reg(bus, GC, 0x08, 0x0F)
    vga.write(A0000 + 2, 1, 0x55)
    assert plane_bytes(vga, 2) == [0xA5] * 4  # high nibble from the latches, low from the CPU


def test_write_mode_1_copies_the_latches(rig):
    _, bus, vga = rig
    planar(bus)
    reg(bus, GC, 0x00, 0x09)
    reg(bus, GC, 0x01, 0x0F)
    vga.write(A0000 + 100, 1, 0)  # colour 9 in every pixel of byte 100
    reg(bus, GC, 0x01, 0x00)
    reg(bus, GC, 0x05, 0x01)
    vga.read(A0000 + 100, 1)
    vga.write(A0000 + 200, 1, 0x00)  # the CPU value is ignored
    assert plane_bytes(vga, 200) == plane_bytes(vga, 100) == [0xFF, 0, 0, 0xFF]


def test_write_mode_2_colour_through_the_bit_mask(rig):
    _, bus, vga = rig
    planar(bus)
    reg(bus, GC, 0x05, 0x02)
    reg(bus, GC, 0x08, 0x81)
    vga.read(A0000 + 3, 1)  # latches 0
    vga.write(A0000 + 3, 1, 0x06)  # colour 6: planes 1 and 2
    assert plane_bytes(vga, 3) == [0x00, 0x81, 0x81, 0x00]


def test_write_mode_3_rotated_data_masks_the_set_reset_colour(rig):
    _, bus, vga = rig
    planar(bus)
    reg(bus, GC, 0x05, 0x03)
    reg(bus, GC, 0x00, 0x0C)  # colour 12: planes 2 and 3
    reg(bus, GC, 0x08, 0xF0)
    reg(bus, GC, 0x03, 0x01)  # rotate right by 1
    vga.read(A0000 + 4, 1)
    vga.write(A0000 + 4, 1, 0x3C)  # ror 1 -> 1Eh; & F0h -> 10h is the effective mask
    assert plane_bytes(vga, 4) == [0x00, 0x00, 0x10, 0x10]


def test_read_mode_0_map_select_and_read_mode_1_colour_compare(rig):
    _, bus, vga = rig
    planar(bus)
    reg(bus, GC, 0x05, 0x02)
    vga.read(A0000 + 5, 1)
    for colour, mask in ((0x5, 0xF0), (0xA, 0x0C), (0x7, 0x03)):
        reg(bus, GC, 0x08, mask)
        vga.write(A0000 + 5, 1, colour)  # pixels 0-3: 5, 4-5: A, 6-7: 7
        vga.read(A0000 + 5, 1)
    reg(bus, GC, 0x05, 0x00)
    for plane, expect in ((0, 0xF3), (1, 0x0F), (2, 0xF3), (3, 0x0C)):
        reg(bus, GC, 0x04, plane)
        assert vga.read(A0000 + 5, 1) == expect
    reg(bus, GC, 0x05, 0x08)  # read mode 1
    reg(bus, GC, 0x02, 0x05)
    reg(bus, GC, 0x07, 0x0F)
    assert vga.read(A0000 + 5, 1) == 0xF0
    reg(bus, GC, 0x07, 0x01)  # only plane 0 compared: colours 5 and 7 have bit 0 set
    assert vga.read(A0000 + 5, 1) == 0xF3


def test_memory_map_select_decodes_the_window(rig):
    _, bus, vga = rig
    planar(bus)
    reg(bus, GC, 0x06, 0x0D)  # map B8000-BFFFF
    vga.write(A0000 + 7, 1, 0x42)
    assert vga.read(A0000 + 7, 1) == 0xFF  # outside the map: open bus, the write vanished
    vga.write(0x18000 + 7, 1, 0x42)
    assert plane_bytes(vga, 7) == [0x42] * 4


def test_odd_even_addressing_splits_even_and_odd_bytes(rig):
    _, bus, vga = rig
    reg(bus, SEQ, 0x02, 0x0F)  # text configuration but all planes: the device path
    assert vga.window_mmio
    vga.write(0x18000 + 0x20, 2, 0x1F41)
    assert plane_bytes(vga, 0x20) == [0x41, 0x1F, 0x41, 0x1F]


def test_chain4_mode_13h_pixel_n_is_plane_n_mod_4(rig):
    _, bus, vga = rig
    from emu.devices.vgamodes import MODE13

    vga.set_mode(MODE13)
    assert not vga.window_mmio  # mode 13h's plain configuration: the window is RAM
    vga.vram[5 * 320 + 7] = 0x99  # pixel (7, 5) as the CPU writes it
    assert plane_bytes(vga, 5 * 320 + 4)[3] == 0x99
    reg(bus, SEQ, 0x02, 0x0D)  # plane 1 masked: the device path, same addressing
    assert vga.window_mmio
    vga.write(A0000 + 13, 1, 0x11)  # plane 1: masked
    vga.write(A0000 + 14, 1, 0x22)  # plane 2, address 12
    assert plane_bytes(vga, 12)[1:3] == [0x00, 0x22]
    assert vga.read(A0000 + 5 * 320 + 7, 1) == 0x99


def test_mode_13h_renders_pixels_through_the_dac(rig):
    _, bus, vga = rig
    from emu.devices.vgamodes import MODE13

    vga.set_mode(MODE13)
    vga.vram[199 * 320 + 319] = 0x42
    bus.write(0x3C8, 1, 0x42)
    for v in (63, 32, 0):
        bus.write(0x3C9, 1, v)
    rgb = vga.render_rgb()
    assert rgb.shape == (200, 320, 3)
    assert tuple(rgb[199, 319]) == (255, 130, 0)  # 6-bit 32 -> 8-bit 128 + 2
    assert tuple(rgb[0, 0]) == (0, 0, 0)


def test_mode_12h_planar_pixels_through_attribute_palette_and_dac(rig):
    _, bus, vga = rig
    from emu.devices.vgamodes import MODE12

    vga.set_mode(MODE12)
    assert vga.window_mmio
    reg(bus, GC, 0x05, 0x02)
    reg(bus, GC, 0x08, 0x80 >> 3)
    vga.read(A0000 + 479 * 80 + 2, 1)
    vga.write(A0000 + 479 * 80 + 2, 1, 6)  # pixel (19, 479): colour 6 -> palette 14h -> brown
    rgb = vga.render_rgb()
    assert rgb.shape == (480, 640, 3)
    assert tuple(rgb[479, 19]) == (170, 85, 0)
    assert tuple(rgb[479, 18]) == (0, 0, 0)


def test_text_render_draws_the_plane_2_font(rig):
    _, _, vga = rig
    from emu.devices import vgafont

    put_text(vga, 1, 2, b"A", attr=0x1E)  # yellow on blue
    rgb = vga.render_rgb()
    assert rgb.shape == (400, 720, 3)  # 80x25 cells of 9x16
    cell = rgb[16:32, 18:27]
    glyph = np.unpackbits(np.frombuffer(vgafont.glyph(ord("A")), dtype=np.uint8)).reshape(16, 8)
    fg = (cell == (255, 255, 85)).all(axis=-1)
    bg = (cell == (0, 0, 170)).all(axis=-1)
    assert (fg[:, :8] == glyph.astype(bool)).all()
    assert (fg | bg).all() and not fg[:, 8].any()  # the 9th column is background for letters


def test_line_graphics_repeat_the_8th_column_in_the_9th(rig):
    _, _, vga = rig
    put_text(vga, 0, 0, bytes([0xC4]))  # horizontal line
    rgb = vga.render_rgb()
    row = rgb[7, 0:9, 0]
    assert (row == 170).all()


def test_a_font_loaded_through_plane_2_is_what_text_mode_shows(rig):
    _, bus, vga = rig
    # what vgacon or SYSLINUX do: plane 2 alone, sequential, map A0000, then back to text
    reg(bus, SEQ, 0x02, 0x04)
    reg(bus, SEQ, 0x04, 0x07)
    reg(bus, GC, 0x04, 0x02)
    reg(bus, GC, 0x05, 0x00)
    reg(bus, GC, 0x06, 0x04)
    assert vga.window_mmio
    for line in range(16):
        vga.write(A0000 + ord("A") * 32 + line, 1, 0xFF if line % 2 else 0x00)
    reg(bus, SEQ, 0x02, 0x03)
    reg(bus, SEQ, 0x04, 0x02)
    reg(bus, GC, 0x04, 0x00)
    reg(bus, GC, 0x05, 0x10)
    reg(bus, GC, 0x06, 0x0E)
    assert not vga.window_mmio
    put_text(vga, 0, 0, b"A")
    rgb = vga.render_rgb()
    assert [int(rgb[y, 0, 0]) for y in range(4)] == [0, 170, 0, 170]


def test_state_round_trip_keeps_planes_and_window(rig):
    clock, bus, vga = rig
    planar(bus)
    vga.write(A0000 + 9, 1, 0x5A)
    other = Vga(clock)
    other.load_state(vga.state())
    assert other.window_mmio and other.read(A0000 + 9, 1) == 0x5A


def test_render_ansi_in_a_graphics_mode_says_so_once(rig):
    _, _, vga = rig
    from emu.devices.vgamodes import MODE13

    vga.set_mode(MODE13)
    text, frame = vga.render_ansi(None)
    assert "graphics mode 320x200" in text
    assert vga.render_ansi(frame)[0] == ""
