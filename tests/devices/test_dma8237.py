"""8237A DMA controllers and page registers as the datasheet and the PC/AT wiring promise."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from emu.devices.bus import IoBus
from emu.devices.dma8237 import (
    MODE_AUTOINIT,
    MODE_DECREMENT,
    MODE_SINGLE,
    TYPE_READ,
    TYPE_VERIFY,
    TYPE_WRITE,
    DmaController,
)

MEM_SIZE = 1 << 20
PAGE_PORTS = {0: 0x87, 1: 0x83, 2: 0x81, 3: 0x82, 5: 0x8B, 6: 0x89, 7: 0x8A}


def machine():
    mem = bytearray(MEM_SIZE)

    def mem_read(addr, n):
        return bytes(mem[addr:addr + n])

    def mem_write(addr, data):
        mem[addr:addr + len(data)] = data

    bus = IoBus()
    dma = DmaController(mem_read, mem_write)
    dma.attach(bus)
    return bus, dma, mem


def program(bus, ch, addr, count, mode):
    """What a BIOS does: mask, clear flip-flop, mode, address, count, page, unmask."""
    if ch < 4:
        port = lambda reg: reg  # noqa: E731
        unit_addr, n = addr & 0xFFFF, count - 1
    else:
        port = lambda reg: 0xC0 + 2 * reg  # noqa: E731
        unit_addr, n = (addr >> 1) & 0xFFFF, count // 2 - 1
    c = ch & 3
    bus.write(port(10), 1, 0x04 | c)
    bus.write(port(12), 1, 0)
    bus.write(port(11), 1, mode | c)
    bus.write(port(2 * c), 1, unit_addr & 0xFF)
    bus.write(port(2 * c), 1, unit_addr >> 8)
    bus.write(port(2 * c + 1), 1, n & 0xFF)
    bus.write(port(2 * c + 1), 1, n >> 8)
    bus.write(PAGE_PORTS[ch], 1, addr >> 16)
    bus.write(port(10), 1, c)


def test_write_transfer_copies_to_memory_at_page_and_address():
    bus, dma, mem = machine()
    program(bus, 2, 0x12340, 512, MODE_SINGLE | TYPE_WRITE)
    assert dma.transfer_to_memory(2, bytes(range(256)) * 2) == 512
    assert mem[0x12340:0x12540] == bytes(range(256)) * 2
    assert dma.terminal_count(2)


def test_terminal_count_stops_the_transfer_masks_and_sets_status():
    bus, dma, mem = machine()
    program(bus, 1, 0x1000, 100, MODE_SINGLE | TYPE_WRITE)
    assert dma.transfer_to_memory(1, b"\xFF" * 300) == 100
    assert mem[0x1064] == 0
    assert bus.read(0x08, 1) & 0x02  # TC bit for channel 1
    assert bus.read(0x08, 1) & 0x02 == 0  # cleared by the read
    assert bus.read(0x0F, 1) & 0x02  # masked after TC without auto-init
    assert dma.transfer_to_memory(1, b"\x01") == 0


def test_partial_transfer_does_not_report_tc():
    bus, dma, _ = machine()
    program(bus, 2, 0, 1024, MODE_SINGLE | TYPE_WRITE)
    assert dma.transfer_to_memory(2, bytes(512)) == 512
    assert not dma.terminal_count(2)
    assert dma.remaining(2) == 512


def test_read_transfer_takes_memory():
    bus, dma, mem = machine()
    mem[0x20000:0x20010] = bytes(range(16))
    program(bus, 2, 0x20000, 16, MODE_SINGLE | TYPE_READ)
    assert dma.transfer_from_memory(2, 64) == bytes(range(16))


def test_the_dma_address_decrements_in_decrement_mode():
    bus, dma, mem = machine()
    program(bus, 3, 0x3000F, 4, MODE_SINGLE | TYPE_WRITE | MODE_DECREMENT)
    assert dma.transfer_to_memory(3, b"ABCD") == 4
    assert mem[0x3000C:0x30010] == b"DCBA"
    assert bus.read(0x06, 1) == 0x0B  # current address now 000Bh


def test_auto_init_reloads_address_and_count():
    bus, dma, mem = machine()
    program(bus, 2, 0x5000, 4, MODE_SINGLE | TYPE_WRITE | MODE_AUTOINIT)
    dma.transfer_to_memory(2, b"abcd")
    assert dma.terminal_count(2) and dma.ready(2)
    dma.transfer_to_memory(2, b"wxyz")
    assert mem[0x5000:0x5004] == b"wxyz"


def test_masked_channel_moves_nothing():
    bus, dma, mem = machine()
    program(bus, 2, 0x5000, 4, MODE_SINGLE | TYPE_WRITE)
    bus.write(0x0A, 1, 0x04 | 2)
    assert dma.transfer_to_memory(2, b"abcd") == 0 and mem[0x5000] == 0


def test_verify_consumes_the_count_without_writing_memory():
    bus, dma, mem = machine()
    program(bus, 2, 0x5000, 4, MODE_SINGLE | TYPE_VERIFY)
    assert dma.transfer_to_memory(2, b"abcd") == 4 and mem[0x5000:0x5004] == bytes(4)
    assert dma.terminal_count(2)


def test_address_wraps_within_the_64k_page():
    bus, dma, mem = machine()
    program(bus, 1, 0x1FFFE, 4, MODE_SINGLE | TYPE_WRITE)
    dma.transfer_to_memory(1, b"WXYZ")
    assert mem[0x1FFFE:0x20000] == b"WX" and mem[0x10000:0x10002] == b"YZ"


def test_16_bit_channels_count_words_and_address_words():
    bus, dma, mem = machine()
    program(bus, 5, 0x24000, 8, MODE_SINGLE | TYPE_WRITE)
    assert dma.transfer_to_memory(5, b"01234567abcd") == 8
    assert mem[0x24000:0x24008] == b"01234567" and dma.terminal_count(5)


def test_flip_flop_orders_low_then_high_byte_and_clear_resets_it():
    bus, _, _ = machine()
    bus.write(0x0C, 1, 0)
    bus.write(0x04, 1, 0x34)
    bus.write(0x04, 1, 0x12)
    bus.write(0x0C, 1, 0)
    assert bus.read(0x04, 1) == 0x34 and bus.read(0x04, 1) == 0x12


def test_master_clear_masks_all_channels_and_clear_mask_unmasks():
    bus, dma, _ = machine()
    bus.write(0x0F, 1, 0)
    bus.write(0x0D, 1, 0)
    assert bus.read(0x0F, 1) & 0x0F == 0x0F
    bus.write(0x0E, 1, 0)
    assert bus.read(0x0F, 1) & 0x0F == 0
    bus.write(0xDA, 1, 0)  # DMA2 master clear at D A h
    assert not dma.ready(6)


def test_page_registers_and_scratch_ports_read_back():
    bus, _, _ = machine()
    for port in range(0x81, 0x90):
        bus.write(port, 1, port ^ 0x5A)
    assert all(bus.read(port, 1) == port ^ 0x5A for port in range(0x81, 0x90))
    assert bus.read(0x80, 1) == 0xFF  # left for the POST code port


def test_state_round_trip():
    bus, dma, _ = machine()
    program(bus, 2, 0x12345, 77, MODE_SINGLE | TYPE_WRITE)
    bus2, dma2, mem2 = machine()
    dma2.load_state(dma.state())
    assert dma2.transfer_to_memory(2, bytes(range(77))) == 77 and mem2[0x12345] == 0


@given(st.integers(0, 3), st.integers(0, 0xFFFFF), st.integers(1, 600), st.integers(1, 600))
def test_bytes_moved_are_min_of_data_and_count(ch, addr, count, n):
    bus, dma, mem = machine()
    addr = min(addr, MEM_SIZE - 0x10000)
    program(bus, ch, addr, count, MODE_SINGLE | TYPE_WRITE)
    moved = dma.transfer_to_memory(ch, bytes([7]) * n)
    assert moved == min(count, n)
    assert dma.terminal_count(ch) == (n >= count)
