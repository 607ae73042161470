"""Disk image backends: what the user is promised about their image files, and CHS geometry."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emu.devices.diskimage import (
    FLOPPY_FORMATS,
    SECTOR_SIZE,
    DiskError,
    DiskImage,
    DiskRangeError,
    DiskWriteProtected,
    Geometry,
    ImageSlice,
    ata_geometry,
    chs_to_lba,
    floppy_format,
    floppy_geometry,
    floppy_medium,
    lba_assist_geometry,
    lba_to_chs,
)

MIB = 1 << 20


def make_image(tmp_path, sectors=64, name="disk.img"):
    path = tmp_path / name
    path.write_bytes(bytes(i // SECTOR_SIZE & 0xFF for i in range(sectors * SECTOR_SIZE)))
    return path


def test_reads_sectors_at_their_offsets(tmp_path):
    path = make_image(tmp_path)
    with DiskImage.open(str(path)) as img:
        assert img.sectors == 64
        assert img.read_sectors(5, 2) == bytes([5]) * SECTOR_SIZE + bytes([6]) * SECTOR_SIZE


def test_write_reaches_the_file_before_write_sectors_returns(tmp_path):
    path = make_image(tmp_path)
    img = DiskImage.open(str(path))
    img.write_sectors(3, b"\xAB" * SECTOR_SIZE)
    # another reader sees it at once: nothing is held back in pyemu
    with open(path, "rb") as f:
        f.seek(3 * SECTOR_SIZE)
        assert f.read(SECTOR_SIZE) == b"\xAB" * SECTOR_SIZE
    img.close()


def test_snapshot_leaves_the_file_byte_identical(tmp_path):
    path = make_image(tmp_path)
    before = path.read_bytes()
    img = DiskImage.open(str(path), snapshot=True)
    img.write_sectors(0, b"\x55" * (2 * SECTOR_SIZE))
    assert img.read_sectors(0, 3) == b"\x55" * (2 * SECTOR_SIZE) + bytes([2]) * SECTOR_SIZE
    img.close()
    assert path.read_bytes() == before


def test_snapshot_of_a_read_only_file_still_accepts_writes(tmp_path):
    path = make_image(tmp_path)
    os.chmod(path, 0o444)
    img = DiskImage.open(str(path), snapshot=True)
    img.write_sectors(1, bytes(SECTOR_SIZE))
    assert img.read_sectors(1, 1) == bytes(SECTOR_SIZE)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write any file (tests/test_bad_input.py drops to nobody)")
def test_file_without_write_permission_is_refused_unless_snapshot(tmp_path):
    """As QEMU: an image the user may not write is not silently attached write-protected."""
    path = make_image(tmp_path)
    os.chmod(path, 0o444)
    with pytest.raises(DiskError, match="for writing: Permission denied .*-snapshot"):
        DiskImage.open(str(path))
    DiskImage.open(str(path), snapshot=True).close()


def test_a_writer_locks_out_other_writers_and_readers(tmp_path):
    """QEMU's image locking: one writer, or any number of readers (-snapshot, CD-ROMs)."""
    path = str(make_image(tmp_path))
    writer = DiskImage.open(path)
    with pytest.raises(DiskError, match=f'^Failed to get "write" lock: {path} is in use by another process$'):
        DiskImage.open(path)
    with pytest.raises(DiskError, match='^Failed to get shared "write" lock: '):
        DiskImage.open(path, snapshot=True)
    with pytest.raises(DiskError, match='shared "write" lock'):
        DiskImage.open(path, readonly=True)
    writer.close()
    DiskImage.open(path).close()  # the lock goes with the file


def test_readers_share_and_keep_writers_out(tmp_path):
    path = str(make_image(tmp_path))
    a = DiskImage.open(path, snapshot=True)
    b = DiskImage.open(path, readonly=True)
    with pytest.raises(DiskError, match='"write" lock'):
        DiskImage.open(path)
    a.close()
    with pytest.raises(DiskError, match='"write" lock'):
        DiskImage.open(path)
    b.close()
    DiskImage.open(path).close()


def test_readonly_flag_refuses_writes(tmp_path):
    path = make_image(tmp_path)
    before = path.read_bytes()
    img = DiskImage.open(str(path), readonly=True)
    with pytest.raises(DiskWriteProtected):
        img.write_sectors(0, bytes(SECTOR_SIZE))
    img.close()
    assert path.read_bytes() == before


@pytest.mark.parametrize("setup, fragment", [
    (lambda p: None, "not found"),
    (lambda p: p.write_bytes(b""), "is empty"),
    (lambda p: p.write_bytes(b"x" * 100), "smaller than one sector"),
    (lambda p: p.mkdir(), "is a directory"),
])
def test_bad_files_raise_a_one_line_disk_error(tmp_path, setup, fragment):
    path = tmp_path / "bad.img"
    setup(path)
    with pytest.raises(DiskError) as e:
        DiskImage.open(str(path))
    assert fragment in str(e.value)
    assert "\n" not in str(e.value)


def test_access_beyond_the_end_raises_range_error(tmp_path):
    img = DiskImage.open(str(make_image(tmp_path, sectors=4)))
    with pytest.raises(DiskRangeError):
        img.read_sectors(3, 2)
    with pytest.raises(DiskRangeError):
        img.write_sectors(4, bytes(SECTOR_SIZE))


@given(st.data())
def test_any_sector_reads_back_what_was_written(data):
    img = DiskImage.from_bytes(bytes(32 * SECTOR_SIZE))
    writes = data.draw(st.lists(st.tuples(st.integers(0, 31), st.integers(0, 255)), max_size=20))
    model = {}
    for lba, fill in writes:
        img.write_sectors(lba, bytes([fill]) * SECTOR_SIZE)
        model[lba] = fill
    for lba in range(32):
        assert img.read_sectors(lba, 1) == bytes([model.get(lba, 0)]) * SECTOR_SIZE


@pytest.mark.parametrize("size, chs", [
    (160 * 1024, (40, 1, 8)), (180 * 1024, (40, 1, 9)), (320 * 1024, (40, 2, 8)),
    (360 * 1024, (40, 2, 9)), (720 * 1024, (80, 2, 9)), (1200 * 1024, (80, 2, 15)),
    (1440 * 1024, (80, 2, 18)), (2880 * 1024, (80, 2, 36)),
])
def test_standard_floppy_formats_by_size(size, chs):
    assert floppy_geometry(size) == Geometry(*chs)
    assert floppy_geometry(size).total * SECTOR_SIZE == size
    assert floppy_format(size) is FLOPPY_FORMATS[size]


def test_non_floppy_size_has_no_floppy_format():
    assert floppy_geometry(10 * MIB) is None


@pytest.mark.parametrize("size, name", [(1296384, "1.44M"), (1000 * 1024, "1.2M"), (300 * 1024, "360K"),
                                        (2000 * 1024, "2.88M"), (1440 * 1024, "1.44M")])
def test_an_odd_sized_floppy_image_reads_as_the_smallest_medium_that_holds_it(size, name):
    """As QEMU: GRUB's rescue floppy (1,296,384 bytes) is a 1.44M diskette with a short image."""
    assert floppy_medium(size).name == name


def test_an_image_too_big_for_any_diskette_has_no_floppy_medium():
    assert floppy_medium(2880 * 1024 + SECTOR_SIZE) is None


def test_an_image_slice_is_a_read_only_disk_that_reads_zeros_past_its_data(tmp_path):
    """The El Torito emulated diskette inside a CD image: a window of the CD's sectors."""
    base = DiskImage.open(str(make_image(tmp_path, sectors=64)))
    part = ImageSlice(base, 60, 8)
    assert part.read_sectors(0, 1)[0] == 60 and part.read_sectors(3, 1)[0] == 63
    assert part.read_sectors(4, 4) == bytes(4 * SECTOR_SIZE)  # past the CD's end: zeros
    with pytest.raises(DiskRangeError):
        part.read_sectors(7, 2)
    with pytest.raises(DiskWriteProtected):
        part.write_sectors(0, bytes(SECTOR_SIZE))


@pytest.mark.parametrize("mib, heads", [(100, 16), (504, 16), (505, 32), (1000, 32), (2000, 64),
                                         (4000, 128), (8000, 255)])
def test_lba_assist_picks_heads_by_size(mib, heads):
    g = lba_assist_geometry(mib * MIB // SECTOR_SIZE)
    assert g.heads == heads and g.sectors == 63
    assert g.cylinders <= 1024


def test_ata_geometry_is_16_heads_63_sectors_capped_at_16383_cylinders():
    assert ata_geometry(100 * MIB // SECTOR_SIZE) == Geometry(203, 16, 63)
    assert ata_geometry(100_000 * MIB // SECTOR_SIZE) == Geometry(16383, 16, 63)
    assert ata_geometry(64).total <= 64 and ata_geometry(64).total > 0


@given(st.integers(1, 16383), st.integers(1, 255), st.integers(1, 63), st.data())
def test_chs_lba_round_trip(c, h, s, data):
    g = Geometry(c, h, s)
    lba = data.draw(st.integers(0, g.total - 1))
    assert chs_to_lba(*lba_to_chs(lba, g), g) == lba
    cc, hh, ss = lba_to_chs(lba, g)
    assert cc < c and hh < h and 1 <= ss <= s


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX locks")
def test_flock_is_the_lock_where_ofd_locks_are_missing(tmp_path, monkeypatch):
    """macOS and the BSDs have no F_OFD_SETLK: the same rules hold with flock."""
    import fcntl

    monkeypatch.delattr(fcntl, "F_OFD_SETLK", raising=False)
    path = str(make_image(tmp_path))
    a = DiskImage.open(path, snapshot=True)
    b = DiskImage.open(path, readonly=True)
    with pytest.raises(DiskError, match='^Failed to get "write" lock: '):
        DiskImage.open(path)
    a.close()
    b.close()
    writer = DiskImage.open(path)
    with pytest.raises(DiskError, match='^Failed to get shared "write" lock: '):
        DiskImage.open(path, snapshot=True)
    writer.close()
