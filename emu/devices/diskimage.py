"""Disk image backends for the ATA and floppy controllers, plus CHS geometry helpers.

`DiskImage.open(path, readonly=False, snapshot=False)` opens a raw image: the file is the disk,
sector N at byte offset N * 512. The promises to the user (docs: `-hda`, `-fda`, `-snapshot`):

- Write-through. Each guest write of a run of sectors is one `os.pwrite` of whole sectors into the
  file before the device reports the command done. Nothing is cached in pyemu, so nothing written by
  the guest can be lost if pyemu is killed; `flush()` (ATA FLUSH CACHE) and `close()` also `fsync`.
- Ctrl-C. A KeyboardInterrupt is raised between Python bytecodes, never inside `os.pwrite`; for a
  regular file the kernel completes the whole write or (on error) none of it. So an interrupted run
  leaves the image with each guest write either fully there or absent, which is what a real disk
  gives after a power cut between commands. A multi-sector command whose data blocks arrive one by
  one (ATA PIO WRITE with several DRQ blocks) is written block by block, as a real drive does.
- Read-only. `readonly=True` (a CD-ROM) opens the file O_RDONLY; guest writes raise
  `DiskWriteProtected`, which the controllers turn into ABRT (ATA) or NW (floppy). A file pyemu may
  not write (permissions, a read-only filesystem), opened for writing, is refused with a `DiskError`
  that suggests `-snapshot`, as QEMU refuses it: it is never attached write-protected behind the
  user's back.
- `snapshot=True` (`-snapshot`) opens the file read-only and keeps written sectors in an in-memory
  overlay: the file stays byte-identical, the guest sees its writes until pyemu exits.
- Locking, as QEMU's image locking: an image opened for writing holds an exclusive advisory lock,
  one opened read-only (`readonly`, `snapshot`) a shared one, until it is closed. A second pyemu
  that wants to write an image in use, or to read one being written, is refused with a one-line
  `DiskError` ('Failed to get "write" lock: ...'); readers share. The lock is an open-file-description
  lock on the whole file (`F_OFD_SETLK`, Linux) or else `flock`, both released by the kernel when the
  file is closed or pyemu dies; a filesystem without locks, or Windows, runs without one. QEMU locks
  single bytes with OFD locks, so on Linux the two also keep each other off an image being written
  (a pyemu reader beside a QEMU writer is not detected).
- A missing, empty, too-small, unreadable or non-regular file raises `DiskError` whose message is one
  line (the CLI prints `pyemu: error: <message>`).

A trailing partial sector (a file size that is not a multiple of 512) is not addressable.
"""

from __future__ import annotations

import errno
import os
import stat
import struct
from typing import NamedTuple

SECTOR_SIZE = 512

KIB = 1024
MIB = 1024 * KIB


class DiskError(Exception):
    """A disk image problem, with a one-line message fit for `pyemu: error: ...`."""


class DiskWriteProtected(DiskError):
    """The guest wrote to an image that is read-only."""


class DiskRangeError(DiskError):
    """The guest addressed a sector beyond the end of the image."""


def lock_image(fd: int, exclusive: bool) -> bool:
    """Take an advisory lock on the whole of `fd` without waiting: exclusive (a writer) or shared (a
    reader). False when another open file holds a conflicting lock; True when locked, or when the
    platform or filesystem has no locks (then pyemu runs unlocked, as before)."""
    try:
        import fcntl
    except ImportError:  # Windows: msvcrt's locks are mandatory and exclusive only; run unlocked
        return True
    ofd = getattr(fcntl, "F_OFD_SETLK", None)
    if ofd is not None:
        kind = fcntl.F_WRLCK if exclusive else fcntl.F_RDLCK
        # struct flock {short l_type, l_whence; off_t l_start, l_len; pid_t l_pid} (pid 0 for OFD
        # locks); padded, since the kernel reads sizeof(struct flock) bytes
        arg = struct.pack("hhqqi", kind, os.SEEK_SET, 0, 0, 0) + bytes(8)
        try:
            fcntl.fcntl(fd, ofd, arg)
            return True
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.EACCES):
                return False
            if e.errno != errno.EINVAL:  # EINVAL: a kernel before 3.15; try flock
                return True  # ENOLCK, EOPNOTSUPP...: a filesystem without locks
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except OSError as e:
        return e.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES)
    return True


class DiskImage:
    """A raw image file (or, via `from_bytes`, an in-memory disk for tests and floppies)."""

    def __init__(self, fd: int | None, size: int, path: str = "", readonly: bool = False,
                 snapshot: bool = False, data: bytearray | None = None):
        self.fd = fd
        self.path = path
        self.size = size
        self.sectors = size // SECTOR_SIZE
        self.readonly = readonly
        self.snapshot = snapshot
        self.overlay: dict[int, bytes] = {}  # -snapshot: sector number -> 512 bytes
        self._data = data  # memory-backed image

    # -- opening ---------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str, readonly: bool = False, snapshot: bool = False) -> DiskImage:
        """Open a raw image. See the module docstring for the read-only and snapshot rules."""
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise DiskError(f"disk image '{path}' not found") from None
        except OSError as e:
            raise DiskError(f"cannot open disk image '{path}': {e.strerror}") from None
        if stat.S_ISDIR(st.st_mode):
            raise DiskError(f"disk image '{path}' is a directory")
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISBLK(st.st_mode)):  # a FIFO would block the open
            raise DiskError(f"disk image '{path}' is not a file or a block device")
        want_write = not readonly and not snapshot
        flags = (os.O_RDWR if want_write else os.O_RDONLY) | getattr(os, "O_BINARY", 0)
        try:
            fd = os.open(path, flags)
        except OSError as e:
            if want_write and e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise DiskError(f"cannot open disk image '{path}' for writing: {e.strerror} "
                                "(-snapshot boots it without writing to it)") from None
            raise DiskError(f"cannot open disk image '{path}': {e.strerror}") from None
        try:
            if not lock_image(fd, exclusive=want_write):
                if want_write:
                    raise DiskError(f'Failed to get "write" lock: {path} is in use by another process')
                raise DiskError(f'Failed to get shared "write" lock: {path} is being written by another process')
            size = os.fstat(fd).st_size
            if stat.S_ISBLK(os.fstat(fd).st_mode):
                size = os.lseek(fd, 0, os.SEEK_END)
            if size == 0:
                raise DiskError(f"disk image '{path}' is empty")
            if size < SECTOR_SIZE:
                raise DiskError(f"disk image '{path}' is smaller than one sector ({size} bytes)")
            try:
                os.pread(fd, 1, 0)  # unreadable (e.g. EIO, EISDIR on odd filesystems) fails here
            except OSError as e:
                raise DiskError(f"cannot read disk image '{path}': {e.strerror}") from None
        except BaseException:
            os.close(fd)
            raise
        return cls(fd, size, path=path, readonly=readonly and not snapshot, snapshot=snapshot)

    @classmethod
    def from_bytes(cls, data: bytes | bytearray, readonly: bool = False) -> DiskImage:
        """An in-memory disk (tests, generated floppies). `data` must be whole sectors."""
        if len(data) < SECTOR_SIZE:
            raise DiskError("in-memory disk image is smaller than one sector")
        return cls(None, len(data), path="<memory>", readonly=readonly, data=bytearray(data))

    # -- I/O -------------------------------------------------------------------------------------
    def _check_range(self, lba: int, count: int) -> None:
        if lba < 0 or count < 0 or lba + count > self.sectors:
            raise DiskRangeError(f"sectors {lba}..{lba + count - 1} beyond the end of "
                                 f"'{self.path}' ({self.sectors} sectors)")

    def read_sectors(self, lba: int, count: int) -> bytes:
        """`count` sectors starting at `lba` (overlay sectors win under -snapshot)."""
        self._check_range(lba, count)
        off, n = lba * SECTOR_SIZE, count * SECTOR_SIZE
        if self._data is not None:
            data = bytes(self._data[off:off + n])
        else:
            try:
                data = os.pread(self.fd, n, off)
            except OSError as e:
                raise DiskError(f"read error on '{self.path}': {e.strerror}") from None
            if len(data) < n:  # the file shrank under us: read as zeros
                data += bytes(n - len(data))
        if self.overlay:
            buf = bytearray(data)
            for i in range(count):
                sec = self.overlay.get(lba + i)
                if sec is not None:
                    buf[i * SECTOR_SIZE:(i + 1) * SECTOR_SIZE] = sec
            data = bytes(buf)
        return data

    def write_sectors(self, lba: int, data: bytes) -> None:
        """Write whole sectors at `lba`: one `os.pwrite`, done when this returns (write-through)."""
        if len(data) % SECTOR_SIZE:
            raise ValueError("write_sectors takes whole sectors")
        count = len(data) // SECTOR_SIZE
        if self.readonly:
            raise DiskWriteProtected(f"disk image '{self.path}' is read-only")
        self._check_range(lba, count)
        if self.snapshot:
            for i in range(count):
                self.overlay[lba + i] = bytes(data[i * SECTOR_SIZE:(i + 1) * SECTOR_SIZE])
            return
        off = lba * SECTOR_SIZE
        if self._data is not None:
            self._data[off:off + len(data)] = data
            return
        view = memoryview(bytes(data))
        try:
            while view:  # a short write on a regular file means an error is coming: retry the rest
                done = os.pwrite(self.fd, view, off)
                view, off = view[done:], off + done
        except OSError as e:
            raise DiskError(f"write error on '{self.path}': {e.strerror}") from None

    def flush(self) -> None:
        """Make written sectors durable (ATA FLUSH CACHE): fsync the file."""
        if self.fd is not None and not self.readonly and not self.snapshot:
            try:
                os.fsync(self.fd)
            except OSError:
                pass  # e.g. a pipe or a filesystem without fsync: the data is already in the file

    def close(self) -> None:
        """Flush and close; the snapshot overlay is discarded."""
        if self.fd is not None:
            self.flush()
            os.close(self.fd)
            self.fd = None
        self.overlay.clear()

    def __enter__(self) -> DiskImage:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "snapshot" if self.snapshot else "ro" if self.readonly else "rw"
        return f"DiskImage({self.path!r}, {self.sectors} sectors, {mode})"


# -- geometry ------------------------------------------------------------------------------------

class ImageSlice:
    """A read-only run of another image's sectors, seen as a disk of its own: the El Torito
    emulated floppy or hard disk inside a CD image (El Torito 1.0, section 5)."""

    def __init__(self, base: DiskImage, first: int, sectors: int):
        self.base, self.first = base, first
        self.sectors = max(0, min(sectors, base.sectors - first))
        self.size = sectors * SECTOR_SIZE  # the medium's nominal size (a short tail reads as zeros)
        self.path = f"{base.path} (emulated, sectors {first}..{first + sectors - 1})"
        self.readonly, self.snapshot = True, False

    def read_sectors(self, lba: int, count: int) -> bytes:
        if lba < 0 or count < 0 or lba + count > self.size // SECTOR_SIZE:
            raise DiskRangeError(f"sectors {lba}..{lba + count - 1} beyond the end of {self.path}")
        have = max(0, min(count, self.sectors - lba))
        data = self.base.read_sectors(self.first + lba, have) if have else b""
        return data + bytes((count - have) * SECTOR_SIZE)

    def write_sectors(self, lba: int, data: bytes) -> None:
        raise DiskWriteProtected(f"{self.path} is read-only")

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class Geometry(NamedTuple):
    cylinders: int
    heads: int
    sectors: int  # sectors per track

    @property
    def total(self) -> int:
        return self.cylinders * self.heads * self.sectors


class FloppyFormat(NamedTuple):
    name: str
    geometry: Geometry
    data_rate_kbps: tuple[int, ...]  # rates at which the medium reads (5.25" DD: 250 or 300)
    drive_type: int  # CMOS register 10h nibble of the drive that reads it


DRIVE_360K, DRIVE_1_2M, DRIVE_720K, DRIVE_1_44M, DRIVE_2_88M = 1, 2, 3, 4, 5  # CMOS 10h codes

# The IBM PC formats, by image size in bytes.
FLOPPY_FORMATS: dict[int, FloppyFormat] = {
    160 * KIB: FloppyFormat("160K", Geometry(40, 1, 8), (250, 300), DRIVE_360K),
    180 * KIB: FloppyFormat("180K", Geometry(40, 1, 9), (250, 300), DRIVE_360K),
    320 * KIB: FloppyFormat("320K", Geometry(40, 2, 8), (250, 300), DRIVE_360K),
    360 * KIB: FloppyFormat("360K", Geometry(40, 2, 9), (250, 300), DRIVE_360K),
    720 * KIB: FloppyFormat("720K", Geometry(80, 2, 9), (250,), DRIVE_720K),
    1200 * KIB: FloppyFormat("1.2M", Geometry(80, 2, 15), (500,), DRIVE_1_2M),
    1440 * KIB: FloppyFormat("1.44M", Geometry(80, 2, 18), (500,), DRIVE_1_44M),
    2880 * KIB: FloppyFormat("2.88M", Geometry(80, 2, 36), (1000,), DRIVE_2_88M),
}


DRIVE_MEDIA = ("360K", "720K", "1.2M", "1.44M", "2.88M")  # each drive type's native format


def floppy_format(size: int) -> FloppyFormat | None:
    """The standard floppy format of an image of `size` bytes, or None."""
    return FLOPPY_FORMATS.get(size)


def floppy_medium(size: int) -> FloppyFormat | None:
    """The format a drive reads an image of `size` bytes as: its own standard format, else the
    smallest standard format that holds it (a short image reads as zeros past its end, as QEMU
    treats odd-sized floppy images such as GRUB's rescue floppy), else None (too big)."""
    exact = FLOPPY_FORMATS.get(size)
    if exact is not None:
        return exact
    fits = [fmt for total, fmt in FLOPPY_FORMATS.items() if total >= size and fmt.name in DRIVE_MEDIA]
    return min(fits, key=lambda f: f.geometry.total) if fits and size > 0 else None


def floppy_geometry(size: int) -> Geometry | None:
    fmt = FLOPPY_FORMATS.get(size)
    return fmt.geometry if fmt else None


ATA_HEADS = 16  # the default geometry an ATA drive reports (ATA-6 6.2.1, IDENTIFY words 1, 3, 6)
ATA_SECTORS = 63
ATA_MAX_CYLINDERS = 16383  # drives of 8.4 GB and more report 16383/16/63
BIOS_MAX_CYLINDERS = 1024  # INT 13h: 10-bit cylinder numbers
LBA_ASSIST_HEADS = (16, 32, 64, 128, 255)


def ata_geometry(sectors: int) -> Geometry:
    """The default CHS geometry an ATA drive reports in IDENTIFY words 1/3/6: 16 heads, 63 sectors.

    Images smaller than one 16x63 cylinder get fewer heads so that at least one cylinder exists.
    """
    heads, spt = ATA_HEADS, ATA_SECTORS
    if sectors < heads * spt:
        spt = min(ATA_SECTORS, max(1, sectors))
        heads = max(1, min(ATA_HEADS, sectors // spt))
    return Geometry(max(1, min(ATA_MAX_CYLINDERS, sectors // (heads * spt))), heads, spt)


def lba_assist_geometry(sectors: int) -> Geometry:
    """The BIOS's INT 13h geometry for a disk (LBA-assist translation).

    63 sectors per track; the head count is the smallest of 16, 32, 64, 128, 255 for which the disk
    fits in 1024 cylinders (16 heads covers 504 MiB, 32 1008 MiB, 64 2016 MiB, 128 4032 MiB); the
    cylinder count is capped at 1024 (the rest of a bigger disk is reachable by LBA only).
    """
    for heads in LBA_ASSIST_HEADS:
        if sectors <= BIOS_MAX_CYLINDERS * heads * ATA_SECTORS:
            break
    spt = ATA_SECTORS
    if sectors < heads * spt:  # tiny images: the ATA guess
        return ata_geometry(sectors)
    return Geometry(max(1, min(BIOS_MAX_CYLINDERS, sectors // (heads * spt))), heads, spt)


def chs_to_lba(c: int, h: int, s: int, geometry: Geometry) -> int:
    """Sector numbers start at 1: LBA = (C * heads + H) * spt + S - 1."""
    return (c * geometry.heads + h) * geometry.sectors + s - 1


def lba_to_chs(lba: int, geometry: Geometry) -> tuple[int, int, int]:
    track, s0 = divmod(lba, geometry.sectors)
    c, h = divmod(track, geometry.heads)
    return c, h, s0 + 1
