"""8254 PIT: each test states what the Intel 8254 datasheet (231164) promises, driven by the real
virtual clock in icount mode (shift 0: one instruction is one nanosecond)."""

from hypothesis import given, settings
from hypothesis import strategies as st

from emu.clock import VirtualClock
from emu.devices.bus import IoBus, IrqLine
from emu.devices.pic8259 import Pic8259Pair
from emu.devices.pit8254 import PIT_HZ, Pit8254, ticks_to_ns


class Rig:
    def __init__(self):
        self.clock = VirtualClock(icount=True, shift=0)
        self.clock.advance_instructions(1000)  # start away from time zero
        self.edges: list[tuple[int, int]] = []  # (virtual ns, level) of every IRQ0 change
        self.irq0 = IrqLine(lambda line, level: self.edges.append((self.clock.now(), level)), 0)
        self.pit = Pit8254(self.clock, self.irq0)
        self.bus = IoBus()
        self.pit.attach(self.bus)
        self.t0 = self.clock.now()

    def program(self, counter, mode, count, rw=3, bcd=False):
        self.bus.write(0x43, 1, (counter << 6) | (rw << 4) | (mode << 1) | int(bcd))
        port = 0x40 + counter
        if rw in (1, 3):
            self.bus.write(port, 1, count & 0xFF)
        if rw in (2, 3):
            self.bus.write(port, 1, (count >> 8) & 0xFF)
        self.t0 = self.clock.now()

    def to_tick(self, ticks):
        """Advance the clock to `ticks` PIT ticks after the last programming, firing timers."""
        target = self.t0 + ticks_to_ns(ticks)
        # Step through deadlines as the main loop would, never past the target.
        while True:
            deadline = self.clock.next_deadline()
            stop = target if deadline is None or deadline > target else deadline
            self.clock.instructions = max(self.clock.instructions, stop)
            self.clock.run_due()
            if stop == target:
                return

    def read_count(self, counter=0):
        port = 0x40 + counter
        lo = self.bus.read(port, 1)
        hi = self.bus.read(port, 1)
        return lo | (hi << 8)

    def rising_edges(self):
        return [t for t, level in self.edges if level]


def test_mode0_out_goes_high_at_terminal_count_and_stays():
    rig = Rig()
    rig.program(0, 0, 100)
    assert rig.irq0.level == 0
    rig.to_tick(99)
    assert rig.irq0.level == 0
    rig.to_tick(100)
    assert rig.irq0.level == 1
    rig.to_tick(5000)
    assert rig.irq0.level == 1 and len(rig.rising_edges()) == 1


def test_mode0_counts_down_and_wraps():
    rig = Rig()
    rig.program(0, 0, 100)
    rig.to_tick(30)
    assert rig.read_count() == 70
    rig.to_tick(101)
    assert rig.read_count() == 0xFFFF


def test_mode0_first_byte_of_two_byte_write_stops_count_and_lowers_out():
    rig = Rig()
    rig.program(0, 0, 10)
    rig.to_tick(20)
    assert rig.irq0.level == 1
    rig.bus.write(0x40, 1, 0x50)
    assert rig.irq0.level == 0
    rig.bus.write(0x40, 1, 0x00)
    rig.t0 = rig.clock.now()
    rig.to_tick(0x50)
    assert rig.irq0.level == 1


def test_mode2_reloads_and_pulses_out_every_n_ticks():
    rig = Rig()
    n = 1000
    rig.program(0, 2, n)
    rig.to_tick(10 * n + 1)
    rises = rig.rising_edges()
    # The first "rise" is OUT's initial high; then one low pulse of one tick per period.
    periods = [b - a for a, b in zip(rises[1:], rises[2:], strict=False)]
    assert len(rises) == 1 + 10
    assert all(abs(p - ticks_to_ns(n)) <= 1 for p in periods)
    lows = [t for t, level in rig.edges if not level]
    for low, rise in zip(lows, rises[1:], strict=False):
        assert 0 < rise - low <= ticks_to_ns(1) + 1


def test_mode2_count_reads_reload_to_one():
    rig = Rig()
    rig.program(0, 2, 50)
    rig.to_tick(0)
    assert rig.read_count() == 50
    rig.to_tick(49)
    assert rig.read_count() == 1
    rig.to_tick(50)
    assert rig.read_count() == 50


def test_mode3_square_wave_half_high_half_low():
    rig = Rig()
    n = 101  # odd: high (N+1)/2, low (N-1)/2
    rig.program(0, 3, n)
    rig.to_tick(3 * n)
    times = [t for t, _ in rig.edges]
    levels = [level for _, level in rig.edges]
    assert levels[:5] == [1, 0, 1, 0, 1]
    assert abs((times[1] - rig.t0) - ticks_to_ns(51)) <= 1
    assert abs((times[2] - times[1]) - ticks_to_ns(50)) <= 1


def test_mode3_counts_down_by_two():
    rig = Rig()
    rig.program(0, 3, 100)
    rig.to_tick(10)
    assert rig.read_count() == 80
    rig.to_tick(60)
    assert rig.read_count() == 80  # second half restarts from N


def test_mode4_strobe_is_one_tick_low_once():
    rig = Rig()
    rig.program(0, 4, 40)
    rig.to_tick(39)
    assert rig.irq0.level == 1
    rig.to_tick(40)
    assert rig.irq0.level == 0
    rig.to_tick(41)
    assert rig.irq0.level == 1
    rig.to_tick(400)
    assert [level for _, level in rig.edges] == [1, 0, 1]


def test_mode1_one_shot_triggered_by_gate_on_counter2():
    rig = Rig()
    rig.program(2, 1, 30)
    rig.to_tick(100)
    assert rig.bus.read(0x61, 1) & 0x20  # OUT2 high: not triggered yet
    rig.bus.write(0x61, 1, 0x01)  # gate rising edge triggers
    rig.t0 = rig.clock.now()
    rig.to_tick(1)
    assert not rig.bus.read(0x61, 1) & 0x20
    rig.to_tick(30)
    assert rig.bus.read(0x61, 1) & 0x20


def test_mode5_hardware_strobe_after_gate_trigger():
    rig = Rig()
    rig.program(2, 5, 20)
    rig.bus.write(0x61, 1, 0x01)
    rig.t0 = rig.clock.now()
    rig.to_tick(20)
    assert not rig.bus.read(0x61, 1) & 0x20
    rig.to_tick(21)
    assert rig.bus.read(0x61, 1) & 0x20


def test_mode0_gate_low_pauses_counting():
    rig = Rig()
    rig.bus.write(0x61, 1, 0x01)
    rig.program(2, 0, 1000)
    rig.to_tick(100)
    rig.bus.write(0x61, 1, 0x00)
    before = rig.read_count(2)
    rig.to_tick(500)
    assert rig.read_count(2) == before == 900
    rig.bus.write(0x61, 1, 0x01)
    rig.t0 = rig.clock.now()
    rig.to_tick(100)
    assert rig.read_count(2) == 800


def test_mode2_gate_low_forces_out_high_and_rising_edge_reloads():
    rig = Rig()
    rig.bus.write(0x61, 1, 0x01)
    rig.program(2, 2, 100)
    rig.to_tick(60)
    rig.bus.write(0x61, 1, 0x00)
    assert rig.bus.read(0x61, 1) & 0x20
    rig.bus.write(0x61, 1, 0x01)
    assert rig.read_count(2) == 100


def test_linux_style_calibration_sees_out2_after_count():
    """pit_calibrate_tsc: gate on, speaker off, mode 0 counter 2, spin until OUT2 (61h bit 5)."""
    rig = Rig()
    rig.bus.write(0x61, 1, (rig.bus.read(0x61, 1) & ~0x02) | 0x01)
    latch = PIT_HZ // 20
    rig.program(2, 0, latch)
    spins = 0
    while not rig.bus.read(0x61, 1) & 0x20:
        rig.clock.advance_instructions(10_000)
        spins += 1
    elapsed = rig.clock.now() - rig.t0
    assert abs(elapsed - 50_000_000) <= 10_000


def test_counter_latch_freezes_value_until_read_and_second_latch_ignored():
    rig = Rig()
    rig.program(0, 2, 1000)
    rig.to_tick(10)
    rig.bus.write(0x43, 1, 0x00)  # latch counter 0
    rig.to_tick(300)
    rig.bus.write(0x43, 1, 0x00)  # ignored: not read yet
    assert rig.read_count() == 990
    assert rig.read_count() == 700  # live again


def test_read_back_status_then_count():
    rig = Rig()
    rig.program(0, 2, 1000)
    rig.to_tick(5)
    rig.bus.write(0x43, 1, 0xC2)  # read-back: count and status of counter 0
    status = rig.bus.read(0x40, 1)
    assert status == 0x80 | (3 << 4) | (2 << 1)  # OUT high, null count clear, LSB/MSB, mode 2
    assert rig.read_count() == 995


def test_read_back_reports_null_count_before_count_is_written():
    rig = Rig()
    rig.bus.write(0x43, 1, 0x34)  # counter 0, LSB/MSB, mode 2; no count yet
    rig.bus.write(0x43, 1, 0xE2)  # read-back status only
    assert rig.bus.read(0x40, 1) & 0x40


def test_bcd_counting():
    rig = Rig()
    rig.program(0, 0, 0x1000, bcd=True)
    rig.to_tick(1)
    assert rig.read_count() == 0x0999
    rig.program(0, 0, 0x0000, bcd=True)  # 0 means 10000 in BCD
    rig.to_tick(1)
    assert rig.read_count() == 0x9999


def test_lsb_only_and_msb_only_access():
    rig = Rig()
    rig.program(1, 2, 0x80, rw=1)
    rig.to_tick(0)
    assert rig.bus.read(0x41, 1) == 0x80
    rig.program(1, 2, 0x0200, rw=2)
    rig.to_tick(0x100)
    assert rig.bus.read(0x41, 1) == 0x01


def test_port61_refresh_bit_toggles_with_time():
    rig = Rig()
    seen = set()
    for _ in range(10):
        seen.add(rig.bus.read(0x61, 1) & 0x10)
        rig.clock.advance_instructions(7_000)
    assert seen == {0, 0x10}


def test_port61_keeps_writable_bits():
    rig = Rig()
    rig.bus.write(0x61, 1, 0xFF)
    assert rig.bus.read(0x61, 1) & 0x0F == 0x0F
    assert rig.pit.speaker_on


def test_state_round_trip_keeps_counting():
    rig = Rig()
    rig.program(0, 2, 500)
    rig.to_tick(123)
    saved = rig.pit.state()
    other = Pit8254(rig.clock, IrqLine(None, 0))
    other.load_state(saved)
    assert other.state() == saved
    assert other.counters[0].count(rig.clock.now()) == rig.pit.counters[0].count(rig.clock.now())


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 0xFFFF), st.integers(0, 200_000))
def test_mode0_counts_down_consistently(reload, ticks):
    rig = Rig()
    rig.program(0, 0, reload)
    rig.to_tick(ticks)
    assert rig.read_count() == (reload - ticks) % 0x10000
    assert rig.irq0.level == (ticks >= reload)


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 0xFFFF), st.integers(0, 300_000))
def test_mode2_count_is_periodic(reload, ticks):
    rig = Rig()
    rig.program(1, 2, reload)  # counter 1: no OUT wiring, so no timer events to step through
    rig.to_tick(ticks)
    assert rig.read_count(1) == reload - ticks % reload


def test_counter0_mode2_drives_pic_irq0_once_per_period():
    """The PC wiring: OUT0 -> master IR0 (edge). Each period delivers one vector 08h."""
    clock = VirtualClock(icount=True, shift=0)
    bus = IoBus()
    raised = []
    pic = Pic8259Pair(on_intr_change=lambda level: raised.append(level))
    pic.attach(bus)
    for port, value in ((0x20, 0x11), (0x21, 0x08), (0x21, 0x04), (0x21, 0x01),
                        (0xA0, 0x11), (0xA1, 0x70), (0xA1, 0x02), (0xA1, 0x01)):
        bus.write(port, 1, value)
    pit = Pit8254(clock, pic.irq_line(0))
    pit.attach(bus)
    n = PIT_HZ // 1000  # 1 kHz
    bus.write(0x43, 1, 0x34)
    bus.write(0x40, 1, n & 0xFF)
    bus.write(0x40, 1, n >> 8)
    # The control word already raised OUT (mode 2 idles high): that first edge is pending.
    assert pic.pending() and pic.acknowledge() == 0x08
    bus.write(0x20, 1, 0x20)
    times = []
    for _ in range(6):  # low at N-1, high at N, ... for three periods
        clock.instructions = clock.next_deadline()
        clock.run_due()
        if pic.pending():
            assert pic.acknowledge() == 0x08
            bus.write(0x20, 1, 0x20)
            times.append(clock.now())
    assert times == [ticks_to_ns(k * n) for k in (1, 2, 3)]
