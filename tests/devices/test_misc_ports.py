"""Port 92h (system control port A), the E9h debug console and QEMU's isa-debug-exit."""

from hypothesis import given
from hypothesis import strategies as st

from emu.devices.bus import IoBus
from emu.devices.debug_exit import DebugExit
from emu.devices.debugcon import DebugCon
from emu.devices.port92 import Port92


def make_port92():
    bus, events = IoBus(), []
    dev = Port92(on_a20=lambda on: events.append(("a20", on)), on_reset=lambda: events.append("reset"))
    dev.attach(bus)
    return dev, bus, events


def test_port92_bit1_gates_a20_and_reads_back():
    dev, bus, events = make_port92()
    bus.write(0x92, 1, 0x02)
    assert events == [("a20", True)] and bus.read(0x92, 1) & 0x02
    bus.write(0x92, 1, 0x02)  # no change, no callback
    bus.write(0x92, 1, 0x00)
    assert events == [("a20", True), ("a20", False)]


def test_port92_bit0_fast_reset_and_reads_back_zero():
    dev, bus, events = make_port92()
    bus.write(0x92, 1, 0x03)
    assert events == [("a20", True), "reset"]
    assert bus.read(0x92, 1) & 0x01 == 0


def test_port92_reset_and_state():
    dev, bus, _ = make_port92()
    bus.write(0x92, 1, 0x02)
    other = Port92()
    other.load_state(dev.state())
    assert other.a20
    dev.reset()
    assert not dev.a20


def test_debugcon_writes_bytes_to_sink_and_reads_e9():
    out = bytearray()
    bus = IoBus()
    DebugCon(out.extend).attach(bus)
    for ch in b"hi\n":
        bus.write(0xE9, 1, ch)
    assert bytes(out) == b"hi\n"
    assert bus.read(0xE9, 1) == 0xE9


def test_debug_exit_default_ports_f4_to_f7():
    statuses = []
    bus = IoBus()
    DebugExit(statuses.append).attach(bus)
    bus.write(0xF4, 1, 0x00)
    bus.write(0xF7, 1, 0x10)
    assert statuses == [1, 0x21]
    assert bus.owner[0xF8] is None


def test_debug_exit_custom_iobase_and_dword_value():
    statuses = []
    bus = IoBus()
    DebugExit(statuses.append, iobase=0x501, iosize=2).attach(bus)
    bus.write(0x501, 4, 0x1234)
    assert statuses == [0x2469]


@given(st.integers(0, 0xFF))
def test_debug_exit_status_is_value_shifted_or_one(value):
    statuses = []
    bus = IoBus()
    DebugExit(statuses.append).attach(bus)
    bus.write(0xF4, 1, value)
    assert statuses == [(value << 1) | 1]
