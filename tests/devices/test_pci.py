"""PCI configuration mechanism #1 and the i440FX/PIIX3 functions, as the PCI 2.1 spec and the
Intel datasheets describe them."""

from hypothesis import given
from hypothesis import strategies as st

from emu.devices.bus import IoBus
from emu.devices.pci import PciBus, PciFunction


def make(**kw):
    bus = IoBus()
    pci = PciBus(**kw)
    pci.attach(bus)
    return pci, bus


def addr(dev, fn, reg, bus_no=0):
    return 0x80000000 | (bus_no << 16) | (dev << 11) | (fn << 8) | reg


def cfg_read(bus, dev, fn, reg, size=4):
    bus.write(0xCF8, 4, addr(dev, fn, reg & 0xFC))
    return bus.read(0xCFC + (reg & 3), size)


def cfg_write(bus, dev, fn, reg, value, size=4):
    bus.write(0xCF8, 4, addr(dev, fn, reg & 0xFC))
    bus.write(0xCFC + (reg & 3), size, value)


def test_config_address_reads_back_without_reserved_bits():
    pci, bus = make()
    bus.write(0xCF8, 4, 0xFFFFFFFF)
    assert bus.read(0xCF8, 4) == 0x80FFFFFC


def test_ids_class_and_header_of_the_three_functions():
    pci, bus = make()
    assert cfg_read(bus, 0, 0, 0) == 0x12378086
    assert cfg_read(bus, 1, 0, 0) == 0x70008086
    assert cfg_read(bus, 1, 1, 0) == 0x70108086
    assert cfg_read(bus, 0, 0, 8) >> 8 == 0x060000
    assert cfg_read(bus, 1, 0, 8) >> 8 == 0x060100
    assert cfg_read(bus, 1, 1, 8) >> 8 == 0x010180
    assert cfg_read(bus, 0, 0, 0x0E, 1) == 0x00
    assert cfg_read(bus, 1, 0, 0x0E, 1) == 0x80  # multi-function
    assert cfg_read(bus, 1, 1, 0x0E, 1) == 0x00


def test_absent_device_and_disabled_access_read_all_ones():
    pci, bus = make()
    assert cfg_read(bus, 5, 0, 0) == 0xFFFFFFFF
    assert cfg_read(bus, 0, 0, 0, size=1) == 0x86
    bus.write(0xCF8, 4, addr(0, 0, 0) & 0x7FFFFFFF)
    assert bus.read(0xCFC, 4) == 0xFFFFFFFF
    bus.write(0xCF8, 4, addr(0, 0, 0, bus_no=1))
    assert bus.read(0xCFC, 4) == 0xFFFFFFFF


def test_byte_and_word_accesses_at_data_port_offsets():
    pci, bus = make()
    bus.write(0xCF8, 4, addr(0, 0, 0))
    assert bus.read(0xCFE, 2) == 0x1237
    assert bus.read(0xCFD, 1) == 0x80


def test_read_only_registers_ignore_writes():
    pci, bus = make()
    cfg_write(bus, 1, 1, 0, 0xFFFFFFFF)
    cfg_write(bus, 1, 1, 8, 0xFFFFFFFF)
    assert cfg_read(bus, 1, 1, 0) == 0x70108086
    assert cfg_read(bus, 1, 1, 8) >> 8 == 0x010180


def test_status_error_bits_are_write_one_to_clear():
    pci, bus = make()
    fn = pci.function(0, 0)
    fn.config[0x07] |= 0x20  # received master abort
    cfg_write(bus, 0, 0, 0x06, 0x0000, size=2)
    assert cfg_read(bus, 0, 0, 0x06, 2) & 0x2000
    cfg_write(bus, 0, 0, 0x06, 0x2000, size=2)
    assert not cfg_read(bus, 0, 0, 0x06, 2) & 0x2000
    assert cfg_read(bus, 0, 0, 0x06, 2) == 0x0280  # DEVSEL and fast back-to-back stay


def test_ide_legacy_mode_bars_0_to_3_are_not_implemented():
    pci, bus = make()
    for bar in range(4):
        cfg_write(bus, 1, 1, 0x10 + 4 * bar, 0xFFFFFFFF)
        assert cfg_read(bus, 1, 1, 0x10 + 4 * bar) == 0


def test_ide_bus_master_bar_sizes_to_16_ports():
    pci, bus = make()
    cfg_write(bus, 1, 1, 0x20, 0xFFFFFFFF)
    assert cfg_read(bus, 1, 1, 0x20) == 0xFFFFFFF1  # size 16: all bits above 4 writable
    cfg_write(bus, 1, 1, 0x20, 0xC001)
    assert cfg_read(bus, 1, 1, 0x20) == 0xC001
    assert pci.function(1, 1).bar_address(4) == 0xC000


def test_ide_command_register_only_io_and_bus_master_writable():
    pci, bus = make()
    cfg_write(bus, 1, 1, 0x04, 0xFFFF, size=2)
    assert cfg_read(bus, 1, 1, 0x04, 2) == 0x0005


def test_pam_registers_writable_and_reported():
    seen = []
    pci, bus = make(on_pam=lambda i, v: seen.append((i, v)))
    cfg_write(bus, 0, 0, 0x59, 0xFF, size=1)
    cfg_write(bus, 0, 0, 0x5A, 0xFF, size=1)
    assert cfg_read(bus, 0, 0, 0x59, 1) == 0x30
    assert cfg_read(bus, 0, 0, 0x5A, 1) == 0x33
    assert seen == [(0, 0x30), (1, 0x33)]


def test_pirq_route_defaults_disabled_and_reports_changes():
    routes = []
    pci, bus = make(on_pirq=lambda p, irq: routes.append((p, irq)))
    assert cfg_read(bus, 1, 0, 0x60) == 0x80808080
    cfg_write(bus, 1, 0, 0x60, 0x800B0A0B)
    assert cfg_read(bus, 1, 0, 0x60) == 0x800B0A0B
    assert routes == [(0, 11), (1, 10), (2, 11), (3, None)]


def test_interrupt_line_writable_on_added_function():
    pci, bus = make()
    fn = PciFunction(0x1234, 0x1111, 0x03, 0x00, name="vga")
    fn.add_io_bar(0, 32)
    fn.finish()
    pci.add(2, 0, fn)
    cfg_write(bus, 2, 0, 0x3C, 0x0B, size=1)
    assert cfg_read(bus, 2, 0, 0x3C, 1) == 0x0B
    cfg_write(bus, 2, 0, 0x10, 0xFFFFFFFF)
    assert cfg_read(bus, 2, 0, 0x10) == 0xFFFFFFE1


def test_function_1_hidden_when_function_0_is_single():
    pci, bus = make()
    pci.add(3, 0, PciFunction(0x1234, 1, 0xFF, 0))
    pci.add(3, 1, PciFunction(0x1234, 2, 0xFF, 0))
    assert cfg_read(bus, 3, 1, 0) == 0xFFFFFFFF


def test_cf9_reset_control():
    resets = []
    pci, bus = make(on_reset=resets.append)
    bus.write(0xCF9, 1, 0x02)
    assert resets == [] and bus.read(0xCF9, 1) == 0x02
    bus.write(0xCF9, 1, 0x06)
    assert resets == [True]
    bus.write(0xCF9, 1, 0x04)
    assert resets == [True, False]
    assert bus.read(0xCF9, 1) & 0x04 == 0


def test_reset_restores_power_on_config_and_state_round_trips():
    pci, bus = make()
    cfg_write(bus, 1, 1, 0x20, 0xC001)
    saved = pci.state()
    other, _ = make()
    other.load_state(saved)
    assert other.state() == saved
    pci.reset()
    assert cfg_read(bus, 1, 1, 0x20) == 0x00000001


@given(st.integers(0, 0xFF), st.integers(0, 0xFFFFFFFF))
def test_no_write_changes_identity(reg, value):
    pci, bus = make()
    reg &= 0xFC
    cfg_write(bus, 1, 1, reg, value)
    assert cfg_read(bus, 1, 1, 0) == 0x70108086
    assert cfg_read(bus, 1, 1, 8) >> 8 == 0x010180
