"""i8042 controller and PS/2 keyboard behaviour from the IBM PS/2 technical reference."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emu.devices.bus import IoBus, IrqLine
from emu.devices.i8042 import (
    CMD_BYTE_DISABLE_AUX,
    CMD_BYTE_DISABLE_KBD,
    CMD_BYTE_SYS,
    CMD_BYTE_XLAT,
    I8042,
    STATUS_A2,
    STATUS_AUXB,
    STATUS_OBF,
    STATUS_SYS,
)
from emu.devices.ps2kbd import KEYS, SET1_KEYS, SET2_TO_SET1, set1_to_set2


class Rig:
    def __init__(self):
        self.levels = {}
        self.edges = {1: 0, 12: 0}
        self.resets = 0
        self.a20 = []
        self.bus = IoBus()
        self.kbc = I8042(IrqLine(self._sink, 1), IrqLine(self._sink, 12),
                         on_reset=self._reset, on_a20=self.a20.append)
        self.kbc.attach(self.bus)

    def _sink(self, line, level):
        if level and not self.levels.get(line):
            self.edges[line] += 1
        self.levels[line] = level

    def _reset(self):
        self.resets += 1

    def cmd(self, c, data=None):
        self.bus.write(0x64, 1, c)
        if data is not None:
            self.bus.write(0x60, 1, data)

    def send(self, b):
        self.bus.write(0x60, 1, b)

    def status(self):
        return self.bus.read(0x64, 1)

    def read(self):
        return self.bus.read(0x60, 1)

    def drain(self):
        out = []
        while self.status() & STATUS_OBF:
            out.append(self.read())
        return out


@pytest.fixture
def rig():
    return Rig()


def test_self_test_answers_55_and_sets_sys(rig):
    assert not rig.status() & STATUS_SYS
    rig.cmd(0xAA)
    assert rig.status() & STATUS_OBF
    assert rig.read() == 0x55
    assert rig.status() & STATUS_SYS
    assert not rig.status() & STATUS_OBF


def test_interface_tests_answer_00(rig):
    rig.cmd(0xAB)
    assert rig.drain() == [0x00]
    rig.cmd(0xA9)
    assert rig.drain() == [0x00]


def test_command_byte_read_write(rig):
    rig.cmd(0x60, 0x65)
    rig.cmd(0x20)
    assert rig.drain() == [0x65]


def test_a2_tracks_command_versus_data_writes(rig):
    rig.cmd(0xAD)
    assert rig.status() & STATUS_A2
    rig.send(0xEE)
    assert not rig.status() & STATUS_A2


def test_d1_with_bit1_clear_disables_a20_and_set_enables(rig):
    rig.cmd(0xD1, 0x01)
    assert rig.a20 == [False]
    assert not rig.kbc.a20
    rig.cmd(0xD1, 0x03)
    assert rig.a20 == [False, True]
    assert rig.resets == 0
    rig.cmd(0xD0)
    assert rig.drain()[0] & 0x03 == 0x03


def test_d1_with_bit0_clear_resets_the_cpu(rig):
    rig.cmd(0xD1, 0x02)
    assert rig.resets == 1


def test_dd_df_gate_a20(rig):
    rig.cmd(0xDD)
    assert rig.a20 == [False]
    rig.cmd(0xDF)
    assert rig.a20 == [False, True]


def test_fe_pulses_reset_and_ff_does_not(rig):
    rig.cmd(0xFF)
    assert rig.resets == 0
    rig.cmd(0xFE)
    assert rig.resets == 1


def test_d2_writes_keyboard_output_buffer_with_irq1(rig):
    rig.cmd(0xD2, 0x42)
    assert rig.levels.get(1) == 1
    assert rig.read() == 0x42
    assert rig.levels.get(1) == 0


def test_d3_writes_aux_output_buffer_with_irq12(rig):
    rig.cmd(0x60, 0x47)  # INT | INT2 | SYS | XLAT
    rig.cmd(0xD3, 0x99)
    assert rig.status() & STATUS_AUXB
    assert rig.levels.get(12) == 1 and not rig.levels.get(1)
    assert rig.read() == 0x99


def test_aux_without_a_mouse_answers_fe(rig):
    rig.cmd(0xD4, 0xF2)
    assert rig.status() & STATUS_AUXB
    assert rig.drain() == [0xFE]


def test_aux_enable_disable_bits(rig):
    rig.cmd(0xA7)
    rig.cmd(0x20)
    assert rig.drain()[0] & CMD_BYTE_DISABLE_AUX
    rig.cmd(0xA8)
    rig.cmd(0x20)
    assert not rig.drain()[0] & CMD_BYTE_DISABLE_AUX


def test_input_port_read(rig):
    rig.cmd(0xC0)
    assert rig.drain() == [0xA0]


def test_keyboard_identify(rig):
    """The keyboard answers F2h with FA AB 83 (untranslated)."""
    rig.cmd(0x60, 0x05)  # XLAT off
    rig.send(0xF2)
    assert rig.drain() == [0xFA, 0xAB, 0x83]


def test_keyboard_identify_through_translation_is_ab_41(rig):
    rig.send(0xF2)
    assert rig.drain() == [0xFA, 0xAB, 0x41]


def test_keyboard_reset_answers_fa_aa(rig):
    rig.send(0xFF)
    assert rig.drain() == [0xFA, 0xAA]


def test_keyboard_echo_and_resend(rig):
    rig.send(0xEE)
    assert rig.drain() == [0xEE]
    rig.send(0xFE)
    assert rig.drain() == [0xEE]


def test_keyboard_leds_typematic_and_set_selection(rig):
    rig.cmd(0x60, 0x05)  # XLAT off
    rig.send(0xED)
    rig.send(0x07)
    assert rig.drain() == [0xFA, 0xFA]
    assert rig.kbc.keyboard.leds == 7
    rig.send(0xF3)
    rig.send(0x20)
    assert rig.drain() == [0xFA, 0xFA]
    rig.send(0xF0)
    rig.send(0x00)
    assert rig.drain() == [0xFA, 0xFA, 0x02]
    rig.send(0xF0)
    rig.send(0x01)
    assert rig.drain() == [0xFA, 0xFA]
    rig.kbc.key_set1(b"\x1e\x9e")
    assert rig.drain() == [0x1E, 0x9E]


def test_keyboard_disable_enable_scanning(rig):
    rig.send(0xF5)
    assert rig.drain() == [0xFA]
    rig.kbc.key_set1(b"\x1e\x9e")
    assert rig.drain() == []
    rig.send(0xF4)
    assert rig.drain() == [0xFA]
    rig.kbc.key_set1(b"\x1e\x9e")
    assert rig.drain() == [0x1E, 0x9E]


def test_keyboard_set_defaults(rig):
    rig.send(0xF6)
    assert rig.drain() == [0xFA]


def test_set2_make_1c_arrives_as_set1_1e_with_xlat(rig):
    """With XLAT set, set-2 make 1C ('A') arrives as set-1 1E, and F0 1C as 9E."""
    assert rig.kbc.command_byte & CMD_BYTE_XLAT
    rig.kbc.keyboard.queue.extend([0x1C, 0xF0, 0x1C])
    rig.kbc.keyboard.notify()
    assert rig.drain() == [0x1E, 0x9E]


def test_without_xlat_the_guest_sees_set2(rig):
    rig.cmd(0x60, 0x05)
    rig.kbc.key_set1(b"\x1e\x9e")
    assert rig.drain() == [0x1C, 0xF0, 0x1C]


def test_e0_key_through_translation(rig):
    rig.kbc.key_set1(b"\xe0\x48\xe0\xc8")  # Up make/break
    assert rig.drain() == [0xE0, 0x48, 0xE0, 0xC8]


def test_pause_through_translation(rig):
    pause = bytes([0xE1, 0x1D, 0x45, 0xE1, 0x9D, 0xC5])
    assert set1_to_set2(pause) == bytes([0xE1, 0x14, 0x77, 0xE1, 0xF0, 0x14, 0xF0, 0x77])
    rig.kbc.key_set1(pause)
    assert rig.drain() == list(pause)


def test_irq1_one_byte_at_a_time_with_an_edge_per_byte(rig):
    rig.kbc.key_set1(b"\x1e\x9e")
    assert rig.levels[1] == 1
    assert rig.read() == 0x1E
    assert rig.levels[1] == 1  # the next byte is already in
    assert rig.read() == 0x9E
    assert rig.levels[1] == 0
    assert rig.edges[1] == 2


def test_no_irq1_when_command_byte_int_clear(rig):
    rig.cmd(0x60, CMD_BYTE_SYS | CMD_BYTE_XLAT)
    rig.kbc.key_set1(b"\x1e")
    assert rig.status() & STATUS_OBF
    assert not rig.levels.get(1)


def test_disabled_keyboard_interface_holds_bytes(rig):
    rig.cmd(0xAD)
    rig.kbc.key_set1(b"\x1e")
    assert not rig.status() & STATUS_OBF
    rig.cmd(0x20)
    assert rig.drain()[0] & CMD_BYTE_DISABLE_KBD
    rig.cmd(0xAE)
    assert rig.drain() == [0x1E]


def test_controller_reply_has_priority_over_keyboard_data(rig):
    rig.cmd(0xAD)
    rig.kbc.key_set1(b"\x1e")
    rig.cmd(0x20)
    assert rig.read() & CMD_BYTE_DISABLE_KBD


def test_state_round_trip(rig):
    rig.kbc.key_set1(b"\x1e\x9e\x30")
    rig.read()
    snap = rig.kbc.state()
    other = Rig()
    other.kbc.load_state(snap)
    assert other.drain() == [0x9E, 0x30]


def test_translation_table_inverts_every_key():
    for _, s1, s2 in KEYS:
        assert SET2_TO_SET1[s2] == s1


@given(st.sampled_from(sorted(SET1_KEYS.values())))
def test_any_key_round_trips_set1_set2_set1(code):
    rig = Rig()
    rig.kbc.key_set1(bytes([code, code | 0x80]))
    assert rig.drain() == [code, code | 0x80]
