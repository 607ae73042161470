"""Intel 82077AA floppy disk controller (AT mode) with two drives, IRQ6 and DMA channel 2.

References: Intel 82077AA datasheet (order 290166): 2.0 the registers (DOR, MSR, DSR, FIFO, DIR,
CCR), 5.0 the command set and table 5-1 (command bytes), 5.2 status registers ST0-ST3, 5.1.x
"Result phase" and table 5-9 (C/H/R/N after the command ends), 5.3 SENSE INTERRUPT STATUS, 5.5
CONFIGURE/LOCK/DUMPREG, 8.2 resets.

Ports (base 3F0h): 3F2h DOR, 3F3h TDR, 3F4h MSR (read) / DSR (write), 3F5h data FIFO, 3F7h DIR (read)
/ CCR (write). 3F0h/3F1h (SRA/SRB, PS/2 mode only) read FFh. 3F6h belongs to the IDE controller.

Emulation choices:
- Commands execute at once when their last byte is written: seeks take no time (the MSR drive-busy
  bits are never seen), the execution phase of READ/WRITE DATA moves every sector through DMA (or
  fills the FIFO buffer in non-DMA mode) and the result phase follows in the same OUT.
- Implied seek: READ/WRITE DATA go to cylinder C of the command even without EIS (a real controller
  would report "wrong cylinder" if the head were elsewhere); the head position is updated.
- A transfer ends at DMA terminal count or, without TC, at the end of the track (or of the second
  side with MT) -- both reported as normal termination, so a DMA count programmed one sector too
  large is harmless (the chip would flag ST1 EN).
- Media must match the data rate (CCR/DSR): a 720K disk reads only at 250 kb/s, a 1.44M one only at
  500 kb/s. A mismatch is "missing address mark" (ST0 abnormal, ST1 MA), which is how BIOSes probe
  the format of a disk in a multi-format drive.
- Drive-not-present and no-media are reported as ST1 MA too (the 82077AA has no not-ready bit).
- The controller comes out of `reset()` with DOR = 0Ch (out of reset, DMA/IRQ gate on), as a BIOS
  leaves it, but without the reset's SENSE INTERRUPT results; a guest DOR reset cycle gives the four.
- Disk change (DIR bit 7) is set on power-up and on insert/eject, and cleared by a SEEK or
  RECALIBRATE with media in the drive.
"""

from __future__ import annotations

from collections import deque

from emu.clock import VirtualClock
from emu.devices.bus import IoBus, IrqLine
from emu.devices.diskimage import (
    DRIVE_1_44M,
    SECTOR_SIZE,
    DiskError,
    DiskImage,
    FloppyFormat,
    floppy_medium,
)

FDC_BASE = 0x3F0
FDC_IRQ = 6
FDC_DMA = 2
DRIVES = 2  # drives attached; the controller addresses four

# register offsets from the base
REG_SRA = 0
REG_SRB = 1
REG_DOR = 2
REG_TDR = 3
REG_MSR_DSR = 4
REG_FIFO = 5
REG_DIR_CCR = 7
LOW_PORTS = 6  # 3F0h-3F5h

# DOR (datasheet 2.1.2)
DOR_DRIVE_SEL = 0x03
DOR_NRESET = 0x04
DOR_DMA_GATE = 0x08  # AT mode: gates DRQ and INT
DOR_MOTOR_SHIFT = 4
DOR_DEFAULT = DOR_NRESET | DOR_DMA_GATE

# MSR (2.1.4)
MSR_RQM = 0x80
MSR_DIO = 0x40  # 1: controller to CPU
MSR_NDMA = 0x20  # execution phase in non-DMA mode
MSR_CB = 0x10  # command busy

# DSR (2.1.5)
DSR_SW_RESET = 0x80
DSR_POWER_DOWN = 0x40
RATE_MASK = 0x03
RATE_KBPS = {0: 500, 1: 300, 2: 250, 3: 1000}
DEFAULT_RATE = 0  # 500 kb/s

DIR_DSKCHG = 0x80

# ST0 (5.2.1)
ST0_IC_NORMAL = 0x00
ST0_IC_ABNORMAL = 0x40
ST0_IC_INVALID = 0x80
ST0_IC_POLLING = 0xC0  # abnormal termination because of polling (after reset)
ST0_SE = 0x20
ST0_EC = 0x10
ST0_HEAD = 0x04
# ST1
ST1_EN = 0x80
ST1_DE = 0x20
ST1_OR = 0x10
ST1_ND = 0x04
ST1_NW = 0x02
ST1_MA = 0x01
# ST2
ST2_WC = 0x10
# ST3
ST3_WP = 0x40
ST3_T0 = 0x10
ST3_RDY = 0x20
ST3_TS = 0x08

# command bytes (table 5-1): low five bits, plus MT/MFM/SK option bits
OPT_MT = 0x80
OPT_MFM = 0x40
OPT_SK = 0x20
CMD_MASK = 0x1F
CMD_READ_DATA = 0x06
CMD_WRITE_DATA = 0x05
CMD_READ_ID = 0x0A
CMD_FORMAT_TRACK = 0x0D
CMD_RECALIBRATE = 0x07
CMD_SENSE_INTERRUPT = 0x08
CMD_SPECIFY = 0x03
CMD_SENSE_DRIVE = 0x04
CMD_SEEK = 0x0F  # 8Fh/CFh: relative seek (DIR in bit 6)
CMD_VERSION = 0x10
CMD_PERPENDICULAR = 0x12
CMD_CONFIGURE = 0x13
CMD_LOCK = 0x14  # bit 7 = LOCK
CMD_DUMPREG = 0x0E
RELATIVE_SEEK = 0x80
RELATIVE_SEEK_OUT = 0x40

VERSION_82077 = 0x90
CMD_LENGTHS = {
    CMD_READ_DATA: 9, CMD_WRITE_DATA: 9, CMD_READ_ID: 2, CMD_FORMAT_TRACK: 6,
    CMD_RECALIBRATE: 2, CMD_SENSE_INTERRUPT: 1, CMD_SPECIFY: 3, CMD_SENSE_DRIVE: 2, CMD_SEEK: 3,
    CMD_VERSION: 1, CMD_PERPENDICULAR: 2, CMD_CONFIGURE: 4, CMD_LOCK: 1, CMD_DUMPREG: 1,
}
SECTOR_SIZE_CODE = 2  # N = 2: 128 << 2 = 512 bytes
MAX_TRACK = 255

# CONFIGURE byte 2 (5.5.1)
CFG_EIS = 0x40
CFG_EFIFO = 0x20  # 1: FIFO disabled
CFG_POLL = 0x10  # 1: drive polling disabled
CFG_FIFOTHR = 0x0F
CFG_DEFAULT = CFG_EFIFO
RESET_SENSE_COUNT = 4  # one SENSE INTERRUPT per drive after a reset with polling on


class FloppyDrive:
    """A 3.5"/5.25" drive: maybe a medium (a DiskImage of a standard size) and a head position."""

    def __init__(self, image: DiskImage | None = None, drive_type: int = DRIVE_1_44M):
        self.drive_type = drive_type
        self.image: DiskImage | None = None
        self.format: FloppyFormat | None = None
        self.track = 0
        self.disk_changed = True  # set at power-up
        if image is not None:
            self.insert(image)

    def insert(self, image: DiskImage) -> None:
        fmt = floppy_medium(image.size)
        if fmt is None:
            raise DiskError(f"'{image.path}' is too big for a floppy drive ({image.size} bytes)")
        self.image, self.format = image, fmt
        self.disk_changed = True

    def read_sector(self, lba: int) -> bytes:
        """One sector of the medium; past the end of a short image, zeros."""
        if self.format is not None and self.image.sectors <= lba < self.format.geometry.total:
            return bytes(SECTOR_SIZE)
        return self.image.read_sectors(lba, 1)

    def eject(self) -> None:
        self.image = self.format = None
        self.disk_changed = True

    @property
    def readonly(self) -> bool:
        return self.image is None or self.image.readonly


class Fdc82077:
    """The controller. `dma` is an `emu.devices.dma8237.DmaController` (or None: non-DMA only)."""

    def __init__(self, clock: VirtualClock, irq: IrqLine, dma=None,
                 drives: list[FloppyDrive] | None = None, base: int = FDC_BASE,
                 dma_channel: int = FDC_DMA):
        self.clock = clock
        self.irq = irq
        self.dma = dma
        self.base = base
        self.dma_channel = dma_channel
        self.drives = list(drives or []) + [FloppyDrive() for _ in range(DRIVES - len(drives or []))]
        self.lock = False
        self.config = CFG_DEFAULT
        self.pretrk = 0
        self.reset()

    # -- wiring ----------------------------------------------------------------------------------
    def attach(self, bus: IoBus) -> None:
        bus.register(self.base, LOW_PORTS, self.io_read, self.io_write, owner=self)
        bus.register(self.base + REG_DIR_CCR, 1, self.io_read, self.io_write, owner=self)

    def reset(self) -> None:
        """Hardware reset, then the BIOS's DOR = 0Ch."""
        self.lock = False
        self._controller_reset(sense=False)
        self.dor = DOR_DEFAULT
        self.tdr = 0
        self.rate = DEFAULT_RATE
        self._update_irq()

    def _controller_reset(self, sense: bool) -> None:
        """Datasheet 8.2: command state cleared; CONFIGURE values kept only if LOCKed."""
        self.phase = "command"
        self.cmd: list[int] = []
        self.result: deque[int] = deque()
        self.buffer = bytearray()  # non-DMA execution data
        self.buf_pos = 0
        self.exec_op: dict | None = None
        self.srt_hut = self.hlt_nd = 0
        self.eot = 0
        self.perpendicular = 0
        self.seek_ends: deque[tuple[int, int]] = deque()
        if not self.lock:
            self.config, self.pretrk = CFG_DEFAULT, 0
        for d in self.drives:
            d.track = 0
        self.reset_sense = RESET_SENSE_COUNT if sense and not self.config & CFG_POLL else 0
        self.int_pending = bool(self.reset_sense)
        self._update_irq()

    # -- helpers ---------------------------------------------------------------------------------
    @property
    def non_dma(self) -> bool:
        return bool(self.hlt_nd & 1)

    def _update_irq(self) -> None:
        self.irq.set(self.int_pending and bool(self.dor & DOR_DMA_GATE))

    def _interrupt(self) -> None:
        self.int_pending = True
        self._update_irq()

    def _drive(self, ds: int) -> FloppyDrive | None:
        return self.drives[ds] if ds < len(self.drives) else None

    def _result(self, values: list[int], interrupt: bool) -> None:
        self.phase = "result"
        self.result = deque(v & 0xFF for v in values)
        self.exec_op = None
        if interrupt:
            self._interrupt()

    def _idle(self) -> None:
        self.phase = "command"
        self.cmd = []
        self.exec_op = None

    def msr(self) -> int:
        if not self.dor & DOR_NRESET:
            return 0
        if self.phase == "result":
            return MSR_RQM | MSR_DIO | MSR_CB
        if self.phase == "exec_read":
            return MSR_RQM | MSR_DIO | MSR_NDMA | MSR_CB
        if self.phase == "exec_write":
            return MSR_RQM | MSR_NDMA | MSR_CB
        return MSR_RQM | (MSR_CB if self.cmd else 0)

    # -- ports -----------------------------------------------------------------------------------
    def io_read(self, port: int, size: int) -> int:
        reg = port - self.base
        if reg == REG_DOR:
            return self.dor
        if reg == REG_TDR:
            return self.tdr
        if reg == REG_MSR_DSR:
            return self.msr()
        if reg == REG_FIFO:
            return self._fifo_read()
        if reg == REG_DIR_CCR:
            d = self._drive(self.dor & DOR_DRIVE_SEL)
            return DIR_DSKCHG if d is not None and d.disk_changed else 0
        return 0xFF  # SRA/SRB: PS/2 mode only

    def io_write(self, port: int, size: int, value: int) -> None:
        reg = port - self.base
        value &= 0xFF
        if reg == REG_DOR:
            old, self.dor = self.dor, value
            if not value & DOR_NRESET:
                self._controller_reset(sense=False)
                self.int_pending = False
            elif not old & DOR_NRESET:
                self._controller_reset(sense=True)  # leaving reset: the four polling interrupts
            self._update_irq()
        elif reg == REG_TDR:
            self.tdr = value & 0x03
        elif reg == REG_MSR_DSR:
            self.rate = value & RATE_MASK
            if value & DSR_SW_RESET:  # self-clearing software reset
                self._controller_reset(sense=True)
        elif reg == REG_FIFO:
            self._fifo_write(value)
        elif reg == REG_DIR_CCR:
            self.rate = value & RATE_MASK

    def _fifo_read(self) -> int:
        if self.phase == "result":
            self.int_pending = False  # the first result byte read clears INT
            self._update_irq()
            value = self.result.popleft()
            if not self.result:
                self._idle()
            return value
        if self.phase == "exec_read":
            value = self.buffer[self.buf_pos]
            self.buf_pos += 1
            if self.buf_pos >= len(self.buffer):
                self.int_pending = False
                self._finish_exec()
            return value
        return 0xFF

    def _fifo_write(self, value: int) -> None:
        if not self.dor & DOR_NRESET:
            return
        if self.phase == "exec_write":
            self.buffer[self.buf_pos] = value
            self.buf_pos += 1
            if self.buf_pos >= len(self.buffer):
                self.int_pending = False
                self._finish_exec()
            return
        if self.phase != "command":
            return  # writes during the result phase are ignored
        if not self.cmd:
            self.int_pending = False  # a new command clears a pending (non-seek) interrupt
            self._update_irq()
        self.cmd.append(value)
        op = self.cmd[0]
        length = CMD_LENGTHS.get(op & CMD_MASK)
        if length is None:
            self.cmd = []
            self._result([ST0_IC_INVALID], interrupt=False)
            return
        if len(self.cmd) >= length:
            cmd, self.cmd = self.cmd, []
            self._execute(cmd)

    # -- command dispatch ------------------------------------------------------------------------
    def _execute(self, c: list[int]) -> None:
        op = c[0] & CMD_MASK
        if op == CMD_SPECIFY:
            self.srt_hut, self.hlt_nd = c[1], c[2]
            self._idle()
        elif op == CMD_SENSE_INTERRUPT:
            self._sense_interrupt()
        elif op == CMD_RECALIBRATE:
            self._seek(c[1] & 3, 0, 0)
        elif op == CMD_SEEK:
            ds, hd = c[1] & 3, c[1] >> 2 & 1
            drive = self._drive(ds)
            target = c[2]
            if c[0] & RELATIVE_SEEK and drive is not None:
                step = -c[2] if c[0] & RELATIVE_SEEK_OUT == 0 else c[2]
                target = max(0, min(MAX_TRACK, drive.track + step))
            self._seek(ds, hd, target)
        elif op == CMD_SENSE_DRIVE:
            self._result([self._st3(c[1] & 3, c[1] >> 2 & 1)], interrupt=False)
        elif op == CMD_VERSION:
            self._result([VERSION_82077], interrupt=False)
        elif op == CMD_CONFIGURE:
            self.config, self.pretrk = c[2] & 0x7F, c[3]
            self._idle()
        elif op == CMD_LOCK:
            self.lock = bool(c[0] & 0x80)
            self._result([0x10 if self.lock else 0], interrupt=False)
        elif op == CMD_DUMPREG:
            pcn = [d.track for d in self.drives] + [0] * (4 - len(self.drives))
            self._result(pcn[:4] + [self.srt_hut, self.hlt_nd, self.eot,
                                    (0x80 if self.lock else 0) | (self.perpendicular & 0x7F),
                                    self.config, self.pretrk], interrupt=False)
        elif op == CMD_PERPENDICULAR:
            self.perpendicular = c[1] & 0x3F
            self._idle()
        elif op in (CMD_READ_DATA, CMD_WRITE_DATA):
            self._read_write(c)
        elif op == CMD_READ_ID:
            self._read_id(c)
        elif op == CMD_FORMAT_TRACK:
            self._format(c)

    def _sense_interrupt(self) -> None:
        """5.3.7: the reset's four results first (drives 0-3), then finished seeks; else invalid."""
        self.int_pending = False
        if self.reset_sense:
            ds = RESET_SENSE_COUNT - self.reset_sense
            self.reset_sense -= 1
            d = self._drive(ds)
            self._result([ST0_IC_POLLING | ds, d.track if d else 0], interrupt=False)
        elif self.seek_ends:
            st0, pcn = self.seek_ends.popleft()
            self._result([st0, pcn], interrupt=False)
        else:
            self._result([ST0_IC_INVALID], interrupt=False)
        self._update_irq()

    def _seek(self, ds: int, hd: int, track: int) -> None:
        drive = self._drive(ds)
        st0 = ST0_SE | hd << 2 | ds
        if drive is None:
            st0 |= ST0_IC_ABNORMAL | ST0_EC  # no track 0 signal from a drive that is not there
            pcn = 0
        else:
            drive.track = track
            pcn = track
            if drive.image is not None:
                drive.disk_changed = False
        self.seek_ends.append((st0, pcn))
        self._idle()
        self._interrupt()

    def _st3(self, ds: int, hd: int) -> int:
        drive = self._drive(ds)
        st3 = hd << 2 | ds
        if drive is not None:
            st3 |= ST3_RDY | ST3_TS
            if drive.readonly:
                st3 |= ST3_WP
            if drive.track == 0:
                st3 |= ST3_T0
        return st3

    def _media_error(self, drive: FloppyDrive | None, head: int) -> int:
        """ST1 bits for a drive that cannot read at all here (no drive, no disk, wrong rate/side)."""
        if drive is None or drive.image is None:
            return ST1_MA
        fmt = drive.format
        if RATE_KBPS[self.rate] not in fmt.data_rate_kbps or head >= fmt.geometry.heads:
            return ST1_MA
        return 0

    # -- READ DATA / WRITE DATA ------------------------------------------------------------------
    def _read_write(self, c: list[int]) -> None:
        write = (c[0] & CMD_MASK) == CMD_WRITE_DATA
        op = {"write": write, "mt": bool(c[0] & OPT_MT), "ds": c[1] & 3, "hd": c[1] >> 2 & 1,
              "c": c[2], "h": c[3], "r": c[4], "n": c[5], "eot": c[6]}
        self.eot = c[6]
        drive = self._drive(op["ds"])
        st1 = self._media_error(drive, op["hd"])
        if not st1 and not c[0] & OPT_MFM:
            st1 = ST1_MA  # FM: no MFM address marks found
        if not st1:
            g = drive.format.geometry
            drive.track = op["c"]  # implied seek (see module docstring)
            if op["n"] != SECTOR_SIZE_CODE or op["c"] >= g.cylinders or not 1 <= op["r"] <= g.sectors:
                st1 = ST1_ND
            elif write and drive.readonly:
                st1 = ST1_NW
        if st1:
            self._end(op, ST0_IC_ABNORMAL, st1, 0)
            return
        sectors = self._sector_run(op, drive.format.geometry)
        if self.non_dma:
            self.exec_op = op
            op["run"] = sectors
            if write:
                self.buffer = bytearray(len(sectors) * SECTOR_SIZE)
                self.phase = "exec_write"
            else:
                try:
                    self.buffer = bytearray(b"".join(
                        drive.read_sector(lba) for _, _, lba in sectors))
                except DiskError:
                    self._end(op, ST0_IC_ABNORMAL, ST1_DE, 0)
                    return
                self.phase = "exec_read"
            self.buf_pos = 0
            self._interrupt()  # non-DMA: INT signals that the FIFO wants service
            return
        self._dma_transfer(op, drive, sectors)

    def _sector_run(self, op: dict, g) -> list[tuple[int, int, int]]:
        """(head, sector, lba) from R to EOT, then (MT, head 0) side 1 sectors 1..EOT."""
        run = []
        h, r = op["hd"], op["r"]
        last = min(op["eot"], g.sectors)
        while True:
            run.append((h, r, (op["c"] * g.heads + h) * g.sectors + r - 1))
            if r < last:
                r += 1
            elif op["mt"] and h == 0 and g.heads > 1:
                h, r = 1, 1
            else:
                return run

    def _dma_transfer(self, op: dict, drive: FloppyDrive, sectors) -> None:
        dma, ch = self.dma, self.dma_channel
        done = 0
        for head, r, lba in sectors:
            if dma is None or not dma.ready(ch) or not self.dor & DOR_DMA_GATE:
                self._end(op, ST0_IC_ABNORMAL, ST1_OR, 0, done_at=(head, r, False))
                return
            try:
                if op["write"]:
                    data = dma.transfer_from_memory(ch, SECTOR_SIZE)
                    drive.image.write_sectors(lba, data.ljust(SECTOR_SIZE, b"\0"))
                else:
                    dma.transfer_to_memory(ch, drive.read_sector(lba))
            except DiskError:
                self._end(op, ST0_IC_ABNORMAL, ST1_DE, 0, done_at=(head, r, False))
                return
            done += 1
            if dma.terminal_count(ch):
                break
        head, r, _ = sectors[done - 1]
        self._end(op, ST0_IC_NORMAL, 0, 0, done_at=(head, r, True))

    def _finish_exec(self) -> None:
        """Non-DMA execution phase complete (all bytes moved through the FIFO)."""
        op = self.exec_op
        if op.get("format"):
            self._format_apply(op, bytes(self.buffer))
            return
        drive = self._drive(op["ds"])
        run = op["run"]
        if op["write"]:
            try:
                for i, (_, _, lba) in enumerate(run):
                    drive.image.write_sectors(lba, bytes(self.buffer[i * SECTOR_SIZE:(i + 1) * SECTOR_SIZE]))
            except DiskError:
                self._end(op, ST0_IC_ABNORMAL, ST1_DE, 0)
                return
        head, r, _ = run[-1]
        self._end(op, ST0_IC_NORMAL, 0, 0, done_at=(head, r, True))

    def _end(self, op: dict, ic: int, st1: int, st2: int, done_at=None) -> None:
        """Result phase with C/H/R/N per table 5-9 (after the last sector transferred)."""
        c, h, r, n = op["c"], op["h"], op["r"], op["n"]
        hd = op["hd"]
        if done_at is not None:
            head, last_r, completed = done_at
            hd = head
            h = op["h"] ^ (head ^ op["hd"])  # MT moved to the other side: H follows
            r = last_r
            if completed:
                if last_r < op["eot"]:
                    r = last_r + 1
                elif op["mt"] and head == 0:
                    h, hd, r = h ^ 1, 1, 1
                else:
                    c, r = c + 1, 1
                    if op["mt"]:
                        h, hd = h ^ 1, 0
        self._result([ic | hd << 2 | op["ds"], st1, st2, c, h, r, n], interrupt=True)

    # -- READ ID / FORMAT TRACK ------------------------------------------------------------------
    def _read_id(self, c: list[int]) -> None:
        ds, hd = c[1] & 3, c[1] >> 2 & 1
        drive = self._drive(ds)
        st1 = self._media_error(drive, hd) or (0 if c[0] & OPT_MFM else ST1_MA)
        track = drive.track if drive is not None else 0
        if st1:
            self._result([ST0_IC_ABNORMAL | hd << 2 | ds, st1, 0, track, hd, 1, SECTOR_SIZE_CODE],
                         interrupt=True)
        else:  # the first ID field under the head: sector 1
            self._result([hd << 2 | ds, 0, 0, track, hd, 1, SECTOR_SIZE_CODE], interrupt=True)

    def _format(self, c: list[int]) -> None:
        ds, hd = c[1] & 3, c[1] >> 2 & 1
        op = {"format": True, "write": True, "mt": False, "ds": ds, "hd": hd, "c": 0, "h": hd,
              "r": 1, "n": c[2], "eot": c[3], "sc": c[3], "filler": c[5]}
        drive = self._drive(ds)
        st1 = self._media_error(drive, hd)
        if not st1 and drive.readonly:
            st1 = ST1_NW
        if drive is not None:
            op["c"] = drive.track
        if st1:
            self._end(op, ST0_IC_ABNORMAL, st1, 0)
            return
        nbytes = 4 * op["sc"]
        if self.non_dma:
            self.exec_op = op
            self.buffer = bytearray(nbytes)
            self.buf_pos = 0
            self.phase = "exec_write"
            self._interrupt()
            return
        if self.dma is None or not self.dma.ready(self.dma_channel):
            self._end(op, ST0_IC_ABNORMAL, ST1_OR, 0)
            return
        self._format_apply(op, self.dma.transfer_from_memory(self.dma_channel, nbytes))

    def _format_apply(self, op: dict, ids: bytes) -> None:
        """Write the filler byte to every sector whose ID field (C, H, R, N) the guest supplied."""
        drive = self._drive(op["ds"])
        g = drive.format.geometry
        filler = bytes([op["filler"]]) * SECTOR_SIZE
        try:
            for i in range(0, len(ids) - 3, 4):
                cyl, _h, r, n = ids[i:i + 4]
                if n == SECTOR_SIZE_CODE and 1 <= r <= g.sectors and drive.track < g.cylinders:
                    # sectors go where the head is; the ID's C/H are just labels on the track
                    drive.image.write_sectors((drive.track * g.heads + op["hd"]) * g.sectors + r - 1,
                                              filler)
                op["c"], op["h"], op["r"] = cyl, _h, r
        except DiskError:
            self._end(op, ST0_IC_ABNORMAL, ST1_DE, 0)
            return
        self._result([op["hd"] << 2 | op["ds"], 0, 0, op["c"], op["h"], op["r"], op["n"]],
                     interrupt=True)

    # -- state -----------------------------------------------------------------------------------
    def state(self) -> dict:
        return {
            "dor": self.dor, "tdr": self.tdr, "rate": self.rate, "phase": self.phase,
            "cmd": list(self.cmd), "result": list(self.result), "buffer": bytes(self.buffer),
            "buf_pos": self.buf_pos, "exec_op": dict(self.exec_op) if self.exec_op else None,
            "srt_hut": self.srt_hut, "hlt_nd": self.hlt_nd, "eot": self.eot,
            "perpendicular": self.perpendicular, "seek_ends": [list(s) for s in self.seek_ends],
            "lock": self.lock, "config": self.config, "pretrk": self.pretrk,
            "reset_sense": self.reset_sense, "int_pending": self.int_pending,
            "drives": [{"track": d.track, "disk_changed": d.disk_changed} for d in self.drives],
        }

    def load_state(self, s: dict) -> None:
        self.dor, self.tdr, self.rate, self.phase = s["dor"], s["tdr"], s["rate"], s["phase"]
        self.cmd, self.result = list(s["cmd"]), deque(s["result"])
        self.buffer, self.buf_pos = bytearray(s["buffer"]), s["buf_pos"]
        self.exec_op = dict(s["exec_op"]) if s["exec_op"] else None
        if self.exec_op and "run" in self.exec_op:
            self.exec_op["run"] = [tuple(x) for x in self.exec_op["run"]]
        self.srt_hut, self.hlt_nd, self.eot = s["srt_hut"], s["hlt_nd"], s["eot"]
        self.perpendicular = s["perpendicular"]
        self.seek_ends = deque(tuple(x) for x in s["seek_ends"])
        self.lock, self.config, self.pretrk = s["lock"], s["config"], s["pretrk"]
        self.reset_sense, self.int_pending = s["reset_sense"], s["int_pending"]
        for d, ds in zip(self.drives, s["drives"], strict=False):
            d.track, d.disk_changed = ds["track"], ds["disk_changed"]
        self._update_irq()
