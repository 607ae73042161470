"""Terminal bytes -> set-1 scancodes, as a PC keyboard would have sent them."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from emu.hostkeys import decode, scancodes

SHIFT_MAKE, SHIFT_BREAK = 0x2A, 0xAA
CTRL_MAKE, CTRL_BREAK = 0x1D, 0x9D
ALT_MAKE, ALT_BREAK = 0x38, 0xB8


def test_lowercase_letter_is_make_then_break():
    assert scancodes(b"a") == bytes([0x1E, 0x9E])


def test_uppercase_letter_is_wrapped_in_shift():
    assert scancodes(b"A") == bytes([SHIFT_MAKE, 0x1E, 0x9E, SHIFT_BREAK])


def test_shifted_symbols_use_the_us_layout():
    assert scancodes(b"!") == bytes([SHIFT_MAKE, 0x02, 0x82, SHIFT_BREAK])
    assert scancodes(b"?") == bytes([SHIFT_MAKE, 0x35, 0xB5, SHIFT_BREAK])
    assert scancodes(b"/") == bytes([0x35, 0xB5])


def test_enter_tab_space():
    assert scancodes(b"\r") == bytes([0x1C, 0x9C])
    assert scancodes(b"\n") == bytes([0x1C, 0x9C])
    assert scancodes(b"\t") == bytes([0x0F, 0x8F])
    assert scancodes(b" ") == bytes([0x39, 0xB9])


def test_backspace_from_del_and_bs():
    assert scancodes(b"\x7f") == scancodes(b"\x08") == bytes([0x0E, 0x8E])


def test_ctrl_letter():
    assert scancodes(b"\x03") == bytes([CTRL_MAKE, 0x2E, 0xAE, CTRL_BREAK])  # Ctrl-C


def test_lone_esc_is_the_esc_key():
    assert scancodes(b"\x1b") == bytes([0x01, 0x81])
    assert decode(b"\x1b\x1b") == [bytes([0x01, 0x81])] * 2


def test_esc_letter_is_alt_letter():
    assert scancodes(b"\x1bx") == bytes([ALT_MAKE, 0x2D, 0xAD, ALT_BREAK])


def test_arrows_are_e0_prefixed():
    assert scancodes(b"\x1b[A") == bytes([0xE0, 0x48, 0xE0, 0xC8])
    assert scancodes(b"\x1b[B") == bytes([0xE0, 0x50, 0xE0, 0xD0])
    assert scancodes(b"\x1bOC") == bytes([0xE0, 0x4D, 0xE0, 0xCD])
    assert scancodes(b"\x1b[D") == bytes([0xE0, 0x4B, 0xE0, 0xCB])


def test_editing_keys():
    assert scancodes(b"\x1b[H") == bytes([0xE0, 0x47, 0xE0, 0xC7])
    assert scancodes(b"\x1b[F") == bytes([0xE0, 0x4F, 0xE0, 0xCF])
    assert scancodes(b"\x1b[1~") == bytes([0xE0, 0x47, 0xE0, 0xC7])
    assert scancodes(b"\x1b[4~") == bytes([0xE0, 0x4F, 0xE0, 0xCF])
    assert scancodes(b"\x1b[2~") == bytes([0xE0, 0x52, 0xE0, 0xD2])
    assert scancodes(b"\x1b[3~") == bytes([0xE0, 0x53, 0xE0, 0xD3])
    assert scancodes(b"\x1b[5~") == bytes([0xE0, 0x49, 0xE0, 0xC9])
    assert scancodes(b"\x1b[6~") == bytes([0xE0, 0x51, 0xE0, 0xD1])


def test_function_keys_are_not_e0_prefixed():
    assert scancodes(b"\x1bOP") == bytes([0x3B, 0xBB])
    assert scancodes(b"\x1b[[A") == bytes([0x3B, 0xBB])  # Linux console
    assert scancodes(b"\x1b[15~") == bytes([0x3F, 0xBF])
    assert scancodes(b"\x1b[21~") == bytes([0x44, 0xC4])
    assert scancodes(b"\x1b[23~") == bytes([0x57, 0xD7])
    assert scancodes(b"\x1b[24~") == bytes([0x58, 0xD8])


def test_xterm_modifier_parameter():
    # Ctrl+Up: ESC [ 1 ; 5 A
    assert scancodes(b"\x1b[1;5A") == bytes([CTRL_MAKE, 0xE0, 0x48, 0xE0, 0xC8, CTRL_BREAK])
    assert scancodes(b"\x1b[Z") == bytes([SHIFT_MAKE, 0x0F, 0x8F, SHIFT_BREAK])


def test_a_buffer_of_several_keys():
    keys = decode(b"ls\x1b[A\r")
    assert len(keys) == 4
    assert keys[2] == bytes([0xE0, 0x48, 0xE0, 0xC8])


def test_unknown_sequences_and_non_ascii_are_dropped():
    assert decode(b"\x1b[99~") == []
    assert decode("é".encode()) == []


@given(st.text(alphabet=[chr(c) for c in range(0x20, 0x7F)], min_size=1, max_size=1))
def test_any_printable_ascii_gives_a_make_followed_by_its_break(ch):
    seq = scancodes(ch.encode())
    if seq[0] == SHIFT_MAKE:
        assert seq[-1] == SHIFT_BREAK
        seq = seq[1:-1]
    assert len(seq) == 2
    assert seq[0] < 0x80 and seq[1] == seq[0] | 0x80


@given(st.binary(max_size=40))
def test_any_input_gives_balanced_makes_and_breaks(data):
    for key in decode(data):
        makes, breaks, i = [], [], 0
        while i < len(key):
            code = key[i]
            if code == 0xE0:
                i += 1
                code = 0x100 | key[i]
            (breaks if code & 0x80 else makes).append(code & ~0x80)
            i += 1
        assert sorted(makes) == sorted(breaks)


def test_typed_text_reaches_the_guest_through_the_i8042():
    from emu.devices.bus import IrqLine
    from emu.devices.i8042 import I8042

    kbc = I8042(IrqLine(None, 1))
    kbc.key_set1(scancodes(b"Hi\x1b[A"))  # keyboard in set 2, controller translating back to set 1
    got = []
    while kbc.read_status() & 1:
        got.append(kbc.read_data())
    assert bytes(got) == scancodes(b"Hi\x1b[A")
