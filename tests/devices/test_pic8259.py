"""8259A pair: each test states what the Intel 8259A datasheet (231468) or PIIX3 ELCR promises."""

from hypothesis import given
from hypothesis import strategies as st

from emu.devices.bus import IoBus
from emu.devices.pic8259 import Pic8259Pair

MASTER_VECTOR = 0x08
SLAVE_VECTOR = 0x70


def make(icw4=0x01, icw1=0x11):
    bus = IoBus()
    changes = []
    pic = Pic8259Pair(on_intr_change=changes.append)
    pic.attach(bus)
    # The PC/AT BIOS sequence: ICW1 (edge, cascade, ICW4), ICW2 vector base, ICW3 wiring, ICW4.
    for cmd, data, base, icw3 in ((0x20, 0x21, MASTER_VECTOR, 0x04), (0xA0, 0xA1, SLAVE_VECTOR, 0x02)):
        bus.write(cmd, 1, icw1)
        bus.write(data, 1, base)
        bus.write(data, 1, icw3)
        if icw1 & 0x01:
            bus.write(data, 1, icw4)
    return pic, bus, changes


def test_init_sequence_sets_vector_base_and_clears_mask():
    pic, bus, _ = make()
    assert bus.read(0x21, 1) == 0 and bus.read(0xA1, 1) == 0
    pic.set_irq(1, 1)
    assert pic.pending()
    assert pic.acknowledge() == MASTER_VECTOR + 1


def test_icw2_ignores_low_three_bits():
    pic, bus, _ = make()
    bus.write(0x20, 1, 0x11)
    bus.write(0x21, 1, 0x0F)
    bus.write(0x21, 1, 0x04)
    bus.write(0x21, 1, 0x01)
    pic.set_irq(0, 1)
    assert pic.acknowledge() == 0x08


def test_intr_change_callback_reports_rise_and_fall():
    pic, bus, changes = make()
    pic.set_irq(3, 1)
    assert changes == [True]
    pic.acknowledge()
    assert changes == [True, False]


def test_ocw1_mask_blocks_request_but_irr_still_latches():
    pic, bus, _ = make()
    bus.write(0x21, 1, 0x02)
    pic.set_irq(1, 1)
    assert not pic.pending()
    bus.write(0x20, 1, 0x0A)  # OCW3: read IRR
    assert bus.read(0x20, 1) & 0x02
    bus.write(0x21, 1, 0x00)
    assert pic.pending() and pic.acknowledge() == MASTER_VECTOR + 1


def test_ocw3_selects_irr_or_isr_for_reads():
    pic, bus, _ = make()
    pic.set_irq(4, 1)
    pic.set_irq(5, 1)
    assert pic.acknowledge() == MASTER_VECTOR + 4
    bus.write(0x20, 1, 0x0A)
    assert bus.read(0x20, 1) == 0x20  # IRR: IR5 still waiting
    bus.write(0x20, 1, 0x0B)
    assert bus.read(0x20, 1) == 0x10  # ISR: IR4 in service


def test_fully_nested_lower_priority_waits_for_eoi():
    pic, bus, _ = make()
    pic.set_irq(3, 1)
    assert pic.acknowledge() == MASTER_VECTOR + 3
    pic.set_irq(5, 1)
    assert not pic.pending()  # IR5 is below in-service IR3
    pic.set_irq(1, 1)
    assert pic.pending() and pic.acknowledge() == MASTER_VECTOR + 1  # IR1 nests above IR3
    bus.write(0x20, 1, 0x20)  # non-specific EOI clears the highest in service: IR1
    bus.write(0x20, 1, 0x0B)
    assert bus.read(0x20, 1) == 0x08
    assert not pic.pending()
    bus.write(0x20, 1, 0x20)  # now IR3
    assert pic.pending() and pic.acknowledge() == MASTER_VECTOR + 5


def test_specific_eoi_clears_named_level():
    pic, bus, _ = make()
    pic.set_irq(6, 1)
    pic.acknowledge()
    pic.set_irq(2 + 1, 1)
    pic.acknowledge()
    bus.write(0x20, 1, 0x60 | 6)
    bus.write(0x20, 1, 0x0B)
    assert bus.read(0x20, 1) == 0x08


def test_rotate_on_nonspecific_eoi_makes_serviced_level_lowest():
    pic, bus, _ = make()
    pic.set_irq(0, 1)
    pic.acknowledge()
    bus.write(0x20, 1, 0xA0)  # rotate on non-specific EOI: IR0 becomes lowest
    pic.set_irq(0, 0)
    pic.set_irq(0, 1)
    pic.set_irq(7, 1)
    assert pic.acknowledge() == MASTER_VECTOR + 7  # IR1 highest ... IR7 before IR0


def test_set_priority_command():
    pic, bus, _ = make()
    bus.write(0x20, 1, 0xC0 | 4)  # IR4 lowest, IR5 highest
    pic.set_irq(3, 1)
    pic.set_irq(6, 1)
    assert pic.acknowledge() == MASTER_VECTOR + 6


def test_poll_returns_highest_request_and_acknowledges_it():
    pic, bus, _ = make()
    pic.set_irq(5, 1)
    pic.set_irq(6, 1)
    bus.write(0x20, 1, 0x0C)  # OCW3 poll
    assert bus.read(0x20, 1) == 0x80 | 5
    bus.write(0x20, 1, 0x0B)
    assert bus.read(0x20, 1) == 0x20  # IR5 now in service
    bus.write(0x20, 1, 0x0C)
    assert bus.read(0x20, 1) == 0  # IR6 blocked by IR5 in service: no interrupt
    assert bus.read(0x21, 1) == 0  # poll mode lasts one read: data port gives IMR again


def test_auto_eoi_sets_no_isr_bit():
    pic, bus, _ = make(icw4=0x03)
    pic.set_irq(3, 1)
    assert pic.acknowledge() == MASTER_VECTOR + 3
    bus.write(0x20, 1, 0x0B)
    assert bus.read(0x20, 1) == 0
    pic.set_irq(5, 1)
    assert pic.pending()  # nothing in service blocks it


def test_icw1_without_ic4_clears_auto_eoi():
    pic, bus, _ = make(icw4=0x03)
    bus.write(0x20, 1, 0x10)  # ICW1 without IC4
    bus.write(0x21, 1, MASTER_VECTOR)
    bus.write(0x21, 1, 0x04)
    pic.set_irq(3, 1)
    pic.acknowledge()
    bus.write(0x20, 1, 0x0B)
    assert bus.read(0x20, 1) == 0x08


def test_special_mask_mode_lets_lower_levels_through():
    pic, bus, _ = make()
    pic.set_irq(3, 1)
    pic.acknowledge()
    pic.set_irq(5, 1)
    assert not pic.pending()
    bus.write(0x21, 1, 0x08)  # mask IR3 (in service)
    bus.write(0x20, 1, 0x68)  # OCW3: set special mask mode
    assert pic.pending() and pic.acknowledge() == MASTER_VECTOR + 5
    bus.write(0x20, 1, 0x48)  # reset special mask mode
    pic.set_irq(6, 1)
    assert not pic.pending()


def test_edge_request_latches_a_pulse():
    pic, bus, _ = make()
    pic.set_irq(4, 1)
    pic.set_irq(4, 0)
    assert pic.pending() and pic.acknowledge() == MASTER_VECTOR + 4


def test_edge_needs_a_new_rising_edge():
    pic, bus, _ = make()
    pic.set_irq(4, 1)
    pic.acknowledge()
    bus.write(0x20, 1, 0x20)
    assert not pic.pending()  # line still high, but no new edge


def test_level_mode_via_elcr_follows_the_line():
    pic, bus, _ = make()
    bus.write(0x4D1, 1, 0x08)  # IRQ11 level-triggered
    assert bus.read(0x4D1, 1) == 0x08
    pic.set_irq(11, 1)
    assert pic.acknowledge() == SLAVE_VECTOR + 3
    bus.write(0xA0, 1, 0x20)
    bus.write(0x20, 1, 0x20)
    assert pic.pending()  # still asserted: requests again after EOI
    pic.set_irq(11, 0)
    assert not pic.pending()


def test_elcr_masks_bits_that_must_stay_edge():
    pic, bus, _ = make()
    bus.write(0x4D0, 2, 0xFFFF)
    assert bus.read(0x4D0, 1) == 0xF8
    assert bus.read(0x4D1, 1) == 0xDE


def test_ltim_makes_every_input_level_triggered():
    pic, bus, _ = make(icw1=0x19)
    pic.set_irq(5, 1)
    pic.set_irq(5, 0)
    assert not pic.pending()


def test_spurious_irq7_when_request_vanishes():
    pic, bus, _ = make()
    bus.write(0x4D0, 1, 0x20)  # IRQ5 level
    pic.set_irq(5, 1)
    assert pic.pending()
    pic.set_irq(5, 0)  # gone before INTA
    assert pic.acknowledge() == MASTER_VECTOR + 7
    bus.write(0x20, 1, 0x0B)
    assert bus.read(0x20, 1) == 0  # no ISR bit for a spurious interrupt


def test_spurious_irq15_sets_master_cascade_isr_only():
    pic, bus, _ = make()
    pic.set_irq(12, 1)
    assert pic.pending()
    bus.write(0xA1, 1, 0x10)  # slave masks IR4 (IRQ12) before the INTA
    # The master still saw IR2: emulate the window by acknowledging with the stale master request.
    pic.master.irr |= 0x04
    assert pic.acknowledge() == SLAVE_VECTOR + 7
    bus.write(0x20, 1, 0x0B)
    assert bus.read(0x20, 1) == 0x04
    bus.write(0xA0, 1, 0x0B)
    assert bus.read(0xA0, 1) == 0


def test_cascade_delivers_slave_vector_and_sets_both_isr():
    pic, bus, _ = make()
    pic.set_irq(14, 1)
    assert pic.acknowledge() == SLAVE_VECTOR + 6
    bus.write(0x20, 1, 0x0B)
    bus.write(0xA0, 1, 0x0B)
    assert bus.read(0x20, 1) == 0x04 and bus.read(0xA0, 1) == 0x40


def test_slave_request_blocked_until_master_eoi_in_fully_nested_mode():
    pic, bus, _ = make()
    pic.set_irq(14, 1)
    pic.acknowledge()
    bus.write(0xA0, 1, 0x20)  # EOI slave only
    pic.set_irq(9, 1)
    assert not pic.pending()  # master IR2 still in service
    bus.write(0x20, 1, 0x20)
    assert pic.acknowledge() == SLAVE_VECTOR + 1


def test_special_fully_nested_lets_higher_slave_request_through():
    pic, bus, _ = make(icw4=0x11)
    pic.set_irq(14, 1)
    pic.acknowledge()
    pic.set_irq(9, 1)  # higher priority on the same slave
    assert pic.pending() and pic.acknowledge() == SLAVE_VECTOR + 1


def test_state_round_trip():
    pic, bus, _ = make()
    pic.set_irq(9, 1)
    pic.set_irq(3, 1)
    pic.acknowledge()
    saved = pic.state()
    other, obus, _ = make()
    other.load_state(saved)
    assert other.state() == saved
    assert other.acknowledge() == pic.acknowledge()


@given(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF))
def test_priority_picks_lowest_numbered_unmasked_request(requests, mask):
    pic, bus, _ = make()
    bus.write(0x21, 1, mask & 0xFB)  # keep the cascade open
    bus.write(0xA1, 1, mask >> 8)
    for line in range(16):
        if line != 2 and requests & (1 << line):
            pic.set_irq(line, 1)
    live = requests & ~(mask & 0xFFFB) & ~0x4
    # Slave lines rank at the master's IR2 position: 0, 1, 8..15, 3..7.
    order = [0, 1, *range(8, 16), *range(3, 8)]
    expected = next((line for line in order if live & (1 << line)), None)
    assert pic.pending() == (expected is not None)
    if expected is not None:
        base = MASTER_VECTOR if expected < 8 else SLAVE_VECTOR - 8
        assert pic.acknowledge() == base + expected


def test_rotate_in_auto_eoi_mode_rotates_on_acknowledge():
    pic, bus, _ = make(icw4=0x03)
    bus.write(0x20, 1, 0x80)  # OCW2: set rotate in AEOI mode
    pic.set_irq(2 + 1, 1)
    assert pic.acknowledge() == MASTER_VECTOR + 3  # IR3 now lowest: IR4 highest
    pic.set_irq(1, 1)
    pic.set_irq(5, 1)
    assert pic.acknowledge() == MASTER_VECTOR + 5


def test_irq_line_pulse_is_an_edge_request():
    pic, bus, _ = make()
    line = pic.irq_line(6)
    line.pulse()
    assert pic.acknowledge() == MASTER_VECTOR + 6
