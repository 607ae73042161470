"""IDE/ATA controller behaviour as ATA/ATAPI-6 promises it, through the I/O bus."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emu.clock import VirtualClock
from emu.devices.ata import (
    CTL_HOB,
    CTL_NIEN,
    CTL_SRST,
    DEV_DEV,
    DEV_LBA,
    ER_ABRT,
    ER_IDNF,
    MAX_MULTIPLE,
    PRIMARY_BASE,
    PRIMARY_CTRL,
    SECONDARY_BASE,
    ST_BSY,
    ST_DRDY,
    ST_DRQ,
    ST_DSC,
    ST_ERR,
    AtaController,
    AtaDrive,
)
from emu.devices.bus import IoBus, IrqLine
from emu.devices.diskimage import SECTOR_SIZE, DiskImage

B = PRIMARY_BASE
DATA, ERR, FEAT, COUNT, LOW, MID, HIGH, DEVICE, STATUS, CMD = (
    B, B + 1, B + 1, B + 2, B + 3, B + 4, B + 5, B + 6, B + 7, B + 7)
SECTORS = 2048


class Irqs:
    def __init__(self):
        self.level = {14: 0, 15: 0}
        self.edges = {14: 0, 15: 0}

    def sink(self, line, level):
        if level and not self.level[line]:
            self.edges[line] += 1
        self.level[line] = level


def pattern(sectors):
    return b"".join(lba.to_bytes(4, "little") * (SECTOR_SIZE // 4) for lba in range(sectors))


def machine(master=True, slave=False, image=None, readonly=False, sectors=SECTORS):
    clock = VirtualClock(icount=True)
    bus = IoBus()
    irqs = Irqs()
    img = image or DiskImage.from_bytes(pattern(sectors), readonly=readonly)
    drives = [AtaDrive(img) if master else None,
              AtaDrive(DiskImage.from_bytes(pattern(64)), serial="SLAVE") if slave else None]
    ctl = AtaController(clock, IrqLine(irqs.sink, 14), IrqLine(irqs.sink, 15), drives)
    ctl.attach(bus)
    return bus, irqs, ctl


def lba28(bus, lba, count, dev=0):
    bus.write(COUNT, 1, count & 0xFF)
    bus.write(LOW, 1, lba & 0xFF)
    bus.write(MID, 1, lba >> 8 & 0xFF)
    bus.write(HIGH, 1, lba >> 16 & 0xFF)
    bus.write(DEVICE, 1, 0xE0 | dev | (lba >> 24 & 0xF))


def lba48(bus, lba, count):
    for shift in (8, 0):
        bus.write(COUNT, 1, count >> shift & 0xFF)
        bus.write(LOW, 1, lba >> (shift * 3) & 0xFF)
        bus.write(MID, 1, lba >> (shift * 3 + 8) & 0xFF)
        bus.write(HIGH, 1, lba >> (shift * 3 + 16) & 0xFF)
    bus.write(DEVICE, 1, DEV_LBA)


def read_block(bus, nbytes=SECTOR_SIZE, size=2):
    return b"".join(bus.read(DATA, size).to_bytes(size, "little") for _ in range(nbytes // size))


def write_block(bus, data, size=2):
    for i in range(0, len(data), size):
        bus.write(DATA, size, int.from_bytes(data[i:i + size], "little"))


def identify(bus):
    bus.write(CMD, 1, 0xEC)
    return read_block(bus)


def word(block, i):
    return int.from_bytes(block[2 * i:2 * i + 2], "little")


def ata_string(block, first, last):
    raw = b"".join(bytes((word(block, i) >> 8, word(block, i) & 0xFF)) for i in range(first, last + 1))
    return raw.decode().strip()


# -- IDENTIFY --------------------------------------------------------------------------------------

def test_identify_reports_lba28_capacity_in_words_60_61_and_lba48_in_100_103():
    bus, irqs, _ = machine()
    bus.write(DEVICE, 1, 0xA0)
    block = identify(bus)
    assert len(block) == 512
    assert word(block, 60) | word(block, 61) << 16 == SECTORS
    assert sum(word(block, 100 + i) << (16 * i) for i in range(4)) == SECTORS
    assert word(block, 83) & 0x0400 and word(block, 86) & 0x0400  # 48-bit feature set


def test_identify_names_pyemu_with_geometry_and_valid_checksum():
    bus, _, _ = machine()
    block = identify(bus)
    assert "pyemu" in ata_string(block, 27, 46)
    assert ata_string(block, 10, 19) and ata_string(block, 23, 26)
    assert (word(block, 1), word(block, 3), word(block, 6)) == (2, 16, 63)
    assert word(block, 49) & 0x0200  # LBA supported
    assert word(block, 47) & 0xFF == MAX_MULTIPLE
    assert word(block, 255) & 0xFF == 0xA5 and sum(block) % 256 == 0


def test_identify_raises_irq_and_reading_status_clears_it():
    bus, irqs, _ = machine()
    bus.write(CMD, 1, 0xEC)
    assert irqs.level[14] == 1
    assert bus.read(PRIMARY_CTRL, 1) & ST_DRQ  # alternate status does not clear INTRQ
    assert irqs.level[14] == 1
    assert bus.read(STATUS, 1) == ST_DRDY | ST_DSC | ST_DRQ
    assert irqs.level[14] == 0
    read_block(bus)
    assert bus.read(STATUS, 1) == ST_DRDY | ST_DSC


def test_identify_packet_device_aborts_on_a_hard_disk():
    bus, irqs, _ = machine()
    bus.write(CMD, 1, 0xA1)
    assert bus.read(STATUS, 1) & ST_ERR
    assert bus.read(ERR, 1) == ER_ABRT


# -- reads and writes ------------------------------------------------------------------------------

def test_read_sectors_lba28_returns_the_image_data_with_irq_per_sector():
    bus, irqs, _ = machine()
    lba28(bus, 100, 3)
    bus.write(CMD, 1, 0x20)
    data = b""
    for _ in range(3):
        assert irqs.level[14]
        assert bus.read(STATUS, 1) & ST_DRQ
        data += read_block(bus)
    assert data == pattern(SECTORS)[100 * 512:103 * 512]
    assert bus.read(STATUS, 1) == ST_DRDY | ST_DSC
    assert irqs.edges[14] == 3


def test_read_with_32_bit_data_port_accesses():
    bus, _, _ = machine()
    lba28(bus, 7, 1)
    bus.write(CMD, 1, 0x21)
    assert read_block(bus, size=4) == pattern(8)[7 * 512:]


def test_chs_read_uses_the_default_translation():
    bus, _, _ = machine()
    # C=1 H=2 S=5 on 16 heads x 63 sectors: LBA = (1*16+2)*63+4 = 1138
    bus.write(COUNT, 1, 1)
    bus.write(LOW, 1, 5)
    bus.write(MID, 1, 1)
    bus.write(HIGH, 1, 0)
    bus.write(DEVICE, 1, 0xA2)
    bus.write(CMD, 1, 0x20)
    assert read_block(bus)[:4] == (1138).to_bytes(4, "little")


def test_chs_sector_zero_is_idnf():
    bus, _, _ = machine()
    bus.write(COUNT, 1, 1)
    bus.write(LOW, 1, 0)
    bus.write(DEVICE, 1, 0xA0)
    bus.write(CMD, 1, 0x20)
    assert bus.read(STATUS, 1) & ST_ERR and bus.read(ERR, 1) == ER_IDNF


def test_write_sectors_reaches_the_file_before_the_command_completes(tmp_path):
    path = tmp_path / "hd.img"
    path.write_bytes(bytes(SECTORS * SECTOR_SIZE))
    bus, irqs, _ = machine(image=DiskImage.open(str(path)))
    lba28(bus, 9, 2)
    bus.write(CMD, 1, 0x30)
    assert bus.read(PRIMARY_CTRL, 1) & ST_DRQ and irqs.edges[14] == 0  # no IRQ before block 1
    write_block(bus, b"\x11" * 512)
    with open(path, "rb") as f:  # the first sector is in the file while the command is running
        f.seek(9 * 512)
        assert f.read(512) == b"\x11" * 512
    assert irqs.edges[14] == 1
    bus.read(STATUS, 1)  # the guest's interrupt handler acknowledges
    write_block(bus, b"\x22" * 512)
    assert irqs.edges[14] == 2  # completion interrupt
    assert bus.read(STATUS, 1) == ST_DRDY | ST_DSC
    assert path.read_bytes()[10 * 512:11 * 512] == b"\x22" * 512


def test_a_read_only_image_aborts_writes_with_abrt():
    bus, irqs, ctl = machine(readonly=True)
    lba28(bus, 0, 1)
    bus.write(CMD, 1, 0x30)
    assert bus.read(STATUS, 1) == ST_DRDY | ST_DSC | ST_ERR
    assert bus.read(ERR, 1) == ER_ABRT
    assert irqs.edges[14] == 1
    assert ctl.channels[0].drives[0].image.read_sectors(0, 1) == pattern(1)


def test_read_multiple_transfers_blocks_of_the_multiple_count():
    bus, irqs, _ = machine()
    bus.write(COUNT, 1, 4)
    bus.write(CMD, 1, 0xC6)  # SET MULTIPLE MODE 4
    assert not bus.read(STATUS, 1) & ST_ERR
    lba28(bus, 20, 10)
    bus.write(CMD, 1, 0xC4)
    data = b""
    for n in (4, 4, 2):
        bus.read(STATUS, 1)
        data += read_block(bus, n * 512)
    assert data == pattern(SECTORS)[20 * 512:30 * 512]
    assert irqs.edges[14] == 1 + 3
    assert bus.read(STATUS, 1) == ST_DRDY | ST_DSC


def test_read_multiple_without_set_multiple_aborts_and_bad_count_is_refused():
    bus, _, _ = machine()
    lba28(bus, 0, 1)
    bus.write(CMD, 1, 0xC4)
    assert bus.read(ERR, 1) == ER_ABRT
    bus.write(COUNT, 1, 3)
    bus.write(CMD, 1, 0xC6)
    assert bus.read(STATUS, 1) & ST_ERR


def test_write_multiple_writes_all_sectors():
    bus, _, ctl = machine()
    bus.write(COUNT, 1, 2)
    bus.write(CMD, 1, 0xC6)
    lba28(bus, 30, 3)
    bus.write(CMD, 1, 0xC5)
    write_block(bus, b"\xA1" * 1024, size=4)
    write_block(bus, b"\xA2" * 512)
    assert bus.read(STATUS, 1) == ST_DRDY | ST_DSC
    img = ctl.channels[0].drives[0].image
    assert img.read_sectors(30, 3) == b"\xA1" * 1024 + b"\xA2" * 512


def test_lba48_read_and_write_ext_use_the_high_order_bytes():
    big = 0x1_0000_0010  # beyond 28 bits: needs a sparse file
    bus, _, ctl = machine(sectors=32)
    img = ctl.channels[0].drives[0].image
    img.sectors = big + 8  # pretend the disk is large; touch only sectors in range of the buffer
    lba48(bus, 5, 2)
    bus.write(CMD, 1, 0x24)
    assert read_block(bus, 1024) == pattern(7)[5 * 512:]
    # HOB readback of the address registers after the command
    bus.write(PRIMARY_CTRL, 1, CTL_HOB)
    assert bus.read(COUNT, 1) == 0 and bus.read(LOW, 1) == 0
    bus.write(PRIMARY_CTRL, 1, 0)
    lba48(bus, big, 1)
    bus.write(CMD, 1, 0x34)
    assert bus.read(STATUS, 1) & ST_DRQ  # accepted: the range check used all 48 bits
    img.sectors = 32


def test_lba48_count_zero_means_65536_and_beyond_end_is_idnf():
    bus, _, _ = machine()
    lba48(bus, 0, 0)
    bus.write(CMD, 1, 0x24)
    assert bus.read(ERR, 1) == ER_IDNF and bus.read(STATUS, 1) & ST_ERR


def test_read_verify_completes_without_data():
    bus, irqs, _ = machine()
    lba28(bus, 0, 8)
    bus.write(CMD, 1, 0x40)
    assert bus.read(STATUS, 1) == ST_DRDY | ST_DSC and irqs.edges[14] == 1


@pytest.mark.parametrize("features, count, ok", [(0x03, 0x0C, True), (0x03, 0x01, True),
                                                  (0x03, 0x22, False), (0x02, 0, True),
                                                  (0x99, 0, False)])
def test_set_features(features, count, ok):
    bus, _, _ = machine()
    bus.write(FEAT, 1, features)
    bus.write(COUNT, 1, count)
    bus.write(CMD, 1, 0xEF)
    assert bool(bus.read(STATUS, 1) & ST_ERR) != ok


def test_initialize_device_parameters_changes_the_chs_translation():
    bus, _, _ = machine()
    bus.write(COUNT, 1, 32)
    bus.write(DEVICE, 1, 0xA0 | 7)  # 8 heads, 32 sectors
    bus.write(CMD, 1, 0x91)
    assert not bus.read(STATUS, 1) & ST_ERR
    block = identify(bus)
    assert (word(block, 54), word(block, 55), word(block, 56)) == (SECTORS // 256, 8, 32)
    # C=0 H=1 S=1 is now LBA 32
    bus.write(COUNT, 1, 1)
    bus.write(LOW, 1, 1)
    bus.write(MID, 1, 0)
    bus.write(HIGH, 1, 0)
    bus.write(DEVICE, 1, 0xA1)
    bus.write(CMD, 1, 0x20)
    assert read_block(bus)[:4] == (32).to_bytes(4, "little")


def test_seek_recalibrate_flush_complete_with_interrupt():
    bus, irqs, _ = machine()
    for cmd in (0x10, 0x70, 0xE7, 0xEA):
        lba28(bus, 5, 1)
        bus.write(CMD, 1, cmd)
        assert bus.read(STATUS, 1) == ST_DRDY | ST_DSC
    assert irqs.edges[14] == 4


def test_seek_beyond_the_end_is_idnf():
    bus, _, _ = machine()
    lba28(bus, SECTORS + 5, 1)
    bus.write(CMD, 1, 0x70)
    assert bus.read(ERR, 1) == ER_IDNF


# -- resets, diagnostics, absent devices ---------------------------------------------------------

def test_srst_leaves_the_ata_signature_in_the_sector_count_and_lba_registers():
    bus, irqs, _ = machine()
    lba28(bus, 0x123456, 9)
    bus.write(PRIMARY_CTRL, 1, CTL_SRST)
    assert bus.read(PRIMARY_CTRL, 1) & ST_BSY
    bus.write(PRIMARY_CTRL, 1, 0)
    assert [bus.read(p, 1) for p in (COUNT, LOW, MID, HIGH)] == [1, 1, 0, 0]
    assert bus.read(ERR, 1) == 0x01
    assert bus.read(STATUS, 1) == ST_DRDY | ST_DSC
    assert irqs.edges[14] == 0


def test_execute_device_diagnostic_sets_signature_and_interrupts():
    bus, irqs, _ = machine()
    lba28(bus, 0x55, 3)
    bus.write(CMD, 1, 0x90)
    assert irqs.level[14]
    assert [bus.read(p, 1) for p in (ERR, COUNT, LOW, MID, HIGH)] == [1, 1, 1, 0, 0]


def test_srst_cancels_multiple_mode_and_a_transfer():
    bus, _, _ = machine()
    bus.write(COUNT, 1, 2)
    bus.write(CMD, 1, 0xC6)
    lba28(bus, 0, 1)
    bus.write(CMD, 1, 0x20)
    bus.write(PRIMARY_CTRL, 1, CTL_SRST)
    bus.write(PRIMARY_CTRL, 1, 0)
    assert not bus.read(STATUS, 1) & ST_DRQ
    bus.write(CMD, 1, 0xC4)
    assert bus.read(ERR, 1) == ER_ABRT


def test_nien_masks_the_irq_line():
    bus, irqs, _ = machine()
    bus.write(PRIMARY_CTRL, 1, CTL_NIEN)
    bus.write(CMD, 1, 0xEC)
    assert irqs.level[14] == 0
    bus.write(PRIMARY_CTRL, 1, 0)
    assert irqs.level[14] == 1


def test_absent_slave_reads_status_zero_and_ignores_commands():
    bus, irqs, _ = machine()
    bus.write(DEVICE, 1, 0xA0 | DEV_DEV)
    assert bus.read(STATUS, 1) == 0 and bus.read(PRIMARY_CTRL, 1) == 0
    bus.write(CMD, 1, 0xEC)
    assert bus.read(STATUS, 1) == 0 and irqs.edges[14] == 0
    bus.write(COUNT, 1, 0x55)
    assert bus.read(COUNT, 1) == 0x55


def test_empty_channel_floats_at_ff():
    bus, _, _ = machine()
    assert bus.read(SECONDARY_BASE + 7, 1) == 0xFF
    assert bus.read(SECONDARY_BASE + 2, 1) == 0xFF


def test_slave_answers_its_own_identify_on_irq14():
    bus, irqs, _ = machine(slave=True)
    bus.write(DEVICE, 1, 0xA0 | DEV_DEV)
    block = identify(bus)
    assert ata_string(block, 10, 19) == "SLAVE"
    assert irqs.edges[14] == 1


def test_state_round_trip_mid_transfer():
    bus, _, ctl = machine()
    lba28(bus, 40, 2)
    bus.write(CMD, 1, 0x20)
    first = read_block(bus, 256)
    saved = ctl.state()
    bus2, _, ctl2 = machine()
    ctl2.load_state(saved)
    rest = read_block(bus2, 256 + 512)
    assert first + rest == pattern(SECTORS)[40 * 512:42 * 512]


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 255), st.integers(1, 4), st.integers(0, 255))
def test_any_lba_reads_back_what_was_written(lba, count, fill):
    bus, _, _ = machine(sectors=260)
    data = bytes((fill + i) & 0xFF for i in range(count * 512))
    lba28(bus, lba, count)
    bus.write(CMD, 1, 0x30)
    for i in range(count):
        write_block(bus, data[i * 512:(i + 1) * 512])
    lba28(bus, lba, count)
    bus.write(CMD, 1, 0x20)
    assert read_block(bus, count * 512) == data


def test_file_image_round_trip_through_the_controller(tmp_path):
    path = tmp_path / "rt.img"
    path.write_bytes(os.urandom(64 * 512))
    bus, _, _ = machine(image=DiskImage.open(str(path), snapshot=True))
    before = path.read_bytes()
    lba28(bus, 3, 1)
    bus.write(CMD, 1, 0x30)
    write_block(bus, b"\x77" * 512)
    lba28(bus, 3, 1)
    bus.write(CMD, 1, 0x20)
    assert read_block(bus) == b"\x77" * 512
    assert path.read_bytes() == before  # -snapshot


# -- ATAPI CD-ROM (optional feature) ---------------------------------------------------------------

def cdrom_machine(blocks=16, media=True):
    from emu.devices.ata import AtapiDrive

    clock = VirtualClock(icount=True)
    bus = IoBus()
    irqs = Irqs()
    iso = b"".join(bytes([b]) * 2048 for b in range(blocks))
    cd = AtapiDrive(DiskImage.from_bytes(iso, readonly=True) if media else None)
    ctl = AtaController(clock, IrqLine(irqs.sink, 14), IrqLine(irqs.sink, 15),
                        [AtaDrive(DiskImage.from_bytes(pattern(64))), None, cd, None])
    ctl.attach(bus)
    return bus, irqs, ctl


S = SECONDARY_BASE


def packet(bus, cdb, limit=0xFFFE):
    bus.write(S + 1, 1, 0)
    bus.write(S + 4, 1, limit & 0xFF)
    bus.write(S + 5, 1, limit >> 8)
    bus.write(S + 7, 1, 0xA0)
    assert bus.read(S + 7, 1) & ST_DRQ and bus.read(S + 2, 1) == 0x01  # CoD, to the device
    cdb = cdb.ljust(12, b"\0")
    for i in range(0, 12, 2):
        bus.write(S, 2, int.from_bytes(cdb[i:i + 2], "little"))


def packet_data(bus):
    out = b""
    while bus.read(S + 7, 1) & ST_DRQ:
        assert bus.read(S + 2, 1) == 0x02  # IO: to the host
        n = bus.read(S + 4, 1) | bus.read(S + 5, 1) << 8
        out += b"".join(bus.read(S, 2).to_bytes(2, "little") for _ in range(n // 2))
    return out


def test_atapi_signature_after_srst_and_identify_device_aborts():
    bus, _, _ = cdrom_machine()
    bus.write(0x376, 1, CTL_SRST)
    bus.write(0x376, 1, 0)
    assert (bus.read(S + 4, 1), bus.read(S + 5, 1)) == (0x14, 0xEB)
    bus.write(S + 7, 1, 0xEC)
    assert bus.read(S + 1, 1) & ER_ABRT
    assert (bus.read(S + 4, 1), bus.read(S + 5, 1)) == (0x14, 0xEB)


def test_identify_packet_device_describes_a_cdrom():
    bus, _, _ = cdrom_machine()
    bus.write(S + 7, 1, 0xA1)
    block = b"".join(bus.read(S, 2).to_bytes(2, "little") for _ in range(256))
    assert word(block, 0) >> 14 == 2 and word(block, 0) >> 8 & 0x1F == 5
    assert "pyemu" in ata_string(block, 27, 46)


def test_atapi_read_capacity_and_read10():
    bus, irqs, _ = cdrom_machine(blocks=16)
    packet(bus, bytes([0x25]))
    assert packet_data(bus) == (15).to_bytes(4, "big") + (2048).to_bytes(4, "big")
    assert bus.read(S + 2, 1) == 0x03 and not bus.read(S + 7, 1) & ST_ERR
    before = irqs.edges[15]
    packet(bus, bytes([0x28, 0, 0, 0, 0, 3, 0, 0, 2]), limit=2048)
    assert packet_data(bus) == b"\x03" * 2048 + b"\x04" * 2048
    assert irqs.edges[15] - before == 3  # one per 2048-byte chunk, one at completion


def test_atapi_inquiry_and_request_sense_after_an_error():
    bus, _, _ = cdrom_machine(media=False)
    packet(bus, bytes([0x12, 0, 0, 0, 36]))
    inq = packet_data(bus)
    assert inq[0] == 5 and inq[1] & 0x80 and b"pyemu" in inq
    packet(bus, bytes([0x00]))  # TEST UNIT READY without a disc
    assert bus.read(S + 7, 1) & ST_ERR and bus.read(S + 1, 1) >> 4 == 2
    packet(bus, bytes([0x03, 0, 0, 0, 18]))
    sense = packet_data(bus)
    assert sense[2] == 2 and sense[12] == 0x3A
