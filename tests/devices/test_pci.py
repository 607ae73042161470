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


# -- the expansion ROM BAR (PCI 3.0, 6.2.5.2) and the PCI VGA -----------------------------------
ROM_BAR = 0x30
FAKE_ROM = b"\x55\xaa\x4e" + bytes(39936 - 3)  # the size of SeaVGABIOS: a 64 KiB decoder


def vga_on_bus(maps=None):
    from emu.devices.pcivga import PciVga

    pci, bus = make()
    calls = [] if maps is None else maps
    vga = PciVga(FAKE_ROM, lambda region, base: calls.append(base))
    vga.attach(pci, bus)
    return vga, pci, bus, calls


def test_rom_bar_sizes_to_a_power_of_two_and_keeps_reserved_bits_zero():
    fn = PciFunction(0x1234, 0x1111, 3, 0)
    assert fn.add_rom_bar(39936) == 0x10000
    fn.write(ROM_BAR, 4, 0xFFFFFFFE)  # how SeaBIOS sizes it: enable clear
    assert fn.read(ROM_BAR, 4) == 0xFFFF0000
    fn.write(ROM_BAR, 4, 0xFFFFFFFF)
    assert fn.read(ROM_BAR, 4) == 0xFFFF0001
    small = PciFunction(0x1234, 0x1111, 3, 0)
    assert small.add_rom_bar(100) == 0x800  # bits 31-11 are the address: 2 KiB at least
    small.write(ROM_BAR, 4, 0xFFFFFFFF)
    assert small.read(ROM_BAR, 4) == 0xFFFFF801


def test_function_without_rom_bar_reads_zero_there():
    pci, bus = make()
    cfg_write(bus, 1, 1, ROM_BAR, 0xFFFFFFFF)
    assert cfg_read(bus, 1, 1, ROM_BAR) == 0


def test_rom_decoded_needs_enable_memory_space_and_an_address():
    fn = PciFunction(0x1234, 0x1111, 3, 0)
    fn.add_rom_bar(0x8000)
    fn.set_wmask(0x04, 0x0003, 2)
    fn.write(ROM_BAR, 4, 0xFEBF0000 | 1)
    assert fn.rom_decoded() is None  # Memory Space off
    fn.write(0x04, 2, 0x0002)
    assert fn.rom_decoded() == 0xFEBF0000
    fn.write(ROM_BAR, 4, 0xFEBF0000)
    assert fn.rom_decoded() is None  # enable bit off
    fn.write(ROM_BAR, 4, 1)
    assert fn.rom_decoded() is None  # address 0: unassigned


def test_pci_vga_identity_and_bars():
    vga, pci, bus, _ = vga_on_bus()
    assert cfg_read(bus, 2, 0, 0) == 0x11111234
    assert cfg_read(bus, 2, 0, 8) >> 8 == 0x030000
    assert cfg_read(bus, 2, 0, 0x2C) == 0x11001AF4
    assert cfg_read(bus, 2, 0, 0x10) == 0x08  # 32-bit, prefetchable
    cfg_write(bus, 2, 0, 0x10, 0xFFFFFFFF)
    assert cfg_read(bus, 2, 0, 0x10) == 0xFF000008  # 16 MiB
    cfg_write(bus, 2, 0, ROM_BAR, 0xFFFFFFFE)
    assert cfg_read(bus, 2, 0, ROM_BAR) == 0xFFFF0000


def test_pci_vga_maps_the_rom_only_while_decoded():
    vga, pci, bus, calls = vga_on_bus()
    cfg_write(bus, 2, 0, ROM_BAR, 0xFEBF0001)
    assert calls == []  # Memory Space still off
    cfg_write(bus, 2, 0, 0x04, 0x0003, size=2)
    assert calls == [0xFEBF0000]
    assert vga.rom_region.read(0, 2) == 0xAA55
    cfg_write(bus, 2, 0, ROM_BAR, 0xFEBE0001)  # moved
    assert calls == [0xFEBF0000, None, 0xFEBE0000]
    cfg_write(bus, 2, 0, ROM_BAR, 0xFEBE0000)  # disabled
    assert calls[-1] is None
    cfg_write(bus, 2, 0, ROM_BAR, 0xFEBE0001)
    pci.reset()
    vga.reset()
    assert calls[-2:] == [0xFEBE0000, None]


def test_dispi_id_handshake_caps_and_memory_size():
    from emu.devices.pcivga import DISPI_MAX_XRES

    vga, pci, bus, _ = vga_on_bus()

    def dispi(index, value=None):
        bus.write(0x1CE, 2, index)
        if value is None:
            return bus.read(0x1CF, 2)
        bus.write(0x1CF, 2, value)
        return None

    dispi(0, 0xB0C0)
    assert dispi(0) == 0xB0C0
    dispi(0, 0x1234)  # not a version: ignored
    assert dispi(0) == 0xB0C0
    dispi(1, 1024)
    assert dispi(1) == 1024
    dispi(4, 0x02)  # GETCAPS
    assert dispi(1) == DISPI_MAX_XRES and dispi(3) == 32
    dispi(4, 0)
    assert dispi(1) == 1024
    assert dispi(0xA) == 256  # 16 MiB in 64 KiB units
    assert bus.read(0x1D0, 2) == 256  # the old data port


def test_rom_bar_in_the_machine_physical_map(tmp_path):
    """The ROM appears at the BAR address (MMIO pages holding 55AAh) only while decoded, and the
    pages it covered get back what they were: open bus in the PCI hole, RAM below."""
    from emu.machine import Machine, MachineConfig
    from emu.mmu.physmap import PAGE_SHIFT, PM_KIND_MASK, PM_MMIO, PM_RAM, PM_UNMAPPED

    bios = tmp_path / "bios.bin"
    bios.write_bytes(b"\xf4" * 0x10000)
    (tmp_path / "vgabios-stdvga.bin").write_bytes(FAKE_ROM)
    m = Machine(MachineConfig(ram_mb=4, bios_file=str(bios)))
    pmap = m.core.phys.pmap

    def visible(addr):
        if pmap[addr >> PAGE_SHIFT] != PM_MMIO:
            return None
        return m.core.phys.find_mmio(addr).read(addr - m.core.phys.find_mmio(addr).base, 2)

    cfg_write(m.bus, 2, 0, 0x04, 0x0003, size=2)
    cfg_write(m.bus, 2, 0, ROM_BAR, 0xFEBF0000)
    assert visible(0xFEBF0000) is None and pmap[0xFEBF0] == PM_UNMAPPED
    cfg_write(m.bus, 2, 0, ROM_BAR, 0xFEBF0001)
    assert visible(0xFEBF0000) == 0xAA55
    assert all(pmap[0xFEBF0:0xFEC00] == PM_MMIO)
    cfg_write(m.bus, 2, 0, ROM_BAR, 0x00100001)  # over RAM, then off again
    assert pmap[0xFEBF0] == PM_UNMAPPED and visible(0x100000) == 0xAA55
    cfg_write(m.bus, 2, 0, 0x04, 0x0001, size=2)  # Memory Space off
    assert pmap[0x100] & PM_KIND_MASK == PM_RAM and int(pmap[0x100]) >> PAGE_SHIFT == 0x100
    cfg_write(m.bus, 2, 0, 0x04, 0x0003, size=2)
    m.reset()
    assert pmap[0x100] & PM_KIND_MASK == PM_RAM and m.core.phys.find_mmio(0x100000) is None


def test_no_pci_vga_with_the_builtin_bios_and_vga_rom_needs_bios(tmp_path):
    import pytest

    from emu.machine import Machine, MachineConfig, MachineError

    m = Machine(MachineConfig(ram_mb=4))
    assert m.pci.function(2, 0) is None and m.pci_vga is None
    rom = tmp_path / "rom.bin"
    rom.write_bytes(FAKE_ROM)
    with pytest.raises(MachineError, match="needs -bios"):
        Machine(MachineConfig(ram_mb=4, vga_rom=str(rom)))
    bios = tmp_path / "bios.bin"
    bios.write_bytes(b"\xf4" * 0x10000)
    rom.write_bytes(b"MZ" + bytes(100))
    with pytest.raises(MachineError, match="not an option ROM"):
        Machine(MachineConfig(ram_mb=4, bios_file=str(bios), vga_rom=str(rom)))
