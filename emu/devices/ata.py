"""IDE/ATA controller: two legacy channels, master and slave hard disks, PIO protocol.

References: ANSI INCITS 361-2002, ATA/ATAPI-6 ("ATA-6"): 7.1-7.16 the register block, 8 the
commands, 9.7-9.11 the PIO data-in / data-out / non-data protocols, 9.2-9.3 resets and signatures.

Wiring: primary channel 1F0h-1F7h + 3F6h (device control / alternate status), IRQ14; secondary
170h-177h + 376h, IRQ15. (3F7h/377h belong to the floppy controller.)

Emulation choices:
- Commands execute within the OUT that writes the command register: BSY is never observed, DRQ and
  INTRQ are set at once (ATA-6 allows any BSY time). No timers are needed.
- The command block registers are written to both devices of a channel (ATA-6 7.1); the channel
  holds one copy, plus the "previous content" copies that 48-bit commands read when HOB is set.
- Absent device 1 with device 0 present: device 0 answers for it (ATA-6 7.1/9.16): Status and
  Alternate Status read 00h, the other registers read their shared values, commands are ignored. A
  channel with no devices reads FFh from every register (the floating bus with its pull-ups) -- the
  value BIOSes and Linux treat as "nothing here".
- Interrupts: INTRQ is set for each DRQ data block of a PIO data-in command, for each block after the
  first and at completion of a PIO data-out command, and at completion of a non-data command; it is
  cleared by reading Status (not Alternate Status), by writing the Command register and by SRST
  (ATA-6 5.2.9). The IRQ line is INTRQ gated by nIEN of the selected device.
- After a PIO data transfer the command block registers hold the address of the last sector
  transferred and the remaining sector count; on an error they hold the failing sector's address.
- ATAPI CD-ROM (`AtapiDrive`, ATA-6 9.10 PACKET protocol, PIO only): IDENTIFY PACKET DEVICE,
  PACKET with TEST UNIT READY, REQUEST SENSE, INQUIRY, READ CAPACITY, READ(10)/(12), START STOP and
  PREVENT ALLOW; anything else is CHECK CONDITION / ILLEGAL REQUEST. The packet's DRQ comes without
  an interrupt (IDENTIFY PACKET word 0 bits 6:5 = 00b); each data chunk (at most the host's byte
  count limit) and the completion interrupt. After a reset the channel shows the signature of the
  device selected next (the registers are shared), until the host writes them.
- Write-protected images: writes abort (ERR + ABRT), the sectors before the failing block stay
  written, as on a drive that fails mid-command.
"""

from __future__ import annotations

from emu.clock import VirtualClock
from emu.devices.bus import IoBus, IrqLine
from emu.devices.diskimage import (
    SECTOR_SIZE,
    DiskError,
    DiskImage,
    DiskWriteProtected,
    Geometry,
    ata_geometry,
)

PRIMARY_BASE, PRIMARY_CTRL, PRIMARY_IRQ = 0x1F0, 0x3F6, 14
SECONDARY_BASE, SECONDARY_CTRL, SECONDARY_IRQ = 0x170, 0x376, 15
COMMAND_BLOCK_PORTS = 8

# Command block register offsets (ATA-6 7.1, table 8)
REG_DATA = 0
REG_ERROR_FEATURES = 1
REG_SECTOR_COUNT = 2
REG_LBA_LOW = 3  # sector number
REG_LBA_MID = 4  # cylinder low
REG_LBA_HIGH = 5  # cylinder high
REG_DEVICE = 6  # device/head
REG_STATUS_COMMAND = 7

# Status register (ATA-6 7.15)
ST_BSY = 0x80
ST_DRDY = 0x40
ST_DF = 0x20
ST_DSC = 0x10  # device seek complete (obsolete in ATA-6, still read by BIOSes)
ST_DRQ = 0x08
ST_CORR = 0x04
ST_IDX = 0x02
ST_ERR = 0x01

# Error register (ATA-6 7.9 and each command's "Error outputs")
ER_ICRC = 0x80
ER_UNC = 0x40
ER_MC = 0x20
ER_IDNF = 0x10
ER_MCR = 0x08
ER_ABRT = 0x04
ER_TK0NF = 0x02
ER_AMNF = 0x01
DIAG_PASSED = 0x01  # error register after reset / EXECUTE DEVICE DIAGNOSTIC: device 0 passed

# Device register (ATA-6 7.10)
DEV_OBSOLETE = 0xA0  # bits 7 and 5: set by old software, read back as written
DEV_LBA = 0x40
DEV_DEV = 0x10  # device 1 selected
DEV_HEAD = 0x0F

# Device control register (ATA-6 7.8)
CTL_HOB = 0x80  # read the previous content of the 48-bit registers
CTL_SRST = 0x04
CTL_NIEN = 0x02

# Commands (ATA-6 clause 8)
CMD_NOP = 0x00
CMD_DEVICE_RESET = 0x08
CMD_RECALIBRATE = 0x10  # 10h-1Fh
CMD_READ_SECTORS = 0x20
CMD_READ_SECTORS_NR = 0x21  # without retry (obsolete)
CMD_READ_SECTORS_EXT = 0x24
CMD_READ_NATIVE_MAX_EXT = 0x27
CMD_READ_MULTIPLE_EXT = 0x29
CMD_WRITE_SECTORS = 0x30
CMD_WRITE_SECTORS_NR = 0x31
CMD_WRITE_SECTORS_EXT = 0x34
CMD_WRITE_MULTIPLE_EXT = 0x39
CMD_READ_VERIFY = 0x40
CMD_READ_VERIFY_NR = 0x41
CMD_READ_VERIFY_EXT = 0x42
CMD_SEEK = 0x70  # 70h-7Fh
CMD_EXECUTE_DIAGNOSTIC = 0x90
CMD_INITIALIZE_PARAMETERS = 0x91
CMD_IDENTIFY_PACKET = 0xA1
CMD_READ_MULTIPLE = 0xC4
CMD_WRITE_MULTIPLE = 0xC5
CMD_SET_MULTIPLE = 0xC6
CMD_STANDBY_IMMEDIATE = 0xE0
CMD_IDLE_IMMEDIATE = 0xE1
CMD_STANDBY = 0xE2
CMD_IDLE = 0xE3
CMD_CHECK_POWER_MODE = 0xE5
CMD_SLEEP = 0xE6
CMD_FLUSH_CACHE = 0xE7
CMD_FLUSH_CACHE_EXT = 0xEA
CMD_IDENTIFY = 0xEC
CMD_SET_FEATURES = 0xEF
CMD_READ_NATIVE_MAX = 0xF8

# SET FEATURES subcommands (ATA-6 8.37, table 44)
SF_ENABLE_WRITE_CACHE = 0x02
SF_SET_TRANSFER_MODE = 0x03
SF_DISABLE_READ_LOOKAHEAD = 0x55
SF_DISABLE_REVERT_DEFAULTS = 0x66
SF_DISABLE_WRITE_CACHE = 0x82
SF_ENABLE_READ_LOOKAHEAD = 0xAA
SF_ENABLE_REVERT_DEFAULTS = 0xCC
SF_ACCEPTED = (SF_ENABLE_WRITE_CACHE, SF_DISABLE_READ_LOOKAHEAD, SF_DISABLE_REVERT_DEFAULTS,
               SF_DISABLE_WRITE_CACHE, SF_ENABLE_READ_LOOKAHEAD, SF_ENABLE_REVERT_DEFAULTS)
XFER_PIO_DEFAULT = 0x00
XFER_PIO_DEFAULT_NO_IORDY = 0x01
XFER_PIO_FLOW = 0x08  # 00001nnn: PIO flow control mode nnn
MAX_PIO_MODE = 4

POWER_MODE_ACTIVE = 0xFF  # CHECK POWER MODE: active or idle
MAX_MULTIPLE = 16  # sectors per DRQ block for READ/WRITE MULTIPLE (IDENTIFY word 47)
LBA28_LIMIT = 1 << 28
LBA28_MAX_SECTORS = LBA28_LIMIT - 1  # words 60-61 saturate at 0FFFFFFFh
MAX_LOGICAL_CYLINDERS = 65535

# IDENTIFY DEVICE words (ATA-6 8.15, table 19)
ID_WORDS = 256
ID_GENERAL_FIXED = 0x0040  # word 0: ATA device, fixed
ID_CAP_LBA = 0x0200  # word 49 bit 9
ID_CAP_IORDY = 0x0800  # word 49 bit 11
ID_CAP2_VALID = 0x4000  # word 50 bit 14 shall be one
ID_FIELDS_VALID = 0x0003  # word 53: words 54-58 and 64-70 valid
ID_MULTIPLE_VALID = 0x0100  # word 59 bit 8
ID_PIO_3_4 = 0x0003  # word 64: PIO modes 3 and 4
ID_CYCLE_NS = 120  # words 65-68: fastest PIO/DMA cycle times (PIO mode 4)
ID_MAJOR_ATA1_6 = 0x007E  # word 80: ATA-1 .. ATA-6
ID_CMDSET_VALID = 0x4000  # words 83/84/86/87: bit 14 one, bit 15 zero
ID_CMDSET_LBA48 = 0x0400
ID_CMDSET_FLUSH = 0x1000
ID_CMDSET_FLUSH_EXT = 0x2000
ID_CHECKSUM_SIGNATURE = 0xA5  # word 255 low byte

MODEL = "pyemu HARDDISK"
FIRMWARE = "1.0"


def _ata_string(text: str, nbytes: int) -> list[int]:
    """ATA strings: space padded, two characters per word, the first in the high byte (ATA-6 3.2.9)."""
    raw = text.encode("ascii")[:nbytes].ljust(nbytes, b" ")
    return [(raw[i] << 8) | raw[i + 1] for i in range(0, nbytes, 2)]


class AtaDrive:
    """A hard disk on a channel: an image plus the per-device settings the commands change."""

    atapi = False

    def __init__(self, image: DiskImage, serial: str = "PYEMU00000000"):
        self.image = image
        self.serial = serial
        self.default_geometry = ata_geometry(image.sectors)
        self.reset()

    def reset(self) -> None:
        """Power-on / hardware reset defaults (ATA-6 9.1): default CHS translation, no multiple."""
        self.geometry: Geometry = self.default_geometry
        self.multiple = 0  # 0: READ/WRITE MULTIPLE disabled

    @property
    def sectors(self) -> int:
        return self.image.sectors

    def identify(self) -> bytes:
        """The 512-byte IDENTIFY DEVICE block (ATA-6 8.15)."""
        w = [0] * ID_WORDS
        g, d = self.geometry, self.default_geometry
        total = self.sectors
        w[0] = ID_GENERAL_FIXED
        w[1], w[3], w[6] = d.cylinders, d.heads, d.sectors
        w[10:20] = _ata_string(self.serial, 20)
        w[23:27] = _ata_string(FIRMWARE, 8)
        w[27:47] = _ata_string(MODEL, 40)
        w[47] = 0x8000 | MAX_MULTIPLE
        w[49] = ID_CAP_LBA | ID_CAP_IORDY
        w[50] = ID_CAP2_VALID
        w[51] = 0x0200  # PIO data transfer cycle timing mode 2 (obsolete)
        w[53] = ID_FIELDS_VALID
        w[54], w[55], w[56] = g.cylinders, g.heads, g.sectors
        chs_capacity = min(g.total, total)
        w[57], w[58] = chs_capacity & 0xFFFF, chs_capacity >> 16
        w[59] = (ID_MULTIPLE_VALID | self.multiple) if self.multiple else 0
        lba28 = min(total, LBA28_MAX_SECTORS)
        w[60], w[61] = lba28 & 0xFFFF, lba28 >> 16
        w[64] = ID_PIO_3_4
        w[65] = w[66] = w[67] = w[68] = ID_CYCLE_NS
        w[80] = ID_MAJOR_ATA1_6
        cmdset = ID_CMDSET_VALID | ID_CMDSET_LBA48 | ID_CMDSET_FLUSH | ID_CMDSET_FLUSH_EXT
        w[82], w[83], w[84] = 0, cmdset, ID_CMDSET_VALID
        w[85], w[86], w[87] = 0, cmdset & ~ID_CMDSET_VALID, ID_CMDSET_VALID
        for i in range(4):
            w[100 + i] = (total >> (16 * i)) & 0xFFFF
        data = bytearray()
        for word in w[:255]:
            data += word.to_bytes(2, "little")
        data.append(ID_CHECKSUM_SIGNATURE)
        data.append(-(sum(data)) & 0xFF)  # word 255: all 512 bytes sum to 0 mod 256
        return bytes(data)


# ATAPI (ATA-6 9.10 PACKET protocol; SCSI MMC/SPC command set for the CD-ROM)
CMD_PACKET = 0xA0
ATAPI_SIGNATURE = (0x14, 0xEB)  # LBA mid / high after reset of a packet device (ATA-6 9.12)
IR_COD = 0x01  # interrupt reason (sector count register): command packet
IR_IO = 0x02  # to the host
PACKET_SIZE = 12
CD_BLOCK = 2048
CD_SECTORS_PER_BLOCK = CD_BLOCK // SECTOR_SIZE
FEAT_DMA = 0x01
ID_GENERAL_ATAPI_CDROM = 0x85C0  # word 0: ATAPI, CD-ROM (05h), removable, 12-byte packets
SCSI_TEST_UNIT_READY = 0x00
SCSI_REQUEST_SENSE = 0x03
SCSI_INQUIRY = 0x12
SCSI_START_STOP = 0x1B
SCSI_PREVENT_ALLOW = 0x1E
SCSI_READ_CAPACITY = 0x25
SCSI_READ_10 = 0x28
SCSI_READ_12 = 0xA8
SENSE_NONE, SENSE_NOT_READY, SENSE_ILLEGAL_REQUEST = 0x00, 0x02, 0x05
ASC_MEDIUM_NOT_PRESENT = 0x3A
ASC_INVALID_COMMAND = 0x20
ASC_LBA_OUT_OF_RANGE = 0x21
INQUIRY_CDROM = 0x05
INQUIRY_REMOVABLE = 0x80
INQUIRY_LENGTH = 36
SENSE_LENGTH = 18
SENSE_FIXED_CURRENT = 0x70
MAX_BYTE_COUNT = 0xFFFE


class AtapiDrive:
    """An ATAPI CD-ROM (`-cdrom`): 2048-byte blocks from a raw ISO image (or no medium)."""

    atapi = True

    def __init__(self, image: DiskImage | None = None, serial: str = "PYEMUCD0001"):
        self.image = image
        self.serial = serial
        self.reset()

    def reset(self) -> None:
        self.sense = (SENSE_NONE, 0)
        self.multiple = 0

    @property
    def blocks(self) -> int:
        return self.image.sectors // CD_SECTORS_PER_BLOCK if self.image else 0

    def identify(self) -> bytes:
        """IDENTIFY PACKET DEVICE (ATA-6 8.16)."""
        w = [0] * ID_WORDS
        w[0] = ID_GENERAL_ATAPI_CDROM
        w[10:20] = _ata_string(self.serial, 20)
        w[23:27] = _ata_string(FIRMWARE, 8)
        w[27:47] = _ata_string("pyemu CD-ROM", 40)
        w[49] = ID_CAP_LBA | ID_CAP_IORDY
        w[53] = ID_FIELDS_VALID
        w[64] = ID_PIO_3_4
        w[65] = w[66] = w[67] = w[68] = ID_CYCLE_NS
        w[80] = ID_MAJOR_ATA1_6
        return b"".join(x.to_bytes(2, "little") for x in w)


class AtaChannel:
    """One IDE channel (cable): command block at `base`, control block at `ctrl`, one IRQ line."""

    def __init__(self, base: int, ctrl: int, irq: IrqLine, clock: VirtualClock,
                 master: AtaDrive | None = None, slave: AtaDrive | None = None):
        self.base = base
        self.ctrl = ctrl
        self.irq = irq
        self.clock = clock
        self.drives: list[AtaDrive | None] = [master, slave]
        self.control = 0
        self.reset()

    # -- wiring ----------------------------------------------------------------------------------
    def attach(self, bus: IoBus) -> None:
        bus.register(self.base, COMMAND_BLOCK_PORTS, self.io_read, self.io_write, owner=self)
        bus.register(self.ctrl, 1, self.io_read, self.io_write, owner=self)

    def reset(self) -> None:
        """Hardware reset (RESET-): drives to defaults, signature in the registers, no interrupt."""
        for d in self.drives:
            if d is not None:
                d.reset()
        self.control = 0
        self._soft_reset()
        self.intrq = False
        self._update_irq()

    def _soft_reset(self) -> None:
        """The register state after any reset (ATA-6 9.12): the signature and diagnostic code."""
        self.features = 0
        self.nsector = self.lba_low = 1  # the ATA signature (ATA-6 9.12: 01h 01h 00h 00h 00h)
        self.lba_mid = self.lba_high = 0
        self.hob = [0, 0, 0, 0, 0]  # previous features, count, low, mid, high (48-bit registers)
        self.device = 0
        self.error = DIAG_PASSED
        self.status = ST_DRDY | ST_DSC
        self.buffer = bytearray()
        self.pos = 0
        self.xfer: dict | None = None
        self.signature_fresh = True
        self._load_signature()

    def _load_signature(self) -> None:
        """Each device leaves its own signature after a reset; the channel keeps one register copy,
        so the selected device's signature is shown until the host writes the registers."""
        if self.drive is not None and self.drive.atapi:
            self.lba_mid, self.lba_high = ATAPI_SIGNATURE
            self.status = 0  # packet devices clear DRDY after reset (ATA-6 9.12)
        else:
            self.lba_mid = self.lba_high = 0
            self.status = ST_DRDY | ST_DSC
        self.nsector = self.lba_low = 1

    # -- helpers ---------------------------------------------------------------------------------
    @property
    def selected(self) -> int:
        return 1 if self.device & DEV_DEV else 0

    @property
    def drive(self) -> AtaDrive | None:
        return self.drives[self.selected]

    @property
    def present(self) -> bool:
        return any(d is not None for d in self.drives)

    def _update_irq(self) -> None:
        self.irq.set(self.intrq and not self.control & CTL_NIEN and self.drive is not None)

    def _interrupt(self) -> None:
        self.intrq = True
        self._update_irq()

    def _complete(self) -> None:
        """End a command successfully: idle, DRDY/DSC, INTRQ."""
        self.status = ST_DRDY | ST_DSC
        self.error = 0
        self.xfer = None
        self.buffer = bytearray()
        self.pos = 0
        self._interrupt()

    def _abort(self, error: int = ER_ABRT) -> None:
        """End a command with an error (ATA-6: ERR set, the reason in the error register)."""
        self.status = ST_DRDY | ST_DSC | ST_ERR
        self.error = error
        self.xfer = None
        self.buffer = bytearray()
        self.pos = 0
        self._interrupt()

    # -- addressing ------------------------------------------------------------------------------
    def _lba48_regs(self) -> tuple[int, int]:
        lba = (self.lba_low | self.lba_mid << 8 | self.lba_high << 16
               | self.hob[2] << 24 | self.hob[3] << 32 | self.hob[4] << 40)
        count = self.nsector | self.hob[1] << 8
        return lba, count or 0x10000

    def _address(self) -> int | None:
        """The LBA the registers name (LBA28 or CHS with the current translation); None if bad."""
        drive = self.drive
        if self.device & DEV_LBA:
            return (self.device & DEV_HEAD) << 24 | self.lba_high << 16 | self.lba_mid << 8 | self.lba_low
        g = drive.geometry
        cyl = self.lba_mid | self.lba_high << 8
        head = self.device & DEV_HEAD
        sector = self.lba_low
        if sector < 1 or sector > g.sectors or head >= g.heads or cyl >= g.cylinders:
            return None
        return (cyl * g.heads + head) * g.sectors + sector - 1

    def _set_address(self, lba: int, lba48: bool) -> None:
        """Write `lba` back to the command block (and HOB for 48-bit commands)."""
        if lba48:
            self.lba_low, self.lba_mid, self.lba_high = lba & 0xFF, lba >> 8 & 0xFF, lba >> 16 & 0xFF
            self.hob[2], self.hob[3], self.hob[4] = lba >> 24 & 0xFF, lba >> 32 & 0xFF, lba >> 40 & 0xFF
        elif self.device & DEV_LBA:
            self.lba_low, self.lba_mid, self.lba_high = lba & 0xFF, lba >> 8 & 0xFF, lba >> 16 & 0xFF
            self.device = (self.device & ~DEV_HEAD) | (lba >> 24 & DEV_HEAD)
        else:
            g = self.drive.geometry
            track, s = divmod(lba, g.sectors)
            cyl, head = divmod(track, g.heads)
            self.lba_low, self.lba_mid, self.lba_high = s + 1, cyl & 0xFF, cyl >> 8 & 0xFF
            self.device = (self.device & ~DEV_HEAD) | head

    def _set_count(self, remaining: int, lba48: bool) -> None:
        self.nsector = remaining & 0xFF
        if lba48:
            self.hob[1] = remaining >> 8 & 0xFF

    # -- commands --------------------------------------------------------------------------------
    def _command(self, cmd: int) -> None:
        drive = self.drive
        if drive is None:
            return  # ATA-6 9.16: commands to an absent device 1 are ignored
        self.intrq = False
        self._update_irq()
        if drive.atapi:
            self._atapi_command(cmd)
            return
        if cmd in (CMD_READ_SECTORS, CMD_READ_SECTORS_NR):
            self._start_rw(write=False, lba48=False, block=1)
        elif cmd in (CMD_WRITE_SECTORS, CMD_WRITE_SECTORS_NR):
            self._start_rw(write=True, lba48=False, block=1)
        elif cmd == CMD_READ_SECTORS_EXT:
            self._start_rw(write=False, lba48=True, block=1)
        elif cmd == CMD_WRITE_SECTORS_EXT:
            self._start_rw(write=True, lba48=True, block=1)
        elif cmd in (CMD_READ_MULTIPLE, CMD_WRITE_MULTIPLE, CMD_READ_MULTIPLE_EXT,
                     CMD_WRITE_MULTIPLE_EXT):
            if not drive.multiple:
                self._abort()
                return
            write = cmd in (CMD_WRITE_MULTIPLE, CMD_WRITE_MULTIPLE_EXT)
            lba48 = cmd in (CMD_READ_MULTIPLE_EXT, CMD_WRITE_MULTIPLE_EXT)
            self._start_rw(write=write, lba48=lba48, block=drive.multiple)
        elif cmd in (CMD_READ_VERIFY, CMD_READ_VERIFY_NR, CMD_READ_VERIFY_EXT):
            self._read_verify(lba48=cmd == CMD_READ_VERIFY_EXT)
        elif cmd == CMD_IDENTIFY:
            self._start_data_in(drive.identify())
        elif cmd == CMD_SET_MULTIPLE:
            n = self.nsector
            if n == 0 or (n <= MAX_MULTIPLE and n & (n - 1) == 0):
                drive.multiple = n  # ATA-6 8.39: 0 disables multiple mode
                self._complete()
            else:
                self._abort()
        elif cmd == CMD_SET_FEATURES:
            self._set_features()
        elif cmd == CMD_INITIALIZE_PARAMETERS:
            heads = (self.device & DEV_HEAD) + 1
            spt = self.nsector
            if spt == 0:
                self._abort()
                return
            cyls = min(MAX_LOGICAL_CYLINDERS, drive.sectors // (heads * spt))
            drive.geometry = Geometry(cyls, heads, spt)
            self._complete()
        elif CMD_RECALIBRATE <= cmd <= CMD_RECALIBRATE + 0xF:
            self.lba_mid = self.lba_high = 0
            self._complete()
        elif CMD_SEEK <= cmd <= CMD_SEEK + 0xF:
            lba = self._address()
            if lba is None or lba >= drive.sectors:
                self._abort(ER_IDNF)
            else:
                self._complete()
        elif cmd == CMD_EXECUTE_DIAGNOSTIC:
            self._soft_reset_registers_keep_select()
            self._interrupt()
        elif cmd in (CMD_FLUSH_CACHE, CMD_FLUSH_CACHE_EXT):
            drive.image.flush()
            self._complete()
        elif cmd == CMD_CHECK_POWER_MODE:
            self._complete()
            self.nsector = POWER_MODE_ACTIVE
        elif cmd in (CMD_STANDBY_IMMEDIATE, CMD_IDLE_IMMEDIATE, CMD_STANDBY, CMD_IDLE):
            self._complete()
        elif cmd in (CMD_READ_NATIVE_MAX, CMD_READ_NATIVE_MAX_EXT):
            last = drive.sectors - 1
            lba48 = cmd == CMD_READ_NATIVE_MAX_EXT
            if not lba48:
                if not self.device & DEV_LBA:
                    self._abort()
                    return
                last = min(last, LBA28_MAX_SECTORS - 1)
            self._complete()
            self._set_address(last, lba48)
        else:
            # IDENTIFY PACKET DEVICE, PACKET, DMA commands, anything unknown: ABRT (ATA-6 8.16:
            # a device that does not implement the PACKET feature set aborts IDENTIFY PACKET)
            self._abort()

    def _soft_reset_registers_keep_select(self) -> None:
        """EXECUTE DEVICE DIAGNOSTIC: signature in the registers, diagnostic code in Error."""
        control = self.control
        self._soft_reset()
        self.control = control

    def _set_features(self) -> None:
        sub = self.features
        if sub == SF_SET_TRANSFER_MODE:
            mode = self.nsector
            if mode in (XFER_PIO_DEFAULT, XFER_PIO_DEFAULT_NO_IORDY) or \
                    (mode & ~0x07 == XFER_PIO_FLOW and mode & 0x07 <= MAX_PIO_MODE):
                self._complete()
            else:
                self._abort()  # DMA modes: no bus-master DMA in this controller
        elif sub in SF_ACCEPTED:
            self._complete()
        else:
            self._abort()

    def _range(self, lba48: bool) -> tuple[int, int] | None:
        if lba48:
            lba, count = self._lba48_regs()
        else:
            lba, count = self._address(), self.nsector or 0x100
        if lba is None or lba + count > self.drive.sectors:
            return None
        return lba, count

    def _read_verify(self, lba48: bool) -> None:
        rng = self._range(lba48)
        if rng is None:
            self._abort(ER_IDNF)
            return
        lba, count = rng
        try:
            self.drive.image.read_sectors(lba, count)
        except DiskError:
            self._abort(ER_UNC)
            return
        self._complete()
        self._set_address(lba + count - 1, lba48)
        self._set_count(0, lba48)

    def _start_data_in(self, data: bytes) -> None:
        self.buffer = bytearray(data)
        self.pos = 0
        self.status = ST_DRDY | ST_DSC | ST_DRQ
        self.error = 0
        self._interrupt()

    def _start_rw(self, write: bool, lba48: bool, block: int) -> None:
        rng = self._range(lba48)
        if rng is None:
            self._abort(ER_IDNF)
            return
        lba, count = rng
        if write and self.drive.image.readonly:
            self._abort(ER_ABRT)  # write-protected image
            return
        self.xfer = {"write": write, "lba48": lba48, "block": block, "lba": lba, "remaining": count}
        self.error = 0
        if write:
            self._arm_block(write=True)  # ATA-6 9.8: DRQ for the first block, no interrupt
        else:
            self._next_read_block()

    def _block_size(self) -> int:
        x = self.xfer
        return min(x["block"], x["remaining"])

    def _arm_block(self, write: bool) -> None:
        self.buffer = bytearray(self._block_size() * SECTOR_SIZE)
        self.pos = 0
        self.status = ST_DRDY | ST_DSC | ST_DRQ

    def _next_read_block(self) -> None:
        x = self.xfer
        n = self._block_size()
        try:
            data = self.drive.image.read_sectors(x["lba"], n)
        except DiskError:
            self._set_address(x["lba"], x["lba48"])
            self._abort(ER_UNC)
            return
        self._set_address(x["lba"] + n - 1, x["lba48"])
        x["lba"] += n
        x["remaining"] -= n
        self._set_count(x["remaining"], x["lba48"])
        self._start_data_in(data)

    def _buffer_drained(self) -> None:
        """The guest moved the last byte of a DRQ block."""
        x = self.xfer
        if x is not None and x.get("atapi"):
            self._atapi_drained()
            return
        if x is None:  # IDENTIFY and other single-block data-in: back to idle, no interrupt
            self.status = ST_DRDY | ST_DSC
            self.buffer = bytearray()
            return
        if not x["write"]:
            if x["remaining"]:
                self._next_read_block()
            else:  # ATA-6 9.7: after the last block the device goes idle without an interrupt
                self.status = ST_DRDY | ST_DSC
                self.xfer = None
                self.buffer = bytearray()
            return
        n = len(self.buffer) // SECTOR_SIZE
        try:
            self.drive.image.write_sectors(x["lba"], bytes(self.buffer))
        except DiskWriteProtected:
            self._set_address(x["lba"], x["lba48"])
            self._abort(ER_ABRT)
            return
        except DiskError:
            self._set_address(x["lba"], x["lba48"])
            self._abort(ER_UNC)
            return
        self._set_address(x["lba"] + n - 1, x["lba48"])
        x["lba"] += n
        x["remaining"] -= n
        self._set_count(x["remaining"], x["lba48"])
        if x["remaining"]:
            self._arm_block(write=True)
            self._interrupt()  # ATA-6 9.8: INTRQ when the device is ready for the next block
        else:
            self._complete()

    # -- ATAPI -----------------------------------------------------------------------------------
    def _atapi_command(self, cmd: int) -> None:
        """The ATA commands a packet device takes (ATA-6 6.3): IDENTIFY DEVICE aborts with the
        signature in the registers so the host knows to use IDENTIFY PACKET DEVICE."""
        if cmd == CMD_IDENTIFY_PACKET:
            self._start_data_in(self.drive.identify())
        elif cmd == CMD_PACKET:
            if self.features & FEAT_DMA:
                self._abort()
                return
            limit = (self.lba_mid | self.lba_high << 8) or MAX_BYTE_COUNT
            self.xfer = {"atapi": True, "write": True, "phase": "packet", "limit": limit & ~1,
                         "data": b""}
            self.buffer = bytearray(PACKET_SIZE)
            self.pos = 0
            self.nsector = IR_COD
            self.status = ST_DRDY | ST_DSC | ST_DRQ  # DRQ for the packet, no interrupt
        elif cmd == CMD_EXECUTE_DIAGNOSTIC:
            self._soft_reset_registers_keep_select()
            self._interrupt()
        elif cmd == CMD_DEVICE_RESET:
            self._soft_reset_registers_keep_select()  # no interrupt (ATA-6 8.7)
        elif cmd in (CMD_CHECK_POWER_MODE, CMD_IDLE_IMMEDIATE, CMD_STANDBY_IMMEDIATE, CMD_SET_FEATURES):
            self._complete()
        else:
            self._abort()
            self._load_signature_regs_only()

    def _load_signature_regs_only(self) -> None:
        self.nsector = self.lba_low = 1
        self.lba_mid, self.lba_high = ATAPI_SIGNATURE

    def _atapi_drained(self) -> None:
        x = self.xfer
        if x["phase"] == "packet":
            self._atapi_execute(bytes(self.buffer))
        elif x["data"]:
            self._atapi_send_chunk()
        else:
            self._atapi_done()

    def _atapi_done(self, key: int = SENSE_NONE, asc: int = 0) -> None:
        drive = self.drive
        drive.sense = (key, asc)
        self.xfer = None
        self.buffer = bytearray()
        self.pos = 0
        self.nsector = IR_COD | IR_IO
        self.status = ST_DRDY | ST_DSC | (ST_ERR if key else 0)
        self.error = (key << 4 | ER_ABRT) if key else 0
        self._interrupt()

    def _atapi_send_chunk(self) -> None:
        x = self.xfer
        n = min(len(x["data"]), x["limit"])
        self.buffer, x["data"] = bytearray(x["data"][:n]), x["data"][n:]
        self.pos = 0
        x["write"] = False
        x["phase"] = "data"
        self.lba_mid, self.lba_high = n & 0xFF, n >> 8
        self.nsector = IR_IO
        self.status = ST_DRDY | ST_DSC | ST_DRQ
        self._interrupt()

    def _atapi_execute(self, cdb: bytes) -> None:
        """The SCSI commands a CD-ROM needs to be found and read (SPC-2, MMC-2)."""
        drive = self.drive
        op = cdb[0]
        data = None
        if op == SCSI_REQUEST_SENSE:
            key, asc = drive.sense
            sense = bytearray(SENSE_LENGTH)
            sense[0], sense[2], sense[7], sense[12] = SENSE_FIXED_CURRENT, key, SENSE_LENGTH - 8, asc
            data = bytes(sense[:cdb[4]])
        elif op == SCSI_INQUIRY:
            inq = bytearray(INQUIRY_LENGTH)
            inq[0], inq[1], inq[3], inq[4] = INQUIRY_CDROM, INQUIRY_REMOVABLE, 0x21, INQUIRY_LENGTH - 5
            inq[8:36] = b"pyemu   " + b"CD-ROM".ljust(16) + FIRMWARE.encode().ljust(4)
            data = bytes(inq[:cdb[4]])
        elif op in (SCSI_START_STOP, SCSI_PREVENT_ALLOW):
            data = b""
        elif drive.image is None:
            self._atapi_done(SENSE_NOT_READY, ASC_MEDIUM_NOT_PRESENT)
            return
        elif op == SCSI_TEST_UNIT_READY:
            data = b""
        elif op == SCSI_READ_CAPACITY:
            data = (drive.blocks - 1).to_bytes(4, "big") + CD_BLOCK.to_bytes(4, "big")
        elif op in (SCSI_READ_10, SCSI_READ_12):
            lba = int.from_bytes(cdb[2:6], "big")
            count = int.from_bytes(cdb[7:9] if op == SCSI_READ_10 else cdb[6:10], "big")
            if lba + count > drive.blocks:
                self._atapi_done(SENSE_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE)
                return
            data = drive.image.read_sectors(lba * CD_SECTORS_PER_BLOCK, count * CD_SECTORS_PER_BLOCK)
        if data is None:
            self._atapi_done(SENSE_ILLEGAL_REQUEST, ASC_INVALID_COMMAND)
        elif not data:
            self._atapi_done()
        else:
            self.xfer["data"] = data
            self._atapi_send_chunk()

    # -- data port -------------------------------------------------------------------------------
    def _data_read(self, size: int) -> int:
        if not self.status & ST_DRQ or self.xfer is not None and self.xfer["write"]:
            return (1 << (8 * size)) - 1 if not self.present else 0
        chunk = self.buffer[self.pos:self.pos + size]
        self.pos += size
        value = int.from_bytes(bytes(chunk).ljust(size, b"\0"), "little")
        if self.pos >= len(self.buffer):
            self._buffer_drained()
        return value

    def _data_write(self, size: int, value: int) -> None:
        if not self.status & ST_DRQ or self.xfer is None or not self.xfer["write"]:
            return
        end = min(self.pos + size, len(self.buffer))
        self.buffer[self.pos:end] = value.to_bytes(size, "little")[:end - self.pos]
        self.pos = end
        if self.pos >= len(self.buffer):
            self._buffer_drained()

    def read_data(self, nbytes: int) -> bytes:
        """Bulk PIO read (what `REP INSW` amounts to): up to the end of the current DRQ block."""
        out = bytearray()
        while len(out) < nbytes and self.status & ST_DRQ:
            out += self._data_read(2).to_bytes(2, "little")
        return bytes(out)

    # -- port interface --------------------------------------------------------------------------
    def io_read(self, port: int, size: int) -> int:
        if port == self.ctrl:
            return self._status_value()  # alternate status: no side effects
        reg = port - self.base
        if reg == REG_DATA:
            return self._data_read(size)
        if not self.present:
            return 0xFF
        hob = bool(self.control & CTL_HOB)
        if reg == REG_STATUS_COMMAND:
            value = self._status_value()
            if self.drive is not None:
                self.intrq = False
                self._update_irq()
            return value
        if reg == REG_ERROR_FEATURES:
            return self.error if self.drive is not None else 0
        if reg == REG_SECTOR_COUNT:
            return self.hob[1] if hob else self.nsector
        if reg == REG_LBA_LOW:
            return self.hob[2] if hob else self.lba_low
        if reg == REG_LBA_MID:
            return self.hob[3] if hob else self.lba_mid
        if reg == REG_LBA_HIGH:
            return self.hob[4] if hob else self.lba_high
        return self.device | DEV_OBSOLETE  # REG_DEVICE

    def _status_value(self) -> int:
        if not self.present:
            return 0xFF
        if self.drive is None:
            return 0  # device 0 answers 00h for an absent device 1
        return self.status

    def io_write(self, port: int, size: int, value: int) -> None:
        if port == self.ctrl:
            self._write_control(value & 0xFF)
            return
        reg = port - self.base
        if reg == REG_DATA:
            self._data_write(size, value)
            return
        value &= 0xFF
        if reg != REG_STATUS_COMMAND:
            self.control &= ~CTL_HOB  # ATA-6 7.8: a command block write clears HOB
        if reg != REG_DEVICE:
            self.signature_fresh = False
        if reg == REG_ERROR_FEATURES:
            self.hob[0], self.features = self.features, value
        elif reg == REG_SECTOR_COUNT:
            self.hob[1], self.nsector = self.nsector, value
        elif reg == REG_LBA_LOW:
            self.hob[2], self.lba_low = self.lba_low, value
        elif reg == REG_LBA_MID:
            self.hob[3], self.lba_mid = self.lba_mid, value
        elif reg == REG_LBA_HIGH:
            self.hob[4], self.lba_high = self.lba_high, value
        elif reg == REG_DEVICE:
            self.device = value & ~DEV_OBSOLETE
            if self.signature_fresh and self.status & (ST_BSY | ST_DRQ) == 0:
                self._load_signature()
            self._update_irq()
        elif self.status & ST_BSY == 0:
            self._command(value)

    def _write_control(self, value: int) -> None:
        old = self.control
        self.control = value
        if value & CTL_SRST and not old & CTL_SRST:
            self.status = ST_BSY  # held in reset while SRST is one
            self.intrq = False
        elif old & CTL_SRST and not value & CTL_SRST:
            # ATA-6 9.3: end of software reset; both devices take their defaults and signatures
            for d in self.drives:
                if d is not None:
                    d.multiple = 0
            self._soft_reset()
            self.control = value
        self._update_irq()

    # -- state -----------------------------------------------------------------------------------
    def state(self) -> dict:
        return {
            "features": self.features, "nsector": self.nsector, "lba_low": self.lba_low,
            "lba_mid": self.lba_mid, "lba_high": self.lba_high, "hob": list(self.hob),
            "device": self.device, "control": self.control, "error": self.error,
            "status": self.status, "intrq": self.intrq, "buffer": bytes(self.buffer),
            "pos": self.pos, "xfer": dict(self.xfer) if self.xfer else None,
            "signature_fresh": self.signature_fresh,
            "drives": [None if d is None else {"sense": list(d.sense)} if d.atapi else
                       {"geometry": list(d.geometry), "multiple": d.multiple} for d in self.drives],
        }

    def load_state(self, s: dict) -> None:
        self.features, self.nsector, self.lba_low = s["features"], s["nsector"], s["lba_low"]
        self.lba_mid, self.lba_high, self.hob = s["lba_mid"], s["lba_high"], list(s["hob"])
        self.device, self.control, self.error = s["device"], s["control"], s["error"]
        self.status, self.intrq = s["status"], s["intrq"]
        self.buffer, self.pos = bytearray(s["buffer"]), s["pos"]
        self.xfer = dict(s["xfer"]) if s["xfer"] else None
        self.signature_fresh = s["signature_fresh"]
        for d, ds in zip(self.drives, s["drives"], strict=True):
            if d is not None and d.atapi:
                d.sense = tuple(ds["sense"])
            elif d is not None and ds is not None:
                d.geometry = Geometry(*ds["geometry"])
                d.multiple = ds["multiple"]
        self._update_irq()


class AtaController:
    """The legacy IDE pair: primary and secondary channels with their drives."""

    def __init__(self, clock: VirtualClock, irq_primary: IrqLine, irq_secondary: IrqLine,
                 drives: list[AtaDrive | None] | None = None):
        d = list(drives or []) + [None] * 4
        self.channels = [
            AtaChannel(PRIMARY_BASE, PRIMARY_CTRL, irq_primary, clock, d[0], d[1]),
            AtaChannel(SECONDARY_BASE, SECONDARY_CTRL, irq_secondary, clock, d[2], d[3]),
        ]

    def attach(self, bus: IoBus) -> None:
        for ch in self.channels:
            ch.attach(bus)

    def reset(self) -> None:
        for ch in self.channels:
            ch.reset()

    def state(self) -> dict:
        return {"channels": [ch.state() for ch in self.channels]}

    def load_state(self, s: dict) -> None:
        for ch, cs in zip(self.channels, s["channels"], strict=True):
            ch.load_state(cs)
