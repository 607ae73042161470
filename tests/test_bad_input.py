"""Bad input to `pyemu boot`, one table: the promise of emu/cli.py (and QEMU's habit) that every
mistake a user can make on the command line ends in exit status 1 and exactly one stderr line
`pyemu: error: ...`, never a traceback, and before the engine is loaded (so it is quick).

Paths are tried missing, empty, truncated, as garbage, as a directory and as something endless or
blocking (/dev/zero, a FIFO) for each option that takes a file, where that is a mistake. Not rows,
because they are not mistakes: garbage as -hda/-fda/-cdrom (a raw image has no format: any bytes are
a disk, which the BIOS finds not bootable), garbage or an empty file as -initrd (any bytes are an
initrd), and 64 KiB of garbage as -bios (any bytes are a ROM).
"""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# `python -m emu` as a user runs it; afterwards the names of the engine modules that got loaded
# are written to $PYEMU_MODULES_OUT, so that a row can assert the engine was never imported.
RUNNER = """
import os, runpy, sys
sys.argv[0] = "pyemu"
try:
    runpy.run_module("emu", run_name="__main__", alter_sys=True)
finally:
    with open(os.environ["PYEMU_MODULES_OUT"], "w") as fh:
        fh.write(" ".join(m for m in ("emu.cpu.core", "emu.cpu.interp") if m in sys.modules))
"""


def _multiboot_kernel() -> bytes:
    """A valid multiboot (a.out kludge) kernel: cli; hlt at 1 MiB + 32."""
    magic, flags = 0x1BADB002, 0x10000
    head = struct.pack("<III", magic, flags, -(magic + flags) & 0xFFFFFFFF)
    return head + struct.pack("<5I", 0x100000, 0x100000, 0, 0, 0x100020) + b"\xfa\xf4"


def _truncated_bzimage() -> bytes:
    """A bzImage header (boot protocol 2.15, loaded high) promising 4 setup sectors it lacks."""
    k = bytearray(0x400)
    k[0x1F1] = 4
    k[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", k, 0x206, 0x20F)
    k[0x211] = 0x01
    return bytes(k)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad-input")
    paths = {name: d / name for name in ("missing", "empty", "truncated", "garbage", "dir", "kernel",
                                         "bzimage", "initrd_3m", "initrd_1m5", "rom_1000")}
    paths["empty"].write_bytes(b"")
    paths["truncated"].write_bytes(b"\xeb\xfe" * 50)  # 100 bytes: less than one sector
    paths["garbage"].write_bytes(bytes((i * 7919 + 13) & 0xFF for i in range(64 * 1024)))
    paths["dir"].mkdir()
    paths["kernel"].write_bytes(_multiboot_kernel())
    paths["bzimage"].write_bytes(_truncated_bzimage())
    paths["initrd_3m"].write_bytes(bytes(3 << 20))
    paths["initrd_1m5"].write_bytes(bytes(3 << 19))
    paths["rom_1000"].write_bytes(b"\x90" * 1000)
    paths["fifo"] = d / "fifo"
    os.mkfifo(paths["fifo"])  # opening it for reading would wait for a writer forever
    paths["devzero"] = Path(os.devnull).with_name("zero")  # endless: reading it all never ends
    with socket.socket() as busy:  # a port in use for -gdb
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        paths["busy_port"] = busy.getsockname()[1]
        yield {k: str(v) for k, v in paths.items()}


DISK_ROWS = [
    (f"{opt}-{what}", (opt, f"{{{what}}}"), fragment)
    for opt in ("-hda", "-fda", "-cdrom")
    for what, fragment in (("missing", "not found"), ("empty", "is empty"),
                           ("truncated", "smaller than one sector"), ("dir", "is a directory"))
]

ROWS = DISK_ROWS + [
    ("positional-missing", ("{missing}",), "not found"),
    ("-cdrom-fifo", ("-cdrom", "{fifo}"), "is not a file or a block device"),
    ("-hda-char-device", ("-snapshot", "-hda", "{devzero}"), "is not a file or a block device"),
    ("-kernel-endless", ("-kernel", "{devzero}"), "not a regular file"),
    ("-kernel-bigger-than-ram", ("-kernel", "{initrd_3m}", "-m", "2"), "is too big"),
    ("-initrd-endless", ("-kernel", "{kernel}", "-initrd", "{devzero}"), "not a regular file"),
    ("-bios-endless", ("-bios", "{devzero}"), "not a regular file"),
    ("one-image-two-drives", ("-hda", "{garbage}", "-cdrom", "{garbage}"), "is both -hda and -cdrom"),
    ("-kernel-missing", ("-kernel", "{missing}"), "No such file or directory"),
    ("-kernel-empty", ("-kernel", "{empty}"), "not a Linux bzImage or a multiboot image"),
    ("-kernel-truncated", ("-kernel", "{bzimage}"), "truncated bzImage"),
    ("-kernel-garbage", ("-kernel", "{garbage}"), "not a Linux bzImage or a multiboot image"),
    ("-kernel-dir", ("-kernel", "{dir}"), "Is a directory"),
    ("-initrd-missing", ("-kernel", "{kernel}", "-initrd", "{missing}"), "No such file or directory"),
    ("-initrd-dir", ("-kernel", "{kernel}", "-initrd", "{dir}"), "Is a directory"),
    ("-initrd-no-room-beside-kernel", ("-kernel", "{kernel}", "-initrd", "{initrd_1m5}", "-m", "2"),
     "does not fit in RAM"),
    ("-initrd-bigger-than-ram", ("-kernel", "{kernel}", "-initrd", "{initrd_3m}", "-m", "2"), "is too big"),
    ("-initrd-without-kernel", ("-initrd", "{garbage}"), "need -kernel"),
    ("-loadvm-missing", ("-hda", "{garbage}", "-snapshot", "-loadvm", "nosuch"), "Snapshot 'nosuch' does not exist"),
    ("-loadvm-bad-name", ("-hda", "{garbage}", "-snapshot", "-loadvm", "../x"), "invalid snapshot name"),
    ("-bios-missing", ("-bios", "{missing}"), "No such file or directory"),
    ("-bios-empty", ("-bios", "{empty}"), "must be 64, 128, 192 or 256 KiB"),
    ("-bios-truncated", ("-bios", "{rom_1000}"), "must be 64, 128, 192 or 256 KiB"),
    ("-bios-dir", ("-bios", "{dir}"), "Is a directory"),
    ("-m-0", ("-m", "0"), "-m 0: RAM must be between 1 and 3584 MiB"),
    ("-m-abc", ("-m", "abc"), "bad memory size 'abc'"),
    ("-m-100000", ("-m", "100000"), "-m 100000: RAM must be between 1 and 3584 MiB"),
    ("-smp-0", ("-smp", "0"), "-smp 0: cpus must be a number of at least 1"),
    ("-smp-x", ("-smp", "x"), "-smp x: cpus must be a number of at least 1"),
    ("-smp-2", ("-smp", "2"), "-smp 2: pyemu has one CPU"),
    ("-smp-cores-2", ("-smp", "1,cores=2"), "pyemu has one CPU"),
    ("-boot-z", ("-boot", "z"), "-boot z: drives are a (floppy), c (disk), d (CD)"),
    ("-boot-empty-order", ("-boot", "order="), "drives are a (floppy)"),
    ("-boot-unknown-key", ("-boot", "frob=1"), "unknown parameter 'frob'"),
    ("-device-unknown", ("-device", "e1000"), "-device e1000: unsupported device"),
    ("-device-bad-property", ("-device", "isa-debug-exit,iobase=zz"), "bad number 'zz'"),
    ("unknown-option", ("-frobnicate",), "unrecognized arguments: -frobnicate"),
    ("-drive-bad-format", ("-drive", "file={garbage},format=vmdk"), "-drive format=vmdk: expected raw or qcow2"),
    ("-drive-unknown-key", ("-drive", "file={garbage},bogus=1"), "-drive: unknown key 'bogus'"),
    ("-drive-twice-one-file", ("-drive", "file={garbage}", "-hdb", "{garbage}"), "is both"),
    ("-gdb-port-in-use", ("-gdb", "tcp::{busy_port}"), "Address already in use"),
    ("-gdb-bad-port", ("-gdb", "tcp::99999"), "port 99999 out of range"),
    ("-icount-bad", ("-icount", "shift=x"), "-icount shift=x: expected"),
    ("-d-unknown-item", ("-d", "frob"), "unknown log item 'frob'"),
    ("-D-dir", ("-d", "int", "-D", "{dir}"), "Is a directory"),
    ("-serial-bad", ("-serial", "frob"), "unsupported serial backend 'frob'"),
    ("-serial-dir", ("-serial", "file:{dir}"), "Is a directory"),
    ("-display-unknown", ("-display", "sdl"), "supported displays are curses and none"),
    ("-machine-unknown", ("-machine", "q35"), "pyemu has one machine"),
    ("--timeout-0", ("--timeout", "0"), "the timeout must be more than 0 seconds"),
    ("--stats-json-dir", ("--stats-json", "{dir}"), "Is a directory"),
    ("--screendump-no-dir", ("--screendump", "{missing}/shot.png"), "No such directory"),
]


@pytest.mark.parametrize("args, fragment", [pytest.param(a, f, id=i) for i, a, f in ROWS])
def test_bad_input_is_one_line_status_1_and_no_engine(files, tmp_path, args, fragment):
    argv = [a.format(**files) for a in args]
    modules = tmp_path / "modules"
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYEMU_MODULES_OUT=str(modules))
    # a row that wrongly boots ends at --timeout (status 124) rather than hanging the suite
    p = subprocess.run([sys.executable, "-c", RUNNER, "boot", "--timeout", "30", *argv], capture_output=True,
                       stdin=subprocess.DEVNULL, cwd=ROOT, env=env, timeout=300)
    err = p.stderr.decode()
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("pyemu: error: "), err
    assert fragment.format(**files) in lines[0]
    assert p.returncode == 1
    assert modules.read_text() == "", f"the engine was loaded: {modules.read_text()}"
