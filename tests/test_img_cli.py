"""`pyemu img` and qcow2 disks under `pyemu boot`, as a user runs them (subprocesses), with qemu-img and
qemu-system-i386 as oracles (tests skip when they are absent)."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cpu.guestasm import needs_nasm
from tests.test_boot_cli import one_line_error, pyemu
from tests.test_machine import boot_sector

ROOT = Path(__file__).resolve().parents[1]
QEMU_IMG = shutil.which("qemu-img")
QEMU_SYSTEM = shutil.which("qemu-system-i386")
needs_qemu_img = pytest.mark.skipif(QEMU_IMG is None, reason="qemu-img is not installed")
needs_qemu_system = pytest.mark.skipif(QEMU_SYSTEM is None, reason="qemu-system-i386 is not installed")
MIB = 1 << 20


def img(*args, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "emu", "img", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd or ROOT, env=env, timeout=300)


def qemu_img(*args, check=True) -> subprocess.CompletedProcess:
    p = subprocess.run([QEMU_IMG, *map(str, args)], capture_output=True, text=True, timeout=120)
    if check:
        assert p.returncode == 0, p.stdout + p.stderr
    return p


def data_image(path: Path, size: int = 2 * MIB, seed: int = 5) -> bytes:
    data = bytearray(random.Random(seed).randbytes(size))
    data[size // 3:size // 2] = bytes(size // 2 - size // 3)
    path.write_bytes(data)
    return bytes(data)


# -- pyemu img -----------------------------------------------------------------------------------

@needs_qemu_img
def test_create_and_info_agree_with_qemu_img(tmp_path):
    p = img("create", "-f", "qcow2", tmp_path / "v3.qcow2", "64M")
    assert p.returncode == 0 and p.stdout.startswith(f"Formatting '{tmp_path / 'v3.qcow2'}', fmt=qcow2")
    assert img("create", "-f", "qcow2", "-o", "compat=0.10,cluster_size=4096", tmp_path / "v2.qcow2",
               "1G").returncode == 0
    data_image(tmp_path / "base.raw")
    assert img("create", "-f", "qcow2", "-b", "base.raw", "-F", "raw", tmp_path / "ov.qcow2").returncode == 0
    assert img("create", tmp_path / "plain.img", "3M").returncode == 0
    assert (tmp_path / "plain.img").stat().st_size == 3 * MIB
    for name in ("v3.qcow2", "v2.qcow2", "ov.qcow2", "plain.img", "base.raw"):
        ours = img("info", name, cwd=tmp_path)
        theirs = subprocess.run([QEMU_IMG, "info", name], cwd=tmp_path, capture_output=True, text=True)
        assert ours.returncode == 0, ours.stderr
        assert ours.stdout == theirs.stdout
        if name.endswith(".qcow2"):
            assert qemu_img("check", tmp_path / name).stdout.startswith("No errors were found")
    info = img("info", tmp_path / "ov.qcow2").stdout
    assert info == qemu_img("info", tmp_path / "ov.qcow2").stdout
    assert "virtual size: 2 MiB (2097152 bytes)" in info and "backing file: base.raw (actual path: " in info


@needs_qemu_img
def test_check_agrees_with_qemu_img(tmp_path):
    path = tmp_path / "c.qcow2"
    data_image(tmp_path / "in.raw")
    qemu_img("convert", "-O", "qcow2", tmp_path / "in.raw", path)
    header = path.read_bytes()[:72]
    rc_table = struct.unpack(">Q", header[48:56])[0]
    block = struct.unpack(">Q", path.read_bytes()[rc_table:rc_table + 8])[0]
    nclusters = path.stat().st_size // 65536

    def both():
        ours, theirs = img("check", path), qemu_img("check", path, check=False)
        assert (ours.returncode, ours.stdout) == (theirs.returncode, theirs.stdout), (ours, theirs)
        assert sorted(ours.stderr.splitlines()) == sorted(theirs.stderr.splitlines())
        return ours

    assert both().returncode == 0
    with open(path, "r+b") as fh:  # a leak: a cluster added at the end, counted, unused
        fh.seek(nclusters * 65536)
        fh.write(bytes(65536))
        fh.seek(block + nclusters * 2)
        fh.write(struct.pack(">H", 1))
    p = both()
    assert p.returncode == 3 and "1 leaked clusters were found" in p.stdout
    with open(path, "r+b") as fh:  # and a corruption: a data cluster counted as free
        fh.seek(block + (nclusters - 2) * 2)
        fh.write(struct.pack(">H", 0))
    p = both()
    assert p.returncode == 2 and "ERROR cluster" in p.stderr


@needs_qemu_img
def test_convert_both_ways(tmp_path):
    data = data_image(tmp_path / "in.raw", 3 * MIB + 4096)
    assert img("convert", "-O", "qcow2", tmp_path / "in.raw", tmp_path / "out.qcow2").returncode == 0
    qemu_img("compare", "-f", "qcow2", "-F", "raw", tmp_path / "out.qcow2", tmp_path / "in.raw")
    assert qemu_img("check", tmp_path / "out.qcow2").returncode == 0
    qemu_img("convert", "-c", "-O", "qcow2", tmp_path / "in.raw", tmp_path / "comp.qcow2")
    assert img("convert", "-O", "raw", tmp_path / "comp.qcow2", tmp_path / "back.raw").returncode == 0
    assert (tmp_path / "back.raw").read_bytes() == data
    assert img("convert", "-f", "qcow2", "-O", "qcow2", "-o", "compat=0.10", tmp_path / "comp.qcow2",
               tmp_path / "v2.qcow2").returncode == 0
    qemu_img("compare", tmp_path / "v2.qcow2", tmp_path / "in.raw")
    assert "compat: 0.10" in qemu_img("info", tmp_path / "v2.qcow2").stdout


def _img_error(p: subprocess.CompletedProcess) -> str:
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pyemu: error: "), p.stderr
    return lines[0]


def test_img_errors_are_one_line(tmp_path):
    (tmp_path / "raw.img").write_bytes(bytes(MIB))
    assert "vmdk" in _img_error(img("create", "-f", "vmdk", tmp_path / "x", "1M"))
    assert "size" in _img_error(img("create", "-f", "qcow2", tmp_path / "x", "12Q"))
    assert "size is needed" in _img_error(img("create", "-f", "qcow2", tmp_path / "x"))
    assert "No such file" in _img_error(img("info", tmp_path / "missing.qcow2"))
    assert "does not support checks" in _img_error(img("check", tmp_path / "raw.img"))
    assert "backing file" in _img_error(img("create", "-f", "qcow2", "-b", "nope.raw", tmp_path / "y.qcow2"))
    assert "unknown option" in _img_error(img("create", "-f", "qcow2", "-o", "preallocation=full", tmp_path / "z",
                                              "1M"))
    assert "verb" in _img_error(img())
    (tmp_path / "bad.qcow2").write_bytes(b"QFI\xfb" + struct.pack(">I", 9) + bytes(504))
    assert "version 9" in _img_error(img("convert", "-O", "raw", tmp_path / "bad.qcow2", tmp_path / "o.raw"))


def test_drive_errors_are_one_line(tmp_path):
    (tmp_path / "d.img").write_bytes(bytes(MIB))
    d = tmp_path / "d.img"
    assert "unknown key 'cache'" in one_line_error(pyemu("-drive", f"file={d},cache=none", "-display", "none"))
    assert "format=vmdk" in one_line_error(pyemu("-drive", f"file={d},format=vmdk", "-display", "none"))
    assert "already in use" in one_line_error(pyemu("-hda", str(d), "-drive", f"file={d},index=0",
                                                    "-display", "none"))
    assert "not found" in one_line_error(pyemu("-drive", f"file={tmp_path / 'no.qcow2'}", "-display", "none"))
    bad = tmp_path / "feat.qcow2"
    img("create", "-f", "qcow2", bad, "1M")
    with open(bad, "r+b") as fh:
        fh.seek(72)
        fh.write(struct.pack(">Q", 1 << 40))
    assert "unsupported qcow2 feature" in one_line_error(pyemu(str(bad), "-display", "none"))


# -- booting qcow2 disks -------------------------------------------------------------------------

# Prints to COM1, copies itself to LBA 1 with INT 13h AH=03h and leaves through isa-debug-exit (0x10:
# status 33; 0x11, status 35, when the write failed).
BODY = """
    mov [0x500], dl         ; kept outside the sector, which is copied as it was loaded
    mov si, hello
    call puts
    mov ax, 0x0301
    mov cx, 0x0002
    xor dh, dh
    mov dl, [0x500]
    mov bx, 0x7c00
    int 0x13
    mov al, 0x11
    jc .out
    mov si, wrote
    call puts
    mov al, 0x10
.out:
    out 0xf4, al
    jmp done
puts:
    lodsb
    test al, al
    jz .ret
    mov dx, 0x3fd
    mov ah, al
.wait:
    in al, dx
    test al, 0x20
    jz .wait
    mov al, ah
    mov dx, 0x3f8
    out dx, al
    jmp puts
.ret:
    ret
hello: db "qcow2 boot", 13, 10, 0
wrote: db "wrote LBA 1", 13, 10, 0
"""
EXPECTED_SERIAL = b"qcow2 boot\r\nwrote LBA 1\r\n"
EXIT_OK = (0x10 << 1) | 1


def _boot_disk(tmp_path: Path) -> tuple[Path, bytes]:
    sector = boot_sector(BODY)
    raw = tmp_path / "boot.raw"
    raw.write_bytes(sector + bytes(4 * MIB - 512))
    return raw, sector


def _pyemu_boot(tmp_path: Path, *args: str) -> bytes:
    out = tmp_path / "com1.txt"
    p = pyemu(*args, "-display", "none", "-serial", f"file:{out}", "-icount",
              "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", "--timeout", "120")
    assert p.returncode == EXIT_OK, p.stderr
    return out.read_bytes()


@needs_nasm
@needs_qemu_img
def test_boots_qemu_img_qcow2_and_writes_through_int13(tmp_path):
    raw, sector = _boot_disk(tmp_path)
    disk = tmp_path / "boot.qcow2"
    qemu_img("convert", "-f", "raw", "-O", "qcow2", raw, disk)
    before = hashlib.sha256(disk.read_bytes()).hexdigest()
    # -snapshot: the guest's write goes to the overlay, the file is untouched
    assert _pyemu_boot(tmp_path, str(disk), "-snapshot") == EXPECTED_SERIAL
    assert _pyemu_boot(tmp_path, "-drive", f"file={disk},snapshot=on") == EXPECTED_SERIAL
    assert hashlib.sha256(disk.read_bytes()).hexdigest() == before
    # readonly=on: the write fails (AH=03h returns CF), the guest says so with exit code 0x11
    out = tmp_path / "ro.txt"
    p = pyemu("-drive", f"file={disk},readonly=on", "-display", "none", "-serial", f"file:{out}", "-icount",
              "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", "--timeout", "120")
    assert p.returncode == (0x11 << 1) | 1, p.stderr
    assert out.read_bytes() == b"qcow2 boot\r\n"
    assert hashlib.sha256(disk.read_bytes()).hexdigest() == before
    assert _pyemu_boot(tmp_path, "-drive", f"file={disk},format=qcow2,if=ide,index=0,media=disk") \
        == EXPECTED_SERIAL
    assert qemu_img("check", disk).stdout.startswith("No errors were found")
    qemu_img("convert", "-O", "raw", disk, tmp_path / "after.raw")
    after = (tmp_path / "after.raw").read_bytes()
    assert after[512:1024] == sector and after[1024:] == bytes(4 * MIB - 1024)


@needs_nasm
@needs_qemu_img
@needs_qemu_system
def test_pyemu_written_qcow2_boots_in_qemu(tmp_path):
    raw, sector = _boot_disk(tmp_path)
    disk = tmp_path / "made-by-pyemu.qcow2"
    assert img("convert", "-O", "qcow2", raw, disk).returncode == 0
    assert qemu_img("check", disk).stdout.startswith("No errors were found")
    p = subprocess.run([QEMU_SYSTEM, "-display", "none", "-serial", "stdio", "-no-reboot", "-nodefaults",
                        "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
                        "-drive", f"file={disk},format=qcow2,if=ide,index=0"],
                       capture_output=True, timeout=120, stdin=subprocess.DEVNULL)
    assert p.returncode == EXIT_OK, p.stderr
    assert EXPECTED_SERIAL in p.stdout
    # qemu's write through its own qcow2 driver into pyemu's file, then pyemu reads it
    assert qemu_img("check", disk).stdout.startswith("No errors were found")
    assert img("convert", "-O", "raw", disk, tmp_path / "back.raw").returncode == 0
    assert (tmp_path / "back.raw").read_bytes()[512:1024] == sector


@needs_nasm
@needs_qemu_img
def test_qcow2_floppy(tmp_path):
    sector = boot_sector(BODY)
    raw = tmp_path / "floppy.raw"
    raw.write_bytes(sector + bytes(1440 * 1024 - 512))
    disk = tmp_path / "floppy.qcow2"
    assert img("convert", "-O", "qcow2", raw, disk).returncode == 0
    # probed as a floppy by its virtual size, as a raw 1.44 MB image is
    assert _pyemu_boot(tmp_path, str(disk), "-snapshot") == EXPECTED_SERIAL
    assert _pyemu_boot(tmp_path, "-drive", f"file={disk},if=floppy,index=0", "-boot", "a") == EXPECTED_SERIAL
    assert qemu_img("check", disk).stdout.startswith("No errors were found")
    qemu_img("convert", "-O", "raw", disk, tmp_path / "after.raw")
    assert (tmp_path / "after.raw").read_bytes()[512:1024] == sector
