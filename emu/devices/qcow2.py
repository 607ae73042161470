"""qcow2 images (versions 2 and 3), written from QEMU's format description (docs/interop/qcow2.txt).

`Qcow2Image.open(path, readonly=False, snapshot=False)` gives an object with the raw `DiskImage`'s
interface (`size`, `sectors`, `path`, `readonly`, `snapshot`, `read_sectors`, `write_sectors`,
`flush`, `close`), so the ATA, floppy and BIOS code use it unchanged. The file itself is opened by
`DiskImage.open` (same error messages, read-only detection) and used through its descriptor.

The layout, in clusters of 2**cluster_bits bytes: a header; a two-level map from guest clusters to
host clusters (an L1 table of L2 table offsets, L2 tables of cluster descriptors); and 16-bit
reference counts for every host cluster (a refcount table of refcount block offsets). A guest
cluster is unallocated (zeros, or the backing file's data), a zero cluster (v3), a normal cluster
(its data at a host offset) or a compressed cluster (raw deflate, read only: a write reallocates it).

Crash safety. Every change is written through (`os.pwrite`, nothing is cached dirty) in an order
that keeps the file consistent after a kill at any point, at worst with leaked clusters:

1. a new cluster's contents (guest data, a zeroed L2 table or refcount block) are written first;
2. then its reference count is raised (a new refcount block is referenced from the table only
   after it holds its counts);
3. then the L2 entry (or L1 entry, refcount table entry, header field) is pointed at it;
4. only then is the cluster it replaced (a compressed cluster, a copy) dereferenced.

New clusters go at the end of the file, and a cluster whose count is not zero (left by a kill
between 2 and 3) is never handed out again. Between the steps (once per guest write that allocates,
not per cluster) the file is fdatasync'ed (`ordered_sync`, on by default), so the disk sees the
writes in this order too and a power cut leaves the same consistent states as a kill. `flush()`
(ATA FLUSH CACHE) fsyncs the file: what was written before it survives a power cut.

`snapshot=True` (`-snapshot`) opens the file read-only and keeps written sectors in an in-memory
overlay, as the raw image does. Images this module cannot write safely (refcount widths other than
16 bits, internal snapshots, the dirty or corrupt bits) open only read-only (or with -snapshot): a
writable open fails with a one-line `DiskError`; unknown incompatible features and encryption refuse
any open. Persistent dirty bitmaps, which pyemu does not update, are removed by the first write (the
spec's autoclear rule; their clusters are released, so the image stays leak-free).
"""

from __future__ import annotations

import os
import struct
import zlib

from emu.devices.diskimage import SECTOR_SIZE, DiskError, DiskImage, DiskRangeError, DiskWriteProtected

MAGIC = b"QFI\xfb"
HEADER_V2_SIZE = 72
HEADER_V3_SIZE = 104

# incompatible feature bits
INCOMPAT_DIRTY = 1 << 0
INCOMPAT_CORRUPT = 1 << 1
INCOMPAT_DATA_FILE = 1 << 2
INCOMPAT_COMPRESSION = 1 << 3
INCOMPAT_EXTL2 = 1 << 4
INCOMPAT_KNOWN = INCOMPAT_DIRTY | INCOMPAT_CORRUPT | INCOMPAT_COMPRESSION
INCOMPAT_NAMES = {0: "dirty bit", 1: "corrupt bit", 2: "external data file", 3: "compression type",
                  4: "extended L2 entries"}

# header extensions
EXT_END = 0
EXT_BACKING_FORMAT = 0xE2792ACA
EXT_FEATURE_NAMES = 0x6803F857
EXT_BITMAPS = 0x23852875
EXT_ENCRYPTION = 0x0537BE77
EXT_DATA_FILE = 0x44415441

# L1/L2 entry bits
OFLAG_COPIED = 1 << 63
OFLAG_COMPRESSED = 1 << 62
OFLAG_ZERO = 1 << 0
OFFSET_MASK = 0x00FF_FFFF_FFFF_FE00  # bits 9-55
L1_OFFSET_MASK = OFFSET_MASK

MAX_BACKING_DEPTH = 16
L2_CACHE_TABLES = 64


def is_qcow2(path: str) -> bool:
    """True when the file starts with the qcow2 magic (unreadable files are not qcow2)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == MAGIC
    except OSError:
        return False


class Header:
    """The parsed header and its extensions (all offsets in bytes)."""

    def __init__(self, raw: bytes, path: str):
        if len(raw) < HEADER_V2_SIZE or raw[:4] != MAGIC:
            raise DiskError(f"'{path}' is not a qcow2 image")
        (_, self.version, self.backing_file_offset, self.backing_file_size, self.cluster_bits, self.size,
         self.crypt_method, self.l1_size, self.l1_table_offset, self.refcount_table_offset,
         self.refcount_table_clusters, self.nb_snapshots, self.snapshots_offset) = \
            struct.unpack_from(">4sIQIIQIIQQIIQ", raw, 0)
        if self.version not in (2, 3):
            raise DiskError(f"'{path}': qcow2 version {self.version} is not supported (2 and 3 are)")
        self.incompatible = self.compatible = self.autoclear = 0
        self.refcount_order = 4
        self.header_length = HEADER_V2_SIZE
        self.compression_type = 0
        if self.version == 3:
            if len(raw) < HEADER_V3_SIZE:
                raise DiskError(f"'{path}': truncated qcow2 header")
            (self.incompatible, self.compatible, self.autoclear, self.refcount_order,
             self.header_length) = struct.unpack_from(">QQQII", raw, 72)
            if self.header_length < HEADER_V3_SIZE or self.header_length > len(raw):
                raise DiskError(f"'{path}': bad qcow2 header length {self.header_length}")
            if self.header_length > 104:
                self.compression_type = raw[104]
        if not 9 <= self.cluster_bits <= 21:
            raise DiskError(f"'{path}': bad qcow2 cluster size 2**{self.cluster_bits}")
        if self.refcount_order > 6:
            raise DiskError(f"'{path}': bad qcow2 refcount order {self.refcount_order}")
        self.cluster_size = 1 << self.cluster_bits
        self.backing_format = ""
        self.feature_names: dict[tuple[int, int], str] = {}
        self.extensions: list[int] = []
        self.encryption_ext = False
        self.data_file_ext = False
        off = self.header_length
        while off + 8 <= min(len(raw), self.cluster_size):
            etype, elen = struct.unpack_from(">II", raw, off)
            if etype == EXT_END:
                break
            data = raw[off + 8:off + 8 + elen]
            self.extensions.append(etype)
            if etype == EXT_BACKING_FORMAT:
                self.backing_format = data.decode("utf-8", "replace")
            elif etype == EXT_FEATURE_NAMES:
                for i in range(0, len(data) - 47, 48):
                    kind, bit = data[i], data[i + 1]
                    self.feature_names[(kind, bit)] = data[i + 2:i + 48].rstrip(b"\0").decode("utf-8", "replace")
            elif etype == EXT_ENCRYPTION:
                self.encryption_ext = True
            elif etype == EXT_DATA_FILE:
                self.data_file_ext = True
            off += 8 + ((elen + 7) & ~7)
        self.backing_file = ""
        if self.backing_file_offset:
            end = self.backing_file_offset + self.backing_file_size
            if self.backing_file_size > 1023 or end > len(raw):
                raise DiskError(f"'{path}': bad qcow2 backing file name")
            self.backing_file = raw[self.backing_file_offset:end].decode("utf-8", "replace")

    def unknown_incompatible(self) -> int:
        return self.incompatible & ~INCOMPAT_KNOWN


def read_header(fd: int, path: str) -> Header:
    head = os.pread(fd, 4096, 0)
    if len(head) >= 24 and head[:4] == MAGIC:
        cluster_bits = struct.unpack_from(">I", head, 20)[0]
        if 12 < cluster_bits <= 21:  # extensions and the backing name live in the first cluster
            head = os.pread(fd, 1 << cluster_bits, 0)
    return Header(head, path)


class Qcow2Image:
    """A qcow2 image file, with the raw image's sector interface."""

    def __init__(self, file: DiskImage, header: Header, snapshot: bool, backing):
        self.file = file
        self.fd = file.fd
        self.h = header
        self.path = file.path
        self.snapshot = snapshot
        self.readonly = file.readonly and not snapshot
        self.size = header.size
        self.sectors = header.size // SECTOR_SIZE
        self.backing = backing
        self.overlay: dict[int, bytes] = {}
        cs = self.cluster_size = header.cluster_size
        self.cluster_bits = header.cluster_bits
        self.l2_entries = cs // 8
        self.l2_bits = self.cluster_bits - 3
        self.refcount_bits = 1 << header.refcount_order
        self.rc_entries = cs * 8 // self.refcount_bits  # counts per refcount block
        self.csize_shift = 62 - (self.cluster_bits - 8)
        self.csize_mask = (1 << (self.cluster_bits - 8)) - 1
        self.coffset_mask = (1 << self.csize_shift) - 1
        self.l1 = list(struct.unpack(f">{header.l1_size}Q",
                                     self._pread(header.l1_table_offset, header.l1_size * 8)))
        self._l2_cache: dict[int, list[int]] = {}
        self._rc_cache: dict[int, bytearray] = {}
        self.rc_table: list[int] = []
        self._next_free = 0
        self._write_ready = False
        self.ordered_sync = True  # fdatasync at each ordering point (see the module docstring)
        need_l1 = -(-self.size // (cs * self.l2_entries))
        if header.l1_size < need_l1:
            raise DiskError(f"'{self.path}': qcow2 L1 table too small for the virtual size")

    # -- opening ---------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str, readonly: bool = False, snapshot: bool = False, _depth: int = 0) -> Qcow2Image:
        file = DiskImage.open(path, readonly=readonly or snapshot)
        try:
            try:
                header = read_header(file.fd, path)
            except OSError as e:
                raise DiskError(f"cannot read disk image '{path}': {e.strerror}") from None
            cls._check_features(header, path, writable=not file.readonly)
            backing = None
            if header.backing_file:
                backing = cls._open_backing(path, header, _depth)
            try:
                img = cls(file, header, snapshot, backing)
            except BaseException:
                if backing is not None:
                    backing.close()
                raise
        except BaseException:
            file.close()
            raise
        return img

    @staticmethod
    def _check_features(h: Header, path: str, writable: bool) -> None:
        if h.crypt_method or h.encryption_ext:
            raise DiskError(f"'{path}': encrypted qcow2 images are not supported")
        unknown = h.unknown_incompatible()
        if unknown:
            bits = [b for b in range(64) if unknown >> b & 1]
            names = ", ".join(h.feature_names.get((0, b)) or INCOMPAT_NAMES.get(b) or f"bit {b}" for b in bits)
            raise DiskError(f"'{path}': unsupported qcow2 feature(s): {names}")
        if h.incompatible & INCOMPAT_COMPRESSION and h.compression_type != 0:
            raise DiskError(f"'{path}': qcow2 compression type {h.compression_type} is not supported (zlib is)")
        if not writable:
            return
        if h.incompatible & INCOMPAT_CORRUPT:
            raise DiskError(f"'{path}': qcow2 image is marked corrupt; open it read-only or repair it "
                            "(qemu-img check -r all)")
        if h.incompatible & INCOMPAT_DIRTY:
            raise DiskError(f"'{path}': qcow2 image is dirty (lazy refcounts); repair it first "
                            "(qemu-img check -r all) or open it read-only")
        if h.refcount_order != 4:
            raise DiskError(f"'{path}': cannot write qcow2 images with {1 << h.refcount_order}-bit refcounts "
                            "(16-bit only); open it read-only")
        if h.nb_snapshots:
            raise DiskError(f"'{path}': cannot write qcow2 images with internal snapshots; open it read-only")

    @staticmethod
    def _open_backing(path: str, h: Header, depth: int):
        if depth >= MAX_BACKING_DEPTH:
            raise DiskError(f"'{path}': backing file chain too long (a loop?)")
        name = h.backing_file
        if "://" in name or name.startswith("json:"):
            raise DiskError(f"'{path}': backing file '{name}' is not a file")
        bpath = name if os.path.isabs(name) else os.path.join(os.path.dirname(os.path.abspath(path)), name)
        fmt = h.backing_format or None
        if fmt not in (None, "raw", "qcow2"):
            raise DiskError(f"'{path}': backing file format '{fmt}' is not supported (raw, qcow2)")
        if fmt is None:
            fmt = "qcow2" if is_qcow2(bpath) else "raw"
        try:
            if fmt == "qcow2":
                return Qcow2Image.open(bpath, readonly=True, _depth=depth + 1)
            return DiskImage.open(bpath, readonly=True)
        except DiskError as e:
            raise DiskError(f"'{path}': backing file: {e}") from None

    # -- low level -------------------------------------------------------------------------------
    def _pread(self, off: int, n: int) -> bytes:
        try:
            data = os.pread(self.fd, n, off)
        except OSError as e:
            raise DiskError(f"read error on '{self.path}': {e.strerror}") from None
        if len(data) < n:
            data += bytes(n - len(data))
        return data

    def _pwrite(self, off: int, data: bytes) -> None:
        view = memoryview(bytes(data))
        try:
            while view:
                done = os.pwrite(self.fd, view, off)
                view, off = view[done:], off + done
        except OSError as e:
            raise DiskError(f"write error on '{self.path}': {e.strerror}") from None

    def _barrier(self) -> None:
        """What was written so far reaches the disk before what is written next (power-cut order)."""
        if self.ordered_sync:
            try:
                os.fdatasync(self.fd)
            except (OSError, AttributeError):
                pass

    def _corrupt(self, what: str) -> DiskError:
        return DiskError(f"'{self.path}': corrupt qcow2 image: {what}")

    def _l2_table(self, l2_off: int) -> list[int]:
        table = self._l2_cache.get(l2_off)
        if table is None:
            if l2_off % self.cluster_size:
                raise self._corrupt(f"L2 table offset {l2_off:#x} is not cluster aligned")
            table = list(struct.unpack(f">{self.l2_entries}Q", self._pread(l2_off, self.cluster_size)))
            if len(self._l2_cache) >= L2_CACHE_TABLES:
                self._l2_cache.pop(next(iter(self._l2_cache)))
            self._l2_cache[l2_off] = table
        return table

    def _l2_entry(self, gcluster: int) -> tuple[int, int]:
        """(L2 table offset or 0, L2 entry or 0) of guest cluster `gcluster`."""
        l1_index, l2_index = gcluster >> self.l2_bits, gcluster & (self.l2_entries - 1)
        l2_off = self.l1[l1_index] & L1_OFFSET_MASK
        if not l2_off:
            return 0, 0
        return l2_off, self._l2_table(l2_off)[l2_index]

    # -- reading ---------------------------------------------------------------------------------
    def _backing_read(self, off: int, n: int) -> bytes:
        if self.backing is None:
            return bytes(n)
        lba, count = off // SECTOR_SIZE, n // SECTOR_SIZE
        have = max(0, min(count, self.backing.sectors - lba))
        data = self.backing.read_sectors(lba, have) if have else b""
        return data + bytes(n - len(data))

    def _read_compressed(self, entry: int) -> bytes:
        host = entry & self.coffset_mask
        nsectors = ((entry >> self.csize_shift) & self.csize_mask) + 1
        length = (host & ~(SECTOR_SIZE - 1)) + nsectors * SECTOR_SIZE - host
        raw = self._pread(host, length)
        try:
            out = zlib.decompressobj(-15).decompress(raw, self.cluster_size)
        except zlib.error as e:
            raise self._corrupt(f"compressed cluster at {host:#x}: {e}") from None
        if len(out) != self.cluster_size:
            raise self._corrupt(f"compressed cluster at {host:#x} is short")
        return out

    def _read_in_cluster(self, gcluster: int, in_off: int, n: int) -> bytes:
        _, entry = self._l2_entry(gcluster)
        gbase = gcluster << self.cluster_bits
        if entry & OFLAG_COMPRESSED:
            return self._read_compressed(entry)[in_off:in_off + n]
        if self.h.version >= 3 and entry & OFLAG_ZERO:
            return bytes(n)
        host = entry & OFFSET_MASK
        if not host:
            return self._backing_read(gbase + in_off, n)
        if host % self.cluster_size:
            raise self._corrupt(f"data cluster offset {host:#x} is not cluster aligned")
        return self._pread(host + in_off, n)

    def read_bytes(self, off: int, n: int) -> bytes:
        """`n` bytes of the guest disk at `off` (sector aligned), without the -snapshot overlay."""
        out = []
        cs = self.cluster_size
        while n > 0:
            gcluster, in_off = divmod(off, cs)
            chunk = min(n, cs - in_off)
            out.append(self._read_in_cluster(gcluster, in_off, chunk))
            off, n = off + chunk, n - chunk
        return b"".join(out)

    def _check_range(self, lba: int, count: int) -> None:
        if lba < 0 or count < 0 or lba + count > self.sectors:
            raise DiskRangeError(f"sectors {lba}..{lba + count - 1} beyond the end of "
                                 f"'{self.path}' ({self.sectors} sectors)")

    def read_sectors(self, lba: int, count: int) -> bytes:
        """`count` sectors starting at `lba` (overlay sectors win under -snapshot)."""
        self._check_range(lba, count)
        data = self.read_bytes(lba * SECTOR_SIZE, count * SECTOR_SIZE)
        if self.overlay:
            buf = bytearray(data)
            for i in range(count):
                sec = self.overlay.get(lba + i)
                if sec is not None:
                    buf[i * SECTOR_SIZE:(i + 1) * SECTOR_SIZE] = sec
            data = bytes(buf)
        return data

    def is_allocated(self, gcluster: int) -> bool:
        """Whether guest cluster `gcluster` is stored in this file (not zeros/backing)."""
        _, entry = self._l2_entry(gcluster)
        if entry & OFLAG_COMPRESSED:
            return True
        if self.h.version >= 3 and entry & OFLAG_ZERO:
            return False
        return bool(entry & OFFSET_MASK)

    # -- refcounts -------------------------------------------------------------------------------
    def load_refcount_table(self) -> None:
        h = self.h
        n = h.refcount_table_clusters * self.cluster_size // 8
        self.rc_table = list(struct.unpack(f">{n}Q", self._pread(h.refcount_table_offset, n * 8)))

    def _prepare_write(self) -> None:
        """Load the refcount table and find the end of the file; clear unknown autoclear bits."""
        if self._write_ready:
            return
        h = self.h
        self.load_refcount_table()
        end = os.fstat(self.fd).st_size
        self._next_free = -(-end // self.cluster_size)
        if h.version >= 3 and (h.autoclear or EXT_BITMAPS in h.extensions):
            self._drop_bitmaps()
        self._write_ready = True

    def _drop_bitmaps(self) -> None:
        """Writes that do not update the persistent dirty bitmaps make them stale: remove them.

        The spec's minimum is to clear the autoclear bits (readers then ignore the bitmaps, and
        their clusters show as leaks); here the bitmaps extension goes too, in the same header
        write, and then its clusters are released, so the image stays leak-free."""
        h, cs = self.h, self.cluster_size
        head = bytearray(self._pread(0, cs))
        ranges = bitmap_ranges(self.fd, h, head) if h.autoclear & 1 else []
        exts, end, off = [], h.header_length, h.header_length
        while off + 8 <= cs:
            etype, elen = struct.unpack_from(">II", head, off)
            size = 8 + ((elen + 7) & ~7)
            if etype == EXT_END:
                end = off + 8
                break
            if etype != EXT_BITMAPS:
                exts.append(bytes(head[off:off + size]))
            off += size
        new = b"".join(exts) + struct.pack(">II", EXT_END, 0)
        head[h.header_length:end] = new + bytes(end - h.header_length - len(new))
        struct.pack_into(">Q", head, 88, 0)
        self._pwrite(0, head[:end])  # one write: the autoclear bits and the extension go together
        self._barrier()
        h.autoclear = 0
        h.extensions = [e for e in h.extensions if e != EXT_BITMAPS]
        for roff, rlen in ranges:
            for hc in range(roff // cs, (roff + rlen - 1) // cs + 1):
                if self.refcount(hc):
                    self._add_refcount(hc, -1)

    def _rc_block(self, block_off: int) -> bytearray:
        blk = self._rc_cache.get(block_off)
        if blk is None:
            if block_off % self.cluster_size:
                raise self._corrupt(f"refcount block offset {block_off:#x} is not cluster aligned")
            blk = bytearray(self._pread(block_off, self.cluster_size))
            if len(self._rc_cache) >= L2_CACHE_TABLES:
                self._rc_cache.pop(next(iter(self._rc_cache)))
            self._rc_cache[block_off] = blk
        return blk

    def refcount(self, hcluster: int) -> int:
        bi, idx = divmod(hcluster, self.rc_entries)
        if bi >= len(self.rc_table) or not self.rc_table[bi] & OFFSET_MASK:
            return 0
        blk = self._rc_block(self.rc_table[bi] & OFFSET_MASK)
        bits = self.refcount_bits
        if bits == 16:
            return blk[idx * 2] << 8 | blk[idx * 2 + 1]
        if bits < 8:  # packed, the lowest bits first
            return blk[idx * bits // 8] >> (idx * bits % 8) & ((1 << bits) - 1)
        nbytes = bits // 8
        return int.from_bytes(blk[idx * nbytes:(idx + 1) * nbytes], "big")

    def _set_refcount(self, hcluster: int, value: int) -> None:
        if not 0 <= value <= 0xFFFF:
            raise self._corrupt(f"refcount of cluster {hcluster} out of range")
        bi, idx = divmod(hcluster, self.rc_entries)
        block_off = self._rc_block_offset(bi)
        blk = self._rc_block(block_off)
        struct.pack_into(">H", blk, idx * 2, value)
        self._pwrite(block_off + idx * 2, blk[idx * 2:idx * 2 + 2])

    def _add_refcount(self, hcluster: int, delta: int) -> None:
        self._set_refcount(hcluster, self.refcount(hcluster) + delta)

    def _rc_block_offset(self, bi: int) -> int:
        """The refcount block for block index `bi`, made (and referenced) if missing."""
        if bi >= len(self.rc_table):
            self._grow_rc_table(bi)
        off = self.rc_table[bi] & OFFSET_MASK
        if off:
            return off
        off = self._find_free(1)
        hc = off // self.cluster_size
        blk = bytearray(self.cluster_size)
        if hc // self.rc_entries == bi:  # the block counts itself
            struct.pack_into(">H", blk, (hc % self.rc_entries) * 2, 1)
            self._pwrite(off, blk)
            self._next_free = max(self._next_free, hc + 1)
        else:
            self._pwrite(off, blk)
            self._next_free = max(self._next_free, hc + 1)
            self._add_refcount(hc, 1)  # in another block (made first if needed)
        self._rc_cache[off] = blk
        self._barrier()
        self._pwrite(self.h.refcount_table_offset + bi * 8, struct.pack(">Q", off))
        self.rc_table[bi] = off
        return off

    def _grow_rc_table(self, bi: int) -> None:
        """A bigger refcount table: written at the end of the file, then switched to in the header."""
        cs = self.cluster_size
        old_off, old_clusters = self.h.refcount_table_offset, self.h.refcount_table_clusters
        entries = max(bi + 1, len(self.rc_table) * 2, 2 * cs // 8)
        clusters = -(-entries * 8 // cs)
        new_off = self._find_free(clusters)
        first = new_off // cs
        self._next_free = max(self._next_free, first + clusters)
        table = self.rc_table + [0] * (clusters * cs // 8 - len(self.rc_table))
        self._pwrite(new_off, struct.pack(f">{len(table)}Q", *table))
        # until the header switches, new blocks are recorded in the new table only
        self.rc_table = table
        self.h.refcount_table_offset = new_off
        for hc in range(first, first + clusters):
            self._add_refcount(hc, 1)
        self._barrier()
        self._pwrite(48, struct.pack(">QI", new_off, clusters))
        self._barrier()
        self.h.refcount_table_clusters = clusters
        for hc in range(old_off // cs, old_off // cs + old_clusters):
            self._add_refcount(hc, -1)

    def _find_free(self, n: int) -> int:
        """Offset of `n` free clusters at the end of the file (counted ones, left by a kill, are skipped)."""
        start = self._next_free
        while True:
            for i in range(n):
                if self.refcount(start + i):
                    start += i + 1
                    break
            else:
                return start * self.cluster_size

    def _alloc_cluster(self, data: bytes) -> int:
        """Write `data` (one cluster) to a new host cluster and count it: the caller then points at it."""
        off = self._find_free(1)
        hc = off // self.cluster_size
        self._pwrite(off, data)
        self._next_free = max(self._next_free, hc + 1)
        self._add_refcount(hc, 1)
        return off

    def _release(self, entry: int) -> None:
        """Drop the reference an L2 entry held (after the entry no longer holds it)."""
        cs = self.cluster_size
        if entry & OFLAG_COMPRESSED:
            host = entry & self.coffset_mask
            nsectors = ((entry >> self.csize_shift) & self.csize_mask) + 1
            end = (host & ~(SECTOR_SIZE - 1)) + nsectors * SECTOR_SIZE
            for hc in range(host // cs, (end - 1) // cs + 1):
                self._add_refcount(hc, -1)
            return
        host = entry & OFFSET_MASK
        if host:
            self._add_refcount(host // cs, -1)

    # -- writing ---------------------------------------------------------------------------------
    def _l2_for_write(self, gcluster: int) -> int:
        """The offset of the L2 table for `gcluster`, made if missing."""
        l1_index = gcluster >> self.l2_bits
        l2_off = self.l1[l1_index] & L1_OFFSET_MASK
        if l2_off:
            if not self.l1[l1_index] & OFLAG_COPIED and self.refcount(l2_off // self.cluster_size) != 1:
                raise self._corrupt(f"L2 table at {l2_off:#x} is shared")
            return l2_off
        l2_off = self._alloc_cluster(bytes(self.cluster_size))
        entry = l2_off | OFLAG_COPIED
        self._barrier()
        self._pwrite(self.h.l1_table_offset + l1_index * 8, struct.pack(">Q", entry))
        self.l1[l1_index] = entry
        self._l2_cache[l2_off] = [0] * self.l2_entries
        return l2_off

    def _write_in_cluster(self, gcluster: int, in_off: int, data: bytes) -> tuple[int, int, int, int] | None:
        """Write in place, or into a new counted cluster: then (L2 offset, index, new entry, old
        entry) for the caller to point at it."""
        cs = self.cluster_size
        _, entry = self._l2_entry(gcluster)
        host = entry & OFFSET_MASK
        normal = not entry & OFLAG_COMPRESSED and not (self.h.version >= 3 and entry & OFLAG_ZERO)
        if normal and host:
            if host % cs:
                raise self._corrupt(f"data cluster offset {host:#x} is not cluster aligned")
            if entry & OFLAG_COPIED or self.refcount(host // cs) == 1:
                self._pwrite(host + in_off, data)  # in place
                return None
        # a new cluster: the old contents (backing, compressed, zero) around the written part
        if len(data) == cs:
            full = bytes(data)
        else:
            old = bytearray(self._read_in_cluster(gcluster, 0, cs))
            old[in_off:in_off + len(data)] = data
            full = bytes(old)
        l2_off = self._l2_for_write(gcluster)
        new = self._alloc_cluster(full)
        return l2_off, gcluster & (self.l2_entries - 1), new | OFLAG_COPIED, entry

    def write_bytes(self, off: int, data: bytes) -> None:
        """Write `data` at guest byte `off` (sector aligned) into the file, without the overlay."""
        self._prepare_write()
        cs = self.cluster_size
        view = memoryview(bytes(data))
        pending = []
        while view:
            gcluster, in_off = divmod(off, cs)
            chunk = min(len(view), cs - in_off)
            new = self._write_in_cluster(gcluster, in_off, bytes(view[:chunk]))
            if new is not None:
                pending.append(new)
            view, off = view[chunk:], off + chunk
        if not pending:
            return
        self._barrier()  # the new clusters and their counts before the entries that point at them
        i = 0
        while i < len(pending):  # runs of neighbouring entries of one L2 table: one write each
            l2_off, index = pending[i][0], pending[i][1]
            j = i + 1
            while j < len(pending) and pending[j][0] == l2_off and pending[j][1] == index + (j - i):
                j += 1
            entries = [p[2] for p in pending[i:j]]
            self._pwrite(l2_off + index * 8, struct.pack(f">{len(entries)}Q", *entries))
            table = self._l2_table(l2_off)
            table[index:index + len(entries)] = entries
            i = j
        old = [p[3] for p in pending if p[3] & (OFLAG_COMPRESSED | OFFSET_MASK)]
        if old:
            self._barrier()  # the entries no longer point at the old clusters before they are released
            for entry in old:
                self._release(entry)

    def write_sectors(self, lba: int, data: bytes) -> None:
        """Write whole sectors at `lba`, through to the file (or the overlay under -snapshot)."""
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
        self.write_bytes(lba * SECTOR_SIZE, data)

    def flush(self) -> None:
        """Make written data and metadata durable (ATA FLUSH CACHE): fsync the file."""
        if self.fd is not None and not self.readonly and not self.snapshot:
            try:
                os.fsync(self.fd)
            except OSError:
                pass

    def close(self) -> None:
        """Flush and close (the backing file too); the snapshot overlay is discarded."""
        if self.fd is not None:
            self.flush()
            self.file.close()
            self.fd = None
        if self.backing is not None:
            self.backing.close()
            self.backing = None
        self.overlay.clear()

    def __enter__(self) -> Qcow2Image:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "snapshot" if self.snapshot else "ro" if self.readonly else "rw"
        return f"Qcow2Image({self.path!r}, {self.sectors} sectors, {mode})"


def bitmap_ranges(fd: int, h: Header, head: bytes) -> list[tuple[int, int]]:
    """The (offset, length) of every host area the bitmaps extension uses: its directory, each
    bitmap's table and the table's data clusters."""
    out: list[tuple[int, int]] = []
    off = h.header_length
    while off + 8 <= len(head):
        etype, elen = struct.unpack_from(">II", head, off)
        if etype == EXT_END:
            break
        if etype == EXT_BITMAPS and elen >= 24:
            nb, _, dir_size, dir_off = struct.unpack_from(">IIQQ", head, off + 8)
            out.append((dir_off, dir_size))
            directory = os.pread(fd, dir_size, dir_off)
            pos = 0
            for _ in range(nb):
                if pos + 24 > len(directory):
                    break
                t_off, t_size, _, _, _, name_size, extra = struct.unpack_from(">QIIBBHI", directory, pos)
                out.append((t_off, t_size * 8))
                table = os.pread(fd, t_size * 8, t_off)
                for e in struct.unpack(f">{len(table) // 8}Q", table):
                    if e & OFFSET_MASK:
                        out.append((e & OFFSET_MASK, h.cluster_size))
                pos += (24 + extra + name_size + 7) & ~7
            break
        off += 8 + ((elen + 7) & ~7)
    return out


# -- creating ------------------------------------------------------------------------------------

def create(path: str, size: int, cluster_size: int = 65536, compat: str = "1.1", backing_file: str = "",
           backing_format: str = "") -> None:
    """Write an empty qcow2 image: header, refcount table and block, L1 table (QEMU's layout)."""
    if cluster_size & (cluster_size - 1) or not 512 <= cluster_size <= 2 << 20:
        raise DiskError(f"cluster size {cluster_size} must be a power of two between 512 and 2M")
    if compat not in ("0.10", "1.1"):
        raise DiskError(f"compat '{compat}': expected 0.10 or 1.1")
    if size < 0 or size % SECTOR_SIZE:
        raise DiskError(f"image size {size} must be a multiple of 512")
    cs = cluster_size
    cluster_bits = cs.bit_length() - 1
    version = 3 if compat == "1.1" else 2
    l1_size = -(-size // (cs * (cs // 8)))
    l1_clusters = max(1, -(-l1_size * 8 // cs))
    rc_entries = cs // 2
    # header, refcount table, refcount block(s), L1 table: count until the blocks cover everything
    nblocks = 1
    while True:
        used = 1 + 1 + nblocks + l1_clusters
        need = -(-used // rc_entries)
        if need <= nblocks:
            break
        nblocks = need
    rct_entries = cs // 8
    if nblocks > rct_entries:
        raise DiskError("image too large for a one-cluster refcount table")
    rct_off, rcb_off, l1_off = cs, 2 * cs, (2 + nblocks) * cs
    total = 2 + nblocks + l1_clusters
    head = bytearray(cs)
    hlen = HEADER_V3_SIZE if version == 3 else HEADER_V2_SIZE
    exts = b""
    if backing_format and backing_file:
        fmt = backing_format.encode()
        exts += struct.pack(">II", EXT_BACKING_FORMAT, len(fmt)) + fmt + bytes(-len(fmt) % 8)
    if version == 3:
        names = b"".join(bytes([kind, bit]) + name.ljust(46, b"\0") for kind, bit, name in
                         ((0, 0, b"dirty bit"), (0, 1, b"corrupt bit"), (0, 2, b"external data file"),
                          (0, 3, b"compression type"), (0, 4, b"extended L2 entries"),
                          (1, 0, b"lazy refcounts"), (2, 0, b"bitmaps"), (2, 1, b"raw external data")))
        exts += struct.pack(">II", EXT_FEATURE_NAMES, len(names)) + names
    exts += struct.pack(">II", EXT_END, 0)
    name = backing_file.encode()
    bf_off = hlen + len(exts) if name else 0
    if bf_off + len(name) > cs or len(name) > 1023:
        raise DiskError("backing file name too long")
    struct.pack_into(">4sIQIIQIIQQIIQ", head, 0, MAGIC, version, bf_off, len(name), cluster_bits, size, 0,
                     l1_size, l1_off, rct_off, 1, 0, 0)
    if version == 3:
        struct.pack_into(">QQQII", head, 72, 0, 0, 0, 4, hlen)
    head[hlen:hlen + len(exts)] = exts
    if name:
        head[bf_off:bf_off + len(name)] = name
    rct = bytearray(cs)
    for i in range(nblocks):
        struct.pack_into(">Q", rct, i * 8, rcb_off + i * cs)
    blocks = bytearray(nblocks * cs)
    for hc in range(total):
        struct.pack_into(">H", blocks, hc * 2, 1)
    try:
        with open(path, "wb") as fh:
            fh.write(bytes(head) + bytes(rct) + bytes(blocks) + bytes(l1_clusters * cs))
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as e:
        raise DiskError(f"cannot create '{path}': {e.strerror}") from None
