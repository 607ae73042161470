"""qcow2 images (emu/devices/qcow2.py): pyemu's reads and writes against qemu-img as the oracle.

Images made or written by qemu-img are read by pyemu; images pyemu wrote pass `qemu-img check`
(no corruption, no leak after a clean close) and `qemu-img compare` with the expected raw content;
a process killed with SIGKILL while writing leaves an image with at most leaked clusters and every
flushed write present.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from emu.devices.diskimage import DiskError, DiskImage, DiskWriteProtected
from emu.devices.imageformat import DriveSpec, open_image, place_drives
from emu.devices.qcow2 import Qcow2Image, create

QEMU_IMG = shutil.which("qemu-img")
QEMU_IO = shutil.which("qemu-io")
needs_qemu_img = pytest.mark.skipif(QEMU_IMG is None, reason="qemu-img is not installed")
needs_qemu_io = pytest.mark.skipif(QEMU_IO is None, reason="qemu-io is not installed")
ROOT = Path(__file__).resolve().parents[2]
MIB = 1 << 20


def qemu_img(*args, check=True) -> subprocess.CompletedProcess:
    p = subprocess.run([QEMU_IMG, *map(str, args)], capture_output=True, text=True, timeout=120)
    if check:
        assert p.returncode == 0, p.stdout + p.stderr
    return p


def assert_clean(path) -> None:
    """qemu-img check finds neither corruption nor leak."""
    p = qemu_img("check", path, check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "No errors were found on the image." in p.stdout


def assert_same(path, raw_path) -> None:
    p = qemu_img("compare", "-f", "qcow2", "-F", "raw", path, raw_path, check=False)
    assert p.returncode == 0, p.stdout + p.stderr


def random_writes(img, expected: bytearray, rng: random.Random, n: int, max_sectors: int = 40) -> None:
    sectors = len(expected) // 512
    for _ in range(n):
        count = rng.randrange(1, max_sectors)
        lba = rng.randrange(0, sectors - count)
        data = rng.randbytes(16) * (32 * count)
        img.write_sectors(lba, data)
        expected[lba * 512:(lba + count) * 512] = data


def pattern(size: int, seed: int = 1) -> bytes:
    """Random data with a run of zero clusters in the middle (qemu-img leaves those unallocated)."""
    data = bytearray(random.Random(seed).randbytes(size))
    data[size // 4:size // 2] = bytes(size // 4)
    return bytes(data)


# -- pyemu's own images --------------------------------------------------------------------------

@pytest.mark.parametrize("compat,cluster_size", [("1.1", 65536), ("0.10", 65536), ("1.1", 4096)])
def test_round_trip(tmp_path, compat, cluster_size):
    path = tmp_path / "disk.qcow2"
    create(str(path), 4 * MIB, cluster_size=cluster_size, compat=compat)
    expected = bytearray(4 * MIB)
    with Qcow2Image.open(str(path)) as img:
        assert img.sectors == 8192 and img.size == 4 * MIB
        assert img.read_sectors(0, 8192) == bytes(4 * MIB)  # a new image reads as zeros
        random_writes(img, expected, random.Random(compat + str(cluster_size)), 200)
        assert img.read_sectors(0, 8192) == expected
    with Qcow2Image.open(str(path)) as img:
        assert img.read_sectors(0, 8192) == expected
        assert img.read_sectors(100, 3) == expected[100 * 512:103 * 512]
    if QEMU_IMG:
        raw = tmp_path / "expected.raw"
        raw.write_bytes(expected)
        assert_clean(path)
        assert_same(path, raw)
        info = qemu_img("info", path).stdout
        assert f"compat: {compat}" in info and f"cluster_size: {cluster_size}" in info


def test_small_clusters_grow_the_refcount_table(tmp_path):
    """512-byte clusters: one refcount block covers 128 KiB and the first table 8 MiB of file, so
    filling 12 MiB moves the refcount table to a bigger one."""
    path = tmp_path / "small.qcow2"
    create(str(path), 12 * MIB, cluster_size=512)
    table_before = struct.unpack(">Q", path.read_bytes()[48:56])[0]
    expected = bytearray(12 * MIB)
    with Qcow2Image.open(str(path)) as img:
        for lba in range(0, 24576, 256):
            data = bytes([lba % 251 + 1]) * (256 * 512)
            img.write_sectors(lba, data)
            expected[lba * 512:(lba + 256) * 512] = data
    assert struct.unpack(">Q", path.read_bytes()[48:56])[0] != table_before
    with Qcow2Image.open(str(path)) as img:
        assert img.read_sectors(0, 24576) == expected
    if QEMU_IMG:
        raw = tmp_path / "expected.raw"
        raw.write_bytes(expected)
        assert_clean(path)
        assert_same(path, raw)


def test_snapshot_mode_keeps_the_file(tmp_path):
    path = tmp_path / "disk.qcow2"
    create(str(path), MIB)
    with Qcow2Image.open(str(path)) as img:
        img.write_sectors(5, b"A" * 512)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    with open_image(str(path), snapshot=True) as img:
        assert isinstance(img, Qcow2Image) and img.snapshot
        img.write_sectors(5, b"B" * 1024)
        img.flush()
        assert img.read_sectors(5, 2) == b"B" * 1024
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    with Qcow2Image.open(str(path)) as img:
        assert img.read_sectors(5, 2) == b"A" * 512 + bytes(512)


def test_read_only(tmp_path):
    path = tmp_path / "disk.qcow2"
    create(str(path), MIB)
    with Qcow2Image.open(str(path), readonly=True) as img:
        assert img.readonly
        with pytest.raises(DiskWriteProtected):
            img.write_sectors(0, bytes(512))
    os.chmod(path, 0o444)
    if os.access(path, os.W_OK):
        return  # root
    with Qcow2Image.open(str(path)) as img:
        assert img.readonly


def test_format_probe_and_drive_spec(tmp_path):
    q, r = tmp_path / "a.qcow2", tmp_path / "b.img"
    create(str(q), MIB)
    r.write_bytes(bytes(MIB))
    with open_image(str(q)) as img:
        assert isinstance(img, Qcow2Image)
    with open_image(str(r)) as img:
        assert isinstance(img, DiskImage)
    with open_image(str(q), "raw") as img:  # format=raw: the file's bytes
        assert isinstance(img, DiskImage) and img.read_sectors(0, 1)[:4] == b"QFI\xfb"
    spec = DriveSpec.parse(f"file={q},format=qcow2,if=ide,index=1,media=disk,snapshot=on,readonly=off")
    assert (spec.file, spec.format, spec.index, spec.snapshot, spec.readonly) == (str(q), "qcow2", 1, True, False)
    assert DriveSpec.parse("file=a,,b.img").file == "a,b.img"
    floppies, disks = [None, None], [None, None]
    cd = place_drives([f"file={r},if=floppy", f"file={q}", f"file={r},media=cdrom"], floppies, disks, None)
    assert floppies[0].file == str(r) and disks[0].file == str(q) and cd.media == "cdrom"
    for bad, msg in [("file=x,format=vmdk", "format=vmdk"), ("file=x,bogus=1", "unknown key 'bogus'"),
                     ("file=x,if=scsi", "if=scsi"), ("file=x,index=zz", "index=zz"), ("format=raw", "file="),
                     ("file=x,index=2", "index 0 and 1"), ("file=x,snapshot=maybe", "snapshot=maybe"),
                     ("file=x,if=floppy,index=2", "indexes 0-1")]:
        with pytest.raises(ValueError, match=msg) as exc:
            place_drives([bad], [None, None], [None, None], None)
        assert "\n" not in str(exc.value)
    with pytest.raises(ValueError, match="already in use"):
        place_drives(["file=x,index=0"], [None, None], ["y", None], None)


def _patch(path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(data)


def test_refuses_unknown_features_and_encryption(tmp_path):
    path = tmp_path / "disk.qcow2"
    create(str(path), MIB)
    _patch(path, 72, struct.pack(">Q", 1 << 20))  # an incompatible feature nobody knows
    with pytest.raises(DiskError, match="unsupported qcow2 feature") as exc:
        Qcow2Image.open(str(path), readonly=True)
    assert "\n" not in str(exc.value)
    create(str(path), MIB)
    _patch(path, 32, struct.pack(">I", 1))  # crypt_method AES
    with pytest.raises(DiskError, match="encrypted"):
        Qcow2Image.open(str(path), readonly=True)
    create(str(path), MIB, compat="0.10")
    _patch(path, 4, struct.pack(">I", 4))
    with pytest.raises(DiskError, match="version 4"):
        Qcow2Image.open(str(path))


@needs_qemu_img
def test_other_refcount_widths_open_read_only_only(tmp_path):
    path = tmp_path / "rc32.qcow2"
    raw = tmp_path / "in.raw"
    raw.write_bytes(pattern(MIB))
    qemu_img("convert", "-O", "qcow2", "-o", "refcount_bits=32", raw, path)
    with pytest.raises(DiskError, match="32-bit refcounts") as exc:
        Qcow2Image.open(str(path))
    assert "\n" not in str(exc.value)
    with Qcow2Image.open(str(path), readonly=True) as img:
        assert img.read_sectors(0, 2048) == raw.read_bytes()
    with Qcow2Image.open(str(path), snapshot=True) as img:
        img.write_sectors(0, b"x" * 512)
        assert img.read_sectors(0, 1) == b"x" * 512


# -- qemu-img's images ---------------------------------------------------------------------------

@needs_qemu_img
@pytest.mark.parametrize("options", [[], ["-o", "compat=0.10"], ["-o", "cluster_size=4096"]])
def test_qemu_img_created_image_written_by_pyemu(tmp_path, options):
    path = tmp_path / "disk.qcow2"
    qemu_img("create", "-f", "qcow2", *options, path, "8M")
    expected = bytearray(8 * MIB)
    with open_image(str(path)) as img:
        assert isinstance(img, Qcow2Image)
        random_writes(img, expected, random.Random(7), 300)
        img.flush()
    raw = tmp_path / "expected.raw"
    raw.write_bytes(expected)
    assert_clean(path)
    assert_same(path, raw)


@needs_qemu_img
@pytest.mark.parametrize("options", [[], ["-c"], ["-o", "compat=0.10"], ["-c", "-o", "cluster_size=4096"]])
def test_qemu_img_convert_reads_identically(tmp_path, options):
    raw = tmp_path / "in.raw"
    data = pattern(3 * MIB + 5 * 512)  # not a whole number of clusters
    raw.write_bytes(data)
    path = tmp_path / "out.qcow2"
    qemu_img("convert", "-f", "raw", "-O", "qcow2", *options, raw, path)
    with open_image(str(path), readonly=True) as img:
        assert isinstance(img, Qcow2Image)
        assert img.sectors * 512 == len(data)
        assert img.read_sectors(0, img.sectors) == data
        assert img.read_sectors(1000, 7) == data[1000 * 512:1007 * 512]


@needs_qemu_img
def test_writes_into_compressed_clusters_reallocate_them(tmp_path):
    raw = tmp_path / "in.raw"
    data = bytearray(pattern(2 * MIB))
    raw.write_bytes(data)
    path = tmp_path / "c.qcow2"
    qemu_img("convert", "-c", "-O", "qcow2", raw, path)
    with Qcow2Image.open(str(path)) as img:
        for lba in (0, 1, 130, 2047, 300):  # partial writes: the rest of the cluster is kept
            img.write_sectors(lba, b"\xa5" * 512)
            data[lba * 512:(lba + 1) * 512] = b"\xa5" * 512
        img.write_sectors(512, b"\x5a" * 65536)  # a whole cluster
        data[512 * 512:640 * 512] = b"\x5a" * 65536
        assert img.read_sectors(0, 4096) == data
    exp = tmp_path / "exp.raw"
    exp.write_bytes(data)
    assert_clean(path)  # the compressed clusters' references were dropped: no leak
    assert_same(path, exp)


@needs_qemu_img
@needs_qemu_io
def test_zero_clusters(tmp_path):
    path = tmp_path / "z.qcow2"
    raw = tmp_path / "in.raw"
    raw.write_bytes(pattern(MIB))
    qemu_img("convert", "-O", "qcow2", raw, path)
    subprocess.run([QEMU_IO, "-f", "qcow2", "-c", "write -z 0 128k", "-c", "write -z -u 256k 64k", str(path)],
                   check=True, capture_output=True, timeout=60)
    expected = bytearray(raw.read_bytes())
    expected[0:128 * 1024] = bytes(128 * 1024)
    expected[256 * 1024:320 * 1024] = bytes(64 * 1024)
    with Qcow2Image.open(str(path)) as img:
        assert img.read_sectors(0, 2048) == expected
        _, kept = img._l2_entry(0)
        _, unmapped = img._l2_entry(4)
        assert kept & 1 and kept & 0x00FFFFFFFFFFFE00  # zero flag, host cluster kept
        assert unmapped & 1 and not unmapped & 0x00FFFFFFFFFFFE00
        img.write_sectors(3, b"\x11" * 512)  # into a zero cluster that kept its host cluster (released)
        img.write_sectors(520, b"\x22" * 512)  # into an unmapped zero cluster
        expected[3 * 512:4 * 512] = b"\x11" * 512
        expected[520 * 512:521 * 512] = b"\x22" * 512
        assert img.read_sectors(0, 2048) == expected
    exp = tmp_path / "exp.raw"
    exp.write_bytes(expected)
    assert_clean(path)
    assert_same(path, exp)


# -- backing files -------------------------------------------------------------------------------

@needs_qemu_img
def test_backing_files_read_and_copy_on_write(tmp_path):
    d = tmp_path / "images"
    d.mkdir()
    base = d / "base.raw"
    base_data = pattern(2 * MIB, seed=3)
    base.write_bytes(base_data)
    # a chain: base.raw <- mid.qcow2 <- top.qcow2 (4 MiB, bigger than its backing), relative names
    qemu_img("create", "-f", "qcow2", "-b", "base.raw", "-F", "raw", d / "mid.qcow2")
    with Qcow2Image.open(str(d / "mid.qcow2")) as mid:
        mid.write_sectors(10, b"M" * 512)
    qemu_img("create", "-f", "qcow2", "-b", "mid.qcow2", "-F", "qcow2", d / "top.qcow2", "4M")
    expected = bytearray(base_data + bytes(2 * MIB))
    expected[10 * 512:11 * 512] = b"M" * 512
    cwd = os.getcwd()
    os.chdir(tmp_path)  # the backing name is relative to the image's directory, not the cwd
    try:
        with open_image("images/top.qcow2") as top:
            assert top.read_sectors(0, 8192) == expected
            top.write_sectors(129, b"T" * 1024)  # partial cluster: the rest comes from the backing file
            top.write_sectors(4095, b"U" * 1024)  # across a cluster boundary, past the end of the backing
            top.write_sectors(8191, b"V" * 512)  # beyond the backing file: zeros around it
            for lba, d2 in ((129, b"T" * 1024), (4095, b"U" * 1024), (8191, b"V" * 512)):
                expected[lba * 512:lba * 512 + len(d2)] = d2
            assert top.read_sectors(0, 8192) == expected
    finally:
        os.chdir(cwd)
    assert base.read_bytes() == base_data  # backing files are opened read-only
    with Qcow2Image.open(str(d / "top.qcow2"), readonly=True) as top:
        assert top.read_sectors(0, 8192) == expected
        assert top.is_allocated(1) and not top.is_allocated(0)  # the written cluster holds a full copy
    exp = tmp_path / "exp.raw"
    exp.write_bytes(expected)
    assert_clean(d / "top.qcow2")
    assert_same(d / "top.qcow2", exp)


def test_missing_backing_file_is_one_line(tmp_path):
    path = tmp_path / "o.qcow2"
    create(str(path), MIB, backing_file="nowhere.raw", backing_format="raw")
    with pytest.raises(DiskError, match="backing file") as exc:
        Qcow2Image.open(str(path))
    assert "\n" not in str(exc.value)


# -- crash safety --------------------------------------------------------------------------------

WRITER = r"""
import os, random, sys
sys.path.insert(0, sys.argv[3])
from emu.devices.qcow2 import Qcow2Image
path, start = sys.argv[1], int(sys.argv[2])
img = Qcow2Image.open(path)
i = start
while True:
    rng = random.Random(i)
    count = rng.randrange(1, 200)
    lba = rng.randrange(0, img.sectors - count)
    img.write_sectors(lba, bytes([i % 255 + 1]) * 8 + rng.randbytes(8) * (64 * count - 1))
    img.flush()
    os.write(1, b"%d\n" % i)
    i += 1
"""


def _writer_op(i: int, sectors: int):
    rng = random.Random(i)
    count = rng.randrange(1, 200)
    lba = rng.randrange(0, sectors - count)
    data = bytes([i % 255 + 1]) * 8 + rng.randbytes(8) * (64 * count - 1)
    return lba, count, data


@needs_qemu_img
@pytest.mark.parametrize("cluster_size", [65536, 4096])
def test_kill_9_while_writing_leaves_a_consistent_image(tmp_path, cluster_size):
    """A child writes runs of sectors (flushing after each) until SIGKILL at a random moment, five
    times over on the same image: no corruption, and each acknowledged write is there unless a later
    write (acknowledged or in flight) covered it."""
    path = tmp_path / "crash.qcow2"
    qemu_img("create", "-f", "qcow2", "-o", f"cluster_size={cluster_size}", path, "16M")
    sectors = 32768
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    rng = random.Random(cluster_size)
    start = 0
    acked_total = 0
    leaks_seen = 0
    definite: set[int] = set()
    maybe: set[int] = set()
    for _ in range(5):
        child = subprocess.Popen([sys.executable, str(script), str(path), str(start), str(ROOT)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        want = rng.randrange(3, 40)
        acked = start - 1
        deadline = time.monotonic() + 120
        while acked - start + 1 < want and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            acked = int(line)
        time.sleep(rng.random() * 0.05)
        os.kill(child.pid, signal.SIGKILL)
        rest, err = child.communicate()
        assert child.returncode == -signal.SIGKILL, err.decode()
        for line in rest.split():
            acked = int(line)
        assert acked - start + 1 >= want, err.decode()
        acked_total += acked - start + 1
        p = qemu_img("check", path, check=False)
        assert p.returncode in (0, 3), p.stdout + p.stderr  # 3: leaked clusters only
        assert "ERROR" not in p.stderr and not re.search(r"\d+ errors were found", p.stdout)
        leaks_seen += p.returncode == 3
        maybe.add(acked + 1)  # in flight when killed: either old or new data in each sector
        definite.update(range(start, acked + 1))
        last = acked + 1
        raw = tmp_path / "now.raw"
        qemu_img("convert", "-O", "raw", path, raw)
        with Qcow2Image.open(str(path), readonly=True) as img:
            ours = img.read_sectors(0, sectors)
        assert ours == raw.read_bytes()
        ops = [_writer_op(i, sectors) for i in range(last + 1)]
        writers: dict[int, list[int]] = {}
        for i, (lba, count, _) in enumerate(ops):
            for sec in range(lba, lba + count):
                writers.setdefault(sec, []).append(i)
        for sec, ws in writers.items():
            done = [i for i in ws if i in definite]
            allowed = [bytes(512)] if not done else []
            for i in ws[ws.index(done[-1]):] if done else ws:
                if i == (done[-1] if done else None) or i in maybe:
                    lba, _, data = ops[i]
                    allowed.append(data[(sec - lba) * 512:(sec - lba + 1) * 512])
            assert ours[sec * 512:(sec + 1) * 512] in allowed, f"sector {sec}: writes {ws}, acked up to {acked}"
        start = last + 1
    assert acked_total >= 15
    print(f"{acked_total} acknowledged writes, {leaks_seen} of 5 kills leaked clusters")


class _Killed(Exception):
    pass


def _stop_after(img, stop: int | None, log: list | None = None) -> None:
    """Make the image's `stop`-th pwrite (from 0) raise _Killed, as a kill there would; log offsets."""
    real = img._pwrite
    calls = [0]

    def pwrite(off, data):
        if calls[0] == stop:
            raise _Killed
        calls[0] += 1
        if log is not None:
            log.append(off)
        real(off, data)

    img._pwrite = pwrite


@needs_qemu_img
@pytest.mark.parametrize("cluster_size", [4096, 512])
def test_stopping_after_any_file_write_leaves_a_consistent_image(tmp_path, cluster_size):
    """The kill -9 test made systematic: the image's N-th pwrite raises, in a write that needs new L2
    tables, data clusters, a refcount block and (with 512-byte clusters) a bigger refcount table. After
    each stop the image has no corruption, old or new data in each sector, and another open goes on
    writing into it cleanly. 4 KiB clusters: every N; 512 bytes: the first 40, every 25th, and all
    around the refcount table's move."""
    base = tmp_path / "base.qcow2"
    qemu_img("create", "-f", "qcow2", "-o", f"cluster_size={cluster_size}", base, "64M")
    with Qcow2Image.open(str(base)) as img:  # nearly 8 MiB: what one table (512) or block (4K) covers
        for lba in range(0, 15800 if cluster_size == 512 else 16200, 200):
            img.write_sectors(lba, b"\x01" * 512 * 200)
    lba, new = 120000, b"\x02" * 512 * 300
    lo, hi = lba - 64, lba + 364
    dry = tmp_path / "dry.qcow2"
    shutil.copy(base, dry)
    log: list[int] = []
    with Qcow2Image.open(str(dry)) as img:
        old = img.read_sectors(lo, hi - lo)
        _stop_after(img, None, log)
        img.load_refcount_table()
        blocks = sum(1 for b in img.rc_table if b)
        img.write_sectors(lba, new)
        grown = img.h.refcount_table_clusters > 1
        assert sum(1 for b in img.rc_table if b) > blocks
    assert grown == (cluster_size == 512)
    expected = bytearray(old)
    expected[(lba - lo) * 512:(lba - lo + 300) * 512] = new
    if cluster_size == 512:
        switch = log.index(48)  # the header write that moves the refcount table
        stops = sorted(set(range(40)) | set(range(0, len(log), 25)) | set(range(switch - 12, switch + 12)))
    else:
        stops = list(range(len(log)))
    assert len(log) > 5
    for n in [*stops, len(log)]:
        path = tmp_path / f"stop{n}.qcow2"
        shutil.copy(base, path)
        img = Qcow2Image.open(str(path))
        _stop_after(img, n)
        try:
            img.write_sectors(lba, new)
            finished = True
        except _Killed:
            finished = False
        assert finished == (n == len(log))
        os.close(img.fd)  # no flush, no cleanup: as if killed
        p = qemu_img("check", path, check=False)
        assert p.returncode == (0 if finished else p.returncode) and p.returncode in (0, 3), \
            f"stopped before write {n}: {p.stdout}{p.stderr}"
        with Qcow2Image.open(str(path)) as img:
            got = img.read_sectors(lo, hi - lo)
            for i in range(hi - lo):
                assert got[i * 512:(i + 1) * 512] in (old[i * 512:(i + 1) * 512], expected[i * 512:(i + 1) * 512])
            img.write_sectors(lba, new)  # going on after the crash
            assert img.read_sectors(lo, hi - lo) == expected
        p = qemu_img("check", path, check=False)
        assert p.returncode in (0, 3) and "ERROR" not in p.stderr, p.stdout + p.stderr
        path.unlink()


@needs_qemu_img
@needs_qemu_io
def test_writing_drops_stale_dirty_bitmaps_without_leaking(tmp_path):
    raw = tmp_path / "in.raw"
    raw.write_bytes(pattern(MIB))
    path = tmp_path / "bm.qcow2"
    qemu_img("convert", "-O", "qcow2", raw, path)
    qemu_img("bitmap", "--add", path, "b0")
    subprocess.run([QEMU_IO, "-c", "write -P 7 0 256k", str(path)], check=True, capture_output=True, timeout=60)
    expected = bytearray(raw.read_bytes())
    expected[:256 * 1024] = b"\x07" * (256 * 1024)
    assert "bitmaps:" in qemu_img("info", path).stdout
    with Qcow2Image.open(str(path)) as img:
        img.write_sectors(1000, b"w" * 512)
    expected[1000 * 512:1001 * 512] = b"w" * 512
    exp = tmp_path / "exp.raw"
    exp.write_bytes(expected)
    assert "bitmaps:" not in qemu_img("info", path).stdout  # stale after our write: removed
    assert_clean(path)
    assert_same(path, exp)


@needs_qemu_img
@needs_qemu_io
def test_internal_snapshots_read_only(tmp_path):
    raw = tmp_path / "in.raw"
    raw.write_bytes(pattern(MIB))
    path = tmp_path / "sn.qcow2"
    qemu_img("convert", "-O", "qcow2", raw, path)
    qemu_img("snapshot", "-c", "s1", path)
    subprocess.run([QEMU_IO, "-c", "write -P 9 64k 64k", str(path)], check=True, capture_output=True, timeout=60)
    expected = bytearray(raw.read_bytes())
    expected[65536:131072] = b"\x09" * 65536
    with pytest.raises(DiskError, match="internal snapshots"):
        Qcow2Image.open(str(path))
    with Qcow2Image.open(str(path), readonly=True) as img:  # the active state, not the snapshot's
        assert img.read_sectors(0, 2048) == expected
    p = subprocess.run([sys.executable, "-m", "emu", "img", "check", str(path)], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=120)
    q = qemu_img("check", path, check=False)
    assert (p.returncode, p.stdout) == (q.returncode, q.stdout) == (0, q.stdout)


def test_pointers_are_written_after_a_barrier(tmp_path):
    """For a power cut: every write of a pointer (L1 entry, L2 entry, refcount table entry, the
    header's refcount table field) comes right after an fdatasync, or after another pointer write
    of the same step; so what it points at, and its count, are on the disk first."""
    path = tmp_path / "b.qcow2"
    create(str(path), 64 * MIB, cluster_size=512)
    img = Qcow2Image.open(str(path))
    events: list = []
    real_pwrite, real_barrier = img._pwrite, img._barrier
    img._pwrite = lambda off, data: (events.append(("w", off, len(data))), real_pwrite(off, data))[1]
    img._barrier = lambda: (events.append(("sync",)), real_barrier())[1]
    for lba in range(0, 20000, 100):  # new L2 tables, data, refcount blocks, a bigger refcount table
        img.write_sectors(lba, bytes([lba % 250 + 1]) * 512 * 100)
    assert img.h.refcount_table_clusters > 1

    def is_pointer(ev) -> bool:
        if ev[0] != "w":
            return False
        off = ev[1]
        l1 = img.h.l1_table_offset
        if l1 <= off < l1 + img.h.l1_size * 8 or off == 48:
            return True
        if any(t <= off < t + n for t, n in tables.items()):  # a refcount table, once written whole
            return not (off in tables and first_write.get(off) is ev)
        # in an L2 table: all writes but the first, which fills the new table with zeros
        return any(l2 <= off < l2 + 512 for l2 in l2s) and not (ev[2] == 512 and first_write.get(off) is ev)
    tables = {512: 512, img.h.refcount_table_offset: img.h.refcount_table_clusters * 512}
    l2s = {e & 0x00FFFFFFFFFFFE00 for e in img.l1 if e}
    first_write: dict = {}
    for ev in events:
        if ev[0] == "w":
            first_write.setdefault(ev[1], ev)
    pointer_writes = 0
    for i, ev in enumerate(events):
        if is_pointer(ev):
            pointer_writes += 1
            j = i - 1
            while j >= 0 and is_pointer(events[j]):
                j -= 1
            assert j >= 0 and events[j] == ("sync",), f"pointer write {ev} without a barrier before it"
    assert pointer_writes > 200
    img.close()
    if QEMU_IMG:
        assert_clean(path)
