"""82077AA floppy controller as its datasheet promises, with the 8237A on channel 2 and IRQ6."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emu.clock import VirtualClock
from emu.devices.bus import IoBus, IrqLine
from emu.devices.diskimage import SECTOR_SIZE, DiskImage
from emu.devices.dma8237 import MODE_SINGLE, TYPE_READ, TYPE_WRITE, DmaController
from emu.devices.fdc82077 import (
    DIR_DSKCHG,
    MSR_CB,
    MSR_DIO,
    MSR_NDMA,
    MSR_RQM,
    ST0_IC_ABNORMAL,
    ST0_IC_INVALID,
    ST0_IC_POLLING,
    ST0_SE,
    ST1_MA,
    ST1_ND,
    ST1_NW,
    ST3_T0,
    ST3_WP,
    VERSION_82077,
    Fdc82077,
    FloppyDrive,
)

DOR, MSR, DSR, FIFO, DIR, CCR = 0x3F2, 0x3F4, 0x3F4, 0x3F5, 0x3F7, 0x3F7
SIZE_144 = 1440 * 1024
SIZE_720 = 720 * 1024
READ, WRITE, MT_MFM = 0x06, 0x05, 0xC0
MFM = 0x40


def pattern(size):
    """Each sector holds its LBA (2 bytes, repeated)."""
    return b"".join((lba & 0xFFFF).to_bytes(2, "little") * 256 for lba in range(size // SECTOR_SIZE))


class Machine:
    def __init__(self, size=SIZE_144, readonly=False, second=None):
        self.clock = VirtualClock(icount=True)
        self.bus = IoBus()
        self.mem = bytearray(1 << 20)
        self.irq_level = 0
        self.irq_edges = 0
        self.dma = DmaController(self.mem_read, self.mem_write)
        self.dma.attach(self.bus)
        drives = [FloppyDrive(DiskImage.from_bytes(pattern(size), readonly=readonly))]
        if second is not None:
            drives.append(FloppyDrive(second))
        self.fdc = Fdc82077(self.clock, IrqLine(self.sink, 6), self.dma, drives)
        self.fdc.attach(self.bus)

    def sink(self, line, level):
        if level and not self.irq_level:
            self.irq_edges += 1
        self.irq_level = level

    def mem_read(self, addr, n):
        return bytes(self.mem[addr:addr + n])

    def mem_write(self, addr, data):
        self.mem[addr:addr + len(data)] = data

    def out(self, port, value):
        self.bus.write(port, 1, value)

    def inp(self, port):
        return self.bus.read(port, 1)

    def command(self, *bytes_):
        for b in bytes_:
            assert self.inp(MSR) & (MSR_RQM | MSR_DIO) == MSR_RQM
            self.out(FIFO, b)

    def results(self):
        out = []
        while self.inp(MSR) & (MSR_RQM | MSR_DIO) == MSR_RQM | MSR_DIO and \
                not self.inp(MSR) & MSR_NDMA:
            out.append(self.inp(FIFO))
        return out

    def setup_dma(self, addr, count, mode):
        b = self.bus
        b.write(0x0A, 1, 0x06)
        b.write(0x0C, 1, 0)
        b.write(0x0B, 1, mode | 2)
        b.write(0x04, 1, addr & 0xFF)
        b.write(0x04, 1, addr >> 8 & 0xFF)
        b.write(0x05, 1, (count - 1) & 0xFF)
        b.write(0x05, 1, (count - 1) >> 8)
        b.write(0x81, 1, addr >> 16)
        b.write(0x0A, 1, 0x02)


def sense(m):
    m.command(0x08)
    return m.results()


# -- identification and configuration -----------------------------------------------------------

def test_version_is_90h():
    m = Machine()
    m.command(0x10)
    assert m.results() == [VERSION_82077]


def test_idle_msr_is_rqm_and_invalid_command_returns_st0_80():
    m = Machine()
    assert m.inp(MSR) == MSR_RQM
    m.command(0x1F)
    assert m.results() == [ST0_IC_INVALID]
    assert m.inp(MSR) == MSR_RQM


def test_msr_shows_command_busy_while_collecting_bytes():
    m = Machine()
    m.out(FIFO, 0x03)
    assert m.inp(MSR) == MSR_RQM | MSR_CB
    m.out(FIFO, 0xAF)
    m.out(FIFO, 0x02)
    assert m.inp(MSR) == MSR_RQM


def test_configure_lock_and_dumpreg():
    m = Machine()
    m.command(0x03, 0xAF, 0x02)  # SPECIFY
    m.command(0x13, 0x00, 0x57, 0x05)  # CONFIGURE: EIS, FIFO on, polling off, thr 7; PRETRK 5
    m.command(0x94)
    assert m.results() == [0x10]
    m.command(0x0E)
    regs = m.results()
    assert len(regs) == 10
    assert regs[4:6] == [0xAF, 0x02] and regs[7] & 0x80 and regs[8] == 0x57 and regs[9] == 5
    # a software reset keeps LOCKed CONFIGURE parameters
    m.out(DSR, 0x80)
    m.command(0x0E)
    assert m.results()[8:] == [0x57, 5]
    m.command(0x14)
    assert m.results() == [0]


def test_perpendicular_mode_is_accepted_without_result():
    m = Machine()
    m.command(0x12, 0x00)
    assert m.inp(MSR) == MSR_RQM


# -- reset -----------------------------------------------------------------------------------------

def test_dor_reset_raises_irq6_and_gives_four_sense_interrupt_results():
    m = Machine()
    m.out(DOR, 0x00)
    assert m.inp(MSR) == 0  # held in reset
    m.out(DOR, 0x0C)
    assert m.irq_level == 1
    results = [sense(m) for _ in range(4)]
    assert results == [[ST0_IC_POLLING | ds, 0] for ds in range(4)]
    assert m.irq_level == 0
    assert sense(m) == [ST0_IC_INVALID]


def test_dma_gate_off_blocks_the_irq_line():
    m = Machine()
    m.out(DOR, 0x00)
    m.out(DOR, 0x04)  # out of reset, DMA/IRQ gate off
    assert m.irq_level == 0
    m.out(DOR, 0x0C)
    assert m.irq_level == 1


# -- seeks ------------------------------------------------------------------------------------------

def test_recalibrate_and_seek_interrupt_and_report_pcn():
    m = Machine()
    m.command(0x0F, 0x04, 40)  # SEEK head 1 drive 0 to 40
    assert m.irq_level == 1
    assert sense(m) == [ST0_SE | 0x04, 40]
    m.command(0x07, 0x00)
    assert sense(m) == [ST0_SE, 0]


def test_relative_seek_moves_from_the_present_cylinder():
    m = Machine()
    m.command(0x0F, 0x00, 10)
    sense(m)
    m.command(0xCF, 0x00, 5)  # relative, outward? bit 6 set: towards higher cylinders
    assert sense(m)[1] == 15


def test_disk_change_is_set_at_power_up_and_cleared_by_a_seek():
    m = Machine()
    assert m.inp(DIR) & DIR_DSKCHG
    m.command(0x0F, 0x00, 1)
    sense(m)
    assert not m.inp(DIR) & DIR_DSKCHG
    m.fdc.drives[0].eject()
    assert m.inp(DIR) & DIR_DSKCHG


def test_sense_drive_status_reports_track0_and_write_protect():
    m = Machine(readonly=True)
    m.command(0x04, 0x00)
    st3 = m.results()[0]
    assert st3 & ST3_T0 and st3 & ST3_WP
    m2 = Machine()
    m2.command(0x04, 0x00)
    assert not m2.results()[0] & ST3_WP


# -- data transfers ---------------------------------------------------------------------------------

def test_read_data_over_dma_channel_2_copies_the_sector_to_memory_and_raises_irq6():
    m = Machine()
    m.setup_dma(0x8000, 512, MODE_SINGLE | TYPE_WRITE)
    m.command(MFM | READ, 0x00, 1, 0, 3, 2, 3, 0x1B, 0xFF)  # C=1 H=0 R=3, EOT=3
    assert m.irq_level == 1
    res = m.results()
    assert res[:3] == [0, 0, 0]
    assert res[3:] == [2, 0, 1, 2]  # ended at EOT without MT: C+1, R=1
    lba = (1 * 2 + 0) * 18 + 2
    assert m.mem[0x8000:0x8200] == pattern(SIZE_144)[lba * 512:(lba + 1) * 512]
    assert m.irq_level == 0


def test_read_data_stops_at_dma_terminal_count_and_reports_next_sector():
    m = Machine()
    m.setup_dma(0x10000, 3 * 512, MODE_SINGLE | TYPE_WRITE)
    m.command(MFM | READ, 0x00, 0, 0, 1, 2, 18, 0x1B, 0xFF)
    res = m.results()
    assert res == [0, 0, 0, 0, 0, 4, 2]
    assert m.mem[0x10000:0x10600] == pattern(SIZE_144)[:3 * 512]


def test_multi_track_read_continues_on_head_1():
    m = Machine()
    m.setup_dma(0x20000, 2 * 512, MODE_SINGLE | TYPE_WRITE)
    m.command(MT_MFM | READ, 0x00, 0, 0, 18, 2, 18, 0x1B, 0xFF)
    res = m.results()
    assert res[0] & 0xC0 == 0
    assert res[3:] == [0, 1, 2, 2]  # TC after head 1 sector 1: next is H=1 R=2
    assert res[0] & 0x04  # ST0 head bit follows the side now under the head
    p = pattern(SIZE_144)
    assert m.mem[0x20000:0x20400] == p[17 * 512:19 * 512]


def test_write_data_over_dma_writes_the_image():
    m = Machine()
    m.mem[0x9000:0x9200] = b"\x5A" * 512
    m.setup_dma(0x9000, 512, MODE_SINGLE | TYPE_READ)
    m.command(MFM | WRITE, 0x04, 5, 1, 7, 2, 7, 0x1B, 0xFF)
    res = m.results()
    assert res[:3] == [0x04, 0, 0]
    lba = (5 * 2 + 1) * 18 + 6
    assert m.fdc.drives[0].image.read_sectors(lba, 1) == b"\x5A" * 512


def test_write_protected_disk_reports_nw():
    m = Machine(readonly=True)
    m.setup_dma(0x9000, 512, MODE_SINGLE | TYPE_READ)
    m.command(MFM | WRITE, 0x00, 0, 0, 1, 2, 1, 0x1B, 0xFF)
    res = m.results()
    assert res[0] & 0xC0 == ST0_IC_ABNORMAL and res[1] == ST1_NW
    assert m.fdc.drives[0].image.read_sectors(0, 1) == pattern(SIZE_144)[:512]


def test_sector_beyond_the_track_is_no_data():
    m = Machine()
    m.setup_dma(0x9000, 512, MODE_SINGLE | TYPE_WRITE)
    m.command(MFM | READ, 0x00, 0, 0, 19, 2, 19, 0x1B, 0xFF)
    res = m.results()
    assert res[0] & 0xC0 == ST0_IC_ABNORMAL and res[1] == ST1_ND


def test_media_must_match_the_data_rate():
    m = Machine(size=SIZE_720)
    m.command(MFM | 0x0A, 0x00)  # READ ID at the default 500 kb/s
    assert m.results()[1] == ST1_MA
    m.out(CCR, 0x02)  # 250 kb/s
    m.command(MFM | 0x0A, 0x00)
    res = m.results()
    assert res[:3] == [0, 0, 0] and res[6] == 2


def test_read_without_media_is_missing_address_mark():
    m = Machine()
    m.fdc.drives[0].eject()
    m.setup_dma(0x9000, 512, MODE_SINGLE | TYPE_WRITE)
    m.command(MFM | READ, 0x00, 0, 0, 1, 2, 1, 0x1B, 0xFF)
    res = m.results()
    assert res[0] & 0xC0 == ST0_IC_ABNORMAL and res[1] == ST1_MA


def test_second_drive_reads_its_own_medium():
    second = DiskImage.from_bytes(b"\xEE" * SIZE_144)
    m = Machine(second=second)
    m.setup_dma(0x9000, 512, MODE_SINGLE | TYPE_WRITE)
    m.command(MFM | READ, 0x01, 0, 0, 1, 2, 1, 0x1B, 0xFF)
    assert m.results()[0] == 0x01
    assert m.mem[0x9000:0x9200] == b"\xEE" * 512


def test_non_dma_read_goes_through_the_fifo():
    m = Machine()
    m.command(0x03, 0xAF, 0x03)  # SPECIFY with ND = 1
    m.command(MFM | READ, 0x00, 0, 0, 2, 2, 2, 0x1B, 0xFF)
    assert m.inp(MSR) == MSR_RQM | MSR_DIO | MSR_NDMA | MSR_CB
    assert m.irq_level == 1
    data = bytes(m.inp(FIFO) for _ in range(512))
    assert data == pattern(SIZE_144)[512:1024]
    assert m.results()[3:] == [1, 0, 1, 2]


def test_non_dma_write_goes_through_the_fifo():
    m = Machine()
    m.command(0x03, 0xAF, 0x03)
    m.command(MFM | WRITE, 0x00, 0, 0, 4, 2, 4, 0x1B, 0xFF)
    assert m.inp(MSR) == MSR_RQM | MSR_NDMA | MSR_CB
    for i in range(512):
        m.out(FIFO, i & 0xFF)
    assert m.results()[:3] == [0, 0, 0]
    assert m.fdc.drives[0].image.read_sectors(3, 1) == bytes(i & 0xFF for i in range(512))


def test_format_track_fills_sectors_with_the_filler_byte():
    m = Machine()
    m.command(0x0F, 0x00, 2)
    sense(m)
    ids = b"".join(bytes((2, 0, r, 2)) for r in range(1, 19))
    m.mem[0x7000:0x7000 + len(ids)] = ids
    m.setup_dma(0x7000, len(ids), MODE_SINGLE | TYPE_READ)
    m.command(MFM | 0x0D, 0x00, 2, 18, 0x54, 0xF6)
    res = m.results()
    assert res[0] & 0xC0 == 0
    img = m.fdc.drives[0].image
    assert img.read_sectors(2 * 2 * 18, 18) == b"\xF6" * (18 * 512)
    assert img.read_sectors(2 * 2 * 18 + 18, 1) == pattern(SIZE_144)[(4 * 18 + 18) * 512:][:512]


def test_state_round_trip_in_result_phase():
    m = Machine()
    m.command(0x0E)
    m.inp(FIFO)
    saved = m.fdc.state()
    m2 = Machine()
    m2.fdc.load_state(saved)
    assert len(m2.results()) == 9


@pytest.mark.parametrize("size, rate", [(360 * 1024, 1), (720 * 1024, 2), (1200 * 1024, 0),
                                        (SIZE_144, 0), (2880 * 1024, 3)])
def test_last_sector_of_each_format_reads(size, rate):
    m = Machine(size=size)
    g = m.fdc.drives[0].format.geometry
    m.out(CCR, rate)
    m.setup_dma(0x9000, 512, MODE_SINGLE | TYPE_WRITE)
    h = g.heads - 1
    m.command(MFM | READ, h << 2, g.cylinders - 1, h, g.sectors, 2, g.sectors, 0x1B, 0xFF)
    res = m.results()
    assert res[0] & 0xC0 == 0, res
    lba = g.total - 1
    assert m.mem[0x9000:0x9200] == pattern(size)[lba * 512:]


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 79), st.integers(0, 1), st.integers(1, 18), st.integers(0, 255))
def test_any_sector_reads_back_what_was_written(c, h, r, fill):
    m = Machine()
    m.mem[0x9000:0x9200] = bytes([fill]) * 512
    m.setup_dma(0x9000, 512, MODE_SINGLE | TYPE_READ)
    m.command(MFM | WRITE, h << 2, c, h, r, 2, r, 0x1B, 0xFF)
    assert m.results()[0] & 0xC0 == 0
    m.setup_dma(0xA000, 512, MODE_SINGLE | TYPE_WRITE)
    m.command(MFM | READ, h << 2, c, h, r, 2, r, 0x1B, 0xFF)
    assert m.results()[0] & 0xC0 == 0
    assert m.mem[0xA000:0xA200] == bytes([fill]) * 512
