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
