"""MC146818A RTC and CMOS: each test states what the datasheet (or the PC/AT CMOS layout) promises,
driven by the real virtual clock in icount mode (shift 0: one instruction is one nanosecond)."""

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from emu.clock import VirtualClock
from emu.devices.bus import IoBus, IrqLine
from emu.devices.rtc146818 import ICOUNT_START_TIME, Rtc146818

SECOND = 1_000_000_000
MS = 1_000_000
START = dt.datetime(2024, 3, 15, 13, 45, 58)  # a Friday


class Rig:
    def __init__(self, start=START):
        self.clock = VirtualClock(icount=True, shift=0)
        self.edges: list[tuple[int, int]] = []
        self.irq8 = IrqLine(lambda line, level: self.edges.append((self.clock.now(), level)), 8)
        self.rtc = Rtc146818(self.clock, self.irq8, start_time=start)
        self.bus = IoBus()
        self.rtc.attach(self.bus)

    def advance(self, ns):
        target = self.clock.now() + ns
        while True:
            deadline = self.clock.next_deadline()
            stop = target if deadline is None or deadline > target else deadline
            self.clock.instructions = max(self.clock.instructions, stop)
            self.clock.run_due()
            if stop == target:
                return

    def read(self, index):
        self.bus.write(0x70, 1, index)
        return self.bus.read(0x71, 1)

    def write(self, index, value):
        self.bus.write(0x70, 1, index)
        self.bus.write(0x71, 1, value)


def test_time_registers_in_bcd_24h_by_default():
    rig = Rig()
    regs = [rig.read(i) for i in (0, 2, 4, 6, 7, 8, 9, 0x32)]
    assert regs == [0x58, 0x45, 0x13, 0x06, 0x15, 0x03, 0x24, 0x20]


def test_binary_data_mode():
    rig = Rig()
    rig.write(0x0B, 0x06)  # DM binary, 24 h
    assert [rig.read(i) for i in (0, 2, 4, 9)] == [58, 45, 13, 24]


def test_12_hour_mode_sets_pm_bit():
    rig = Rig()
    rig.write(0x0B, 0x00)  # BCD, 12 h
    assert rig.read(4) == 0x81


def test_time_advances_with_the_virtual_clock():
    rig = Rig()
    rig.advance(3 * SECOND)
    assert (rig.read(2), rig.read(0)) == (0x46, 0x01)


def test_default_start_time_under_icount_is_fixed():
    clock = VirtualClock(icount=True)
    assert Rtc146818(clock).now_datetime() == ICOUNT_START_TIME


def test_set_bit_stops_updates_and_new_time_runs_from_clearing_it():
    rig = Rig()
    rig.write(0x0B, 0x82)  # SET, 24 h, BCD
    rig.advance(5 * SECOND)
    assert rig.read(0) == 0x58  # frozen
    for index, value in ((0, 0x30), (2, 0x59), (4, 0x23), (7, 0x31), (8, 0x12), (9, 0x99), (0x32, 0x19)):
        rig.write(index, value)
    rig.write(0x0B, 0x02)
    assert rig.rtc.now_datetime() == dt.datetime(1999, 12, 31, 23, 59, 30)
    rig.advance(SECOND - 1)
    assert rig.read(0) == 0x30
    rig.advance(29 * SECOND + 1)
    assert [rig.read(i) for i in (0, 2, 4, 7, 8, 9, 0x32)] == [0, 0, 0, 1, 1, 0, 0x20]


def test_set_bit_clears_uie():
    rig = Rig()
    rig.write(0x0B, 0x12)
    rig.write(0x0B, 0x92)
    assert rig.read(0x0B) == 0x82


def test_divider_reset_stops_time_and_first_update_comes_500ms_after_release():
    rig = Rig()
    rig.write(0x0A, 0x66)  # DV = 110: divider chain reset
    rig.advance(10 * SECOND)
    assert rig.read(0) == 0x58
    rig.write(0x0A, 0x26)
    rig.advance(500 * MS - 1)
    assert rig.read(0) == 0x58
    rig.advance(1)
    assert rig.read(0) == 0x59


def test_periodic_interrupt_at_register_a_rate():
    rig = Rig()
    rig.write(0x0A, 0x26)  # RS = 6: 976.5625 us
    rig.write(0x0B, 0x42)  # PIE
    period = -(-SECOND * 32 // 32768)  # 976562.5 ns, the tick lands on the next whole ns
    rig.advance(period - 1000)
    assert rig.irq8.level == 0
    rig.advance(1000)
    assert rig.irq8.level == 1
    assert rig.read(0x0C) == 0xC0  # IRQF | PF
    assert rig.irq8.level == 0
    rig.advance(period)
    assert rig.irq8.level == 1


def test_periodic_rate_table():
    rig = Rig()
    rig.write(0x0A, 0x23)
    assert abs(rig.rtc.periodic_period_ns() - 122_070.3125) < 1e-6
    rig.write(0x0A, 0x21)
    assert rig.rtc.periodic_period_ns() == 3_906_250
    rig.write(0x0A, 0x2F)
    assert rig.rtc.periodic_period_ns() == 500_000_000
    rig.write(0x0A, 0x20)
    assert rig.rtc.periodic_period_ns() is None


def test_flags_set_without_enable_but_irq_stays_low():
    rig = Rig()
    rig.advance(2 * SECOND)
    assert rig.irq8.level == 0
    assert rig.read(0x0C) == 0x50  # PF and UF, no IRQF
    assert rig.edges == []


def test_update_ended_interrupt_once_per_second():
    rig = Rig()
    rig.write(0x0B, 0x12)  # UIE
    rig.advance(SECOND - 1)
    assert rig.irq8.level == 0
    rig.advance(1)
    assert rig.irq8.level == 1
    assert rig.read(0x0C) & 0x90 == 0x90
    rig.advance(SECOND)
    assert rig.irq8.level == 1


def test_reading_register_c_clears_flags_and_lowers_irq8():
    rig = Rig()
    rig.write(0x0B, 0x12)
    rig.advance(SECOND)
    assert rig.irq8.level == 1
    assert rig.read(0x0C) & 0x80
    assert rig.irq8.level == 0
    assert rig.read(0x0C) == 0


def test_alarm_interrupt_matches_hh_mm_ss():
    rig = Rig()
    rig.write(0x01, 0x10)
    rig.write(0x03, 0x46)
    rig.write(0x05, 0x13)
    rig.write(0x0B, 0x22)  # AIE
    rig.advance(11 * SECOND)  # 13:46:09
    assert rig.irq8.level == 0
    rig.advance(SECOND)  # 13:46:10
    assert rig.irq8.level == 1
    assert rig.read(0x0C) & 0xA0 == 0xA0


def test_alarm_dont_care_bytes_match_every_second():
    rig = Rig()
    for index in (1, 3, 5):
        rig.write(index, 0xFF)
    rig.write(0x0B, 0x22)
    for _ in range(3):
        rig.advance(SECOND)
        assert rig.irq8.level == 1
        rig.read(0x0C)


def test_alarm_flag_latched_while_interrupt_disabled():
    rig = Rig()
    rig.write(0x01, 0x05)
    rig.write(0x03, 0xC0)
    rig.write(0x05, 0xC0)
    rig.advance(8 * SECOND)  # passes 13:46:05
    assert rig.read(0x0C) & 0x20


def test_register_d_reports_valid_ram_and_time():
    rig = Rig()
    assert rig.read(0x0D) == 0x80


def test_uip_set_only_just_before_an_update():
    rig = Rig()
    rig.advance(SECOND - 2_228_000 - 1)
    assert not rig.read(0x0A) & 0x80
    rig.advance(1)
    assert rig.read(0x0A) & 0x80
    assert rig.read(0) == 0x58  # registers still show the old second
    rig.advance(2_228_000)
    assert not rig.read(0x0A) & 0x80
    assert rig.read(0) == 0x59


def test_index_port_bit7_masks_nmi():
    rig = Rig()
    rig.bus.write(0x70, 1, 0x8F)
    assert rig.rtc.nmi_disabled and rig.rtc.index == 0x0F
    rig.bus.write(0x70, 1, 0x0F)
    assert not rig.rtc.nmi_disabled


def test_cmos_ram_bytes_hold_values():
    rig = Rig()
    rig.write(0x40, 0x5A)
    rig.write(0x7F, 0xA5)
    assert rig.read(0x40) == 0x5A and rig.read(0x7F) == 0xA5


def test_standard_cmos_layout():
    rig = Rig()
    rig.rtc.fill_standard_cmos(128 << 20, floppies=("1.44M",), hard_disks=1)
    r = rig.read
    assert r(0x10) == 0x40
    assert r(0x12) == 0xF0 and r(0x19) == 47
    assert r(0x14) == 0x03  # one floppy present, FPU, VGA
    assert r(0x15) | r(0x16) << 8 == 640
    assert r(0x17) | r(0x18) << 8 == 0xFFFF  # 127 MiB does not fit: capped
    assert r(0x30) | r(0x31) << 8 == 0xFFFF
    assert r(0x34) | r(0x35) << 8 == (128 - 16) * 16
    assert r(0x32) == 0x20


def test_boot_order_bytes_as_qemu_stores_them_for_seabios():
    """-boot order=dca: 3Dh = CD-ROM (3) | floppy (1) << 4; 38h = hard disk (2) << 4, no floppy
    signature check."""
    rig = Rig()
    rig.rtc.fill_standard_cmos(32 << 20, boot_order="dac")
    assert rig.read(0x3D) == 0x13
    assert rig.read(0x38) == 0x21


def test_small_memory_extended_kb():
    rig = Rig()
    rig.rtc.fill_standard_cmos(32 << 20, floppies=("1.44M", "720K"))
    assert rig.read(0x17) | rig.read(0x18) << 8 == 31 * 1024
    assert rig.read(0x34) | rig.read(0x35) << 8 == 16 * 16
    assert rig.read(0x10) == 0x43
    assert rig.read(0x14) & 0xC1 == 0x41


def test_cmos_checksum_covers_10h_to_2dh():
    rig = Rig()
    rig.rtc.fill_standard_cmos(64 << 20)
    expected = sum(rig.read(i) for i in range(0x10, 0x2E))
    assert (rig.read(0x2E) << 8) | rig.read(0x2F) == expected
    rig.write(0x30, 0x12)  # outside the range: no change
    assert rig.rtc.checksum() == expected
    rig.write(0x2D, rig.read(0x2D) + 1)
    assert rig.rtc.checksum() == expected + 1


def test_state_round_trip():
    rig = Rig()
    rig.write(0x0B, 0x42)
    rig.advance(5 * MS)
    saved = rig.rtc.state()
    other = Rtc146818(rig.clock, IrqLine(None, 8), start_time=START)
    other.load_state(saved)
    assert other.state() == saved
    assert other.now_datetime() == rig.rtc.now_datetime()


@settings(max_examples=50, deadline=None)
@given(st.datetimes(min_value=dt.datetime(1980, 1, 1), max_value=dt.datetime(2090, 1, 1)),
       st.integers(0, 400 * 86400), st.booleans())
def test_registers_show_start_plus_elapsed(start, elapsed, binary):
    rig = Rig(start)
    if binary:
        rig.write(0x0B, 0x06)
    rig.clock.instructions += elapsed * SECOND
    dec = (lambda v: v) if binary else (lambda v: (v >> 4) * 10 + (v & 15))
    year = dec(rig.read(0x32)) * 100 + dec(rig.read(9))
    shown = dt.datetime(year, dec(rig.read(8)), dec(rig.read(7)), dec(rig.read(4)), dec(rig.read(2)),
                        dec(rig.read(0)))
    want = start.replace(microsecond=0) + dt.timedelta(seconds=elapsed)
    assert shown == want
    assert dec(rig.read(6)) == want.isoweekday() % 7 + 1


@settings(max_examples=25, deadline=None)
@given(st.one_of(st.just(0xC0), st.integers(0, 23)), st.one_of(st.just(0xFF), st.integers(0, 59)),
       st.one_of(st.just(0xC5), st.integers(0, 59)), st.integers(0, 86400 * 3))
def test_next_alarm_is_first_matching_second(hour, minute, second, offset):
    """The alarm fires at the first second whose hh:mm:ss match; C0h-FFh bytes match anything."""
    rig = Rig()
    rig.write(0x0B, 0x06)  # binary, 24 h
    rig.write(0x05, hour)
    rig.write(0x03, minute)
    rig.write(0x01, second)
    now = rig.rtc.seconds + offset

    def matches(t):
        tod = t % 86400
        return ((hour >= 0xC0 or tod // 3600 == hour) and (minute >= 0xC0 or tod // 60 % 60 == minute)
                and (second >= 0xC0 or tod % 60 == second))

    expected = next(t for t in range(now + 1, now + 2 * 86400) if matches(t))
    assert rig.rtc._next_alarm(now) == expected
