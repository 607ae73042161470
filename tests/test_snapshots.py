"""Machine snapshots (emu/snapshot.py): savevm / loadvm / delvm / info snapshots through the Python API,
the monitor, QMP and `-loadvm`, against tests/guests/snapshot_ticker.asm (PIT and RTC interrupts on,
checked in assembled as snapshot_ticker.bin)."""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
import subprocess
import time
import types
from collections import deque
from pathlib import Path

import numpy as np
import pytest

import emu
from emu.snapshot import MAGIC, SnapshotError
from tests.test_boot_cli import one_line_error, pyemu

GUEST = Path(__file__).parent / "guests" / "snapshot_ticker.asm"
GUEST_BIN = GUEST.with_suffix(".bin")
RAM_MB = 8
FIRST, THEN = 2_345_679, 8_000_000  # instructions before the savevm, and after it


@pytest.fixture()
def floppy(tmp_path) -> str:
    path = tmp_path / "ticker.img"
    with open(path, "wb") as fh:
        fh.write(GUEST_BIN.read_bytes())
        fh.truncate(1440 * 1024)
    return str(path)


def machine(img: str, **kw) -> emu.Machine:
    return emu.Machine(fda=img, ram_mb=RAM_MB, snapshot=True, **kw)


def record(pc: emu.Machine, serial_from: int) -> tuple:
    """What must come out the same: instructions, registers, RAM and what COM1 got since `serial_from`."""
    ram = hashlib.sha256(pc.pc.core.mem[: RAM_MB << 20].tobytes()).hexdigest()  # pc.read is slow for 8 MiB
    return pc.instructions, pc.registers(), ram, pc.serial_output[serial_from:]


def test_checked_in_image_matches_its_source(tmp_path):
    if shutil.which("nasm") is None:
        pytest.skip("nasm is not installed")
    out = tmp_path / "t.bin"
    subprocess.run(["nasm", "-f", "bin", "-o", str(out), str(GUEST)], check=True)
    assert out.read_bytes() == GUEST_BIN.read_bytes()


def test_round_trip_is_deterministic_under_icount(floppy):
    with machine(floppy) as pc:
        assert pc.run(instructions=FIRST) == "limit"
        ticks = pc.read(0x500, 4, physical=True)
        assert ticks[0] > 10 and ticks[2] > 10  # both timers interrupt by now
        path = pc.savevm("mid")
        assert path == floppy + ".pyemu-snapshots/mid.pyvm"  # beside the first writable disk
        at_save = record(pc, len(pc.serial_output))
        start = len(pc.serial_output)
        pc.run(instructions=THEN)
        went_on = record(pc, start)
        assert len(went_on[3]) >= 3  # the letters of 48+ PIT ticks
        pc.loadvm("mid")  # the same machine, back
        assert record(pc, len(pc.serial_output))[:3] == at_save[:3]
        start = len(pc.serial_output)
        pc.run(instructions=THEN)
        assert record(pc, start) == went_on
    with machine(floppy) as fresh:  # a new machine from the file
        fresh.loadvm("mid")
        assert fresh.instructions == at_save[0]
        fresh.run(instructions=THEN)
        assert record(fresh, 0) == went_on


# -- every piece of state comes back: a generic walk over the devices' attributes --------------------
HOST_SIDE = {"clock", "backend", "m", "core", "st", "ram", "fd", "compile_hook"}


def _plain(obj, seen: set):
    """Device objects as nested plain data (callables and host-side objects left out), to compare
    a restored machine with the one that was saved."""
    from emu.clock import Timer

    if isinstance(obj, (bool, int, float, str, type(None))):
        return obj
    if isinstance(obj, (np.integer, np.bool_)):
        return int(obj)
    if isinstance(obj, (bytes, bytearray, memoryview, np.ndarray)):
        return hashlib.sha256(bytes(obj) if not isinstance(obj, np.ndarray) else obj.tobytes()).hexdigest()
    if isinstance(obj, (list, tuple, deque)):
        return [_plain(x, seen) for x in obj]
    if isinstance(obj, dict):
        return {str(k): _plain(v, seen) for k, v in obj.items()}
    if isinstance(obj, Timer):
        return ["timer", obj.name, obj.deadline]
    if callable(obj) or isinstance(obj, types.ModuleType) or id(obj) in seen:
        return "-"
    if not type(obj).__module__.startswith(("emu.devices", "bios")):
        return type(obj).__name__
    seen.add(id(obj))
    fields = vars(obj) if hasattr(obj, "__dict__") else {s: getattr(obj, s) for s in type(obj).__slots__}
    return {k: _plain(v, seen) for k, v in fields.items() if k not in HOST_SIDE}


def _whole(pc: emu.Machine) -> dict:
    m = pc.pc
    seen: set = set()
    out = {"devices": [_plain(d, seen) for d in m.devices], "bios": _plain(m.bios, seen),
           "pmap": _plain(m.core.phys.pmap, seen), "mem": _plain(m.core.mem, seen),
           "cpu": m.core.st.tolist(), "clock": [m.clock.now(), m.clock.instructions,
                                                [(t.name, t.deadline) for t in m.clock.armed_timers()]],
           "disks": [None if d is None else _plain(d.overlay, seen) for d in m.disks]}
    pci_vga = m.pci_vga
    if pci_vga is not None and pci_vga.rom_base is None:  # where an unmapped ROM BAR last was: moot
        out["devices"][m.devices.index(pci_vga)]["rom_region"]["base"] = None
    return out


def test_a_restored_machine_equals_the_saved_one_attribute_by_attribute(floppy, tmp_path):
    disk = tmp_path / "disk.img"
    disk.write_bytes(bytes(1 << 20))
    with emu.Machine(fda=floppy, hda=str(disk), ram_mb=RAM_MB, snapshot=True) as pc:
        pc.run(instructions=FIRST)
        pc.pc.disks[0].write_sectors(7, b"A" * 512)  # the -snapshot overlay is part of the machine
        pc.savevm("w")
        saved = _whole(pc)
        pc.pc.disks[0].write_sectors(7, b"B" * 512)
        pc.pc.disks[0].write_sectors(9, b"C" * 512)
    assert (tmp_path / "disk.img.pyemu-snapshots" / "w.pyvm").exists()  # beside the first hard disk
    with emu.Machine(fda=floppy, hda=str(disk), ram_mb=RAM_MB, snapshot=True) as fresh:
        before = _whole(fresh)
        fresh.loadvm("w")
        assert _whole(fresh) == saved
        assert before != saved
        assert fresh.pc.disks[0].read_sectors(7, 1) == b"A" * 512
        assert fresh.pc.disks[0].read_sectors(9, 1) == bytes(512)
    assert disk.read_bytes() == bytes(1 << 20)  # -snapshot: the file was never written


# -- the API's errors and the file format ---------------------------------------------------------------
def _bad_files(directory: Path, good: bytes) -> dict[str, bytes]:
    head_len = struct.unpack("<I", good[12:16])[0]
    header = json.loads(good[16:16 + head_len])
    header["fingerprint"]["ram_mb"] = 64
    raw = json.dumps(header).encode()
    wrong_ram = MAGIC + struct.pack("<II", 1, len(raw)) + raw + good[16 + head_len:]
    flipped = bytearray(good)
    flipped[-100] ^= 0xFF
    return {"truncated": good[: len(good) // 2], "garbage": bytes(range(256)) * 64, "empty": b"",
            "version": good[:8] + struct.pack("<I", 99) + good[12:], "ram": wrong_ram,
            "flipped": bytes(flipped), "header-only": good[:16 + head_len // 2]}


BAD_FRAGMENTS = {"truncated": "truncated snapshot", "garbage": "not a pyemu snapshot",
                 "empty": "not a pyemu snapshot", "version": "snapshot format version 99",
                 "ram": "saved with 64 MiB of RAM, this machine has 8 MiB", "flipped": "damaged snapshot",
                 "header-only": "truncated snapshot (header)"}


def test_bad_snapshot_files_are_one_line_errors_and_change_nothing(floppy):
    with machine(floppy) as pc:
        pc.run(instructions=FIRST)
        good = Path(pc.savevm("good")).read_bytes()
        directory = Path(floppy + ".pyemu-snapshots")
        regs = pc.registers()
        for name, data in _bad_files(directory, good).items():
            (directory / f"{name}.pyvm").write_bytes(data)
            with pytest.raises(SnapshotError) as exc:
                pc.loadvm(name)
            assert BAD_FRAGMENTS[name] in str(exc.value) and "\n" not in str(exc.value), (name, exc.value)
            assert pc.registers() == regs  # checked before anything changed
        for name, fragment in (("missing", "Snapshot 'missing' does not exist"),
                               ("../x", "invalid snapshot name"), ("", "invalid snapshot name")):
            with pytest.raises(SnapshotError, match=fragment.replace("(", r"\(")):
                pc.loadvm(name)
        names = sorted(s["name"] for s in pc.snapshots())
        assert names == ["flipped", "good", "ram", "truncated"]  # listed from headers: the readable ones
        pc.delvm("good")
        with pytest.raises(SnapshotError, match="does not exist"):
            pc.delvm("good")
        assert pc.run(instructions=1000) == "limit"


def test_a_disk_written_in_place_cannot_be_snapshotted(floppy):
    with emu.Machine(fda=floppy, ram_mb=RAM_MB) as pc:  # no -snapshot: the floppy is written in place
        pc.run(instructions=1000)
        with pytest.raises(SnapshotError, match="'floppy0' is writable but does not support snapshots"):
            pc.savevm("x")


def test_a_machine_without_disks_keeps_them_in_the_cache_dir_or_the_env_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("PYEMU_SNAPSHOT_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with emu.Machine(ram_mb=RAM_MB) as pc:  # nothing to boot: the BIOS says so and waits
        pc.run(instructions=200_000)
        assert pc.savevm("a") == str(tmp_path / "cache" / "pyemu" / "snapshots" / "a.pyvm")
        monkeypatch.setenv("PYEMU_SNAPSHOT_DIR", str(tmp_path / "env"))
        assert pc.savevm("b") == str(tmp_path / "env" / "b.pyvm")
        assert [s["name"] for s in pc.snapshots()] == ["b"]
        text = pc.hmp("info snapshots")
        assert text.splitlines()[0] == "List of snapshots present on all disks:"
        assert text.splitlines()[2].split()[:2] == ["1", "b"]
        assert pc.hmp("delvm b") == ""
        assert pc.hmp("info snapshots") == "There is no snapshot available.\n"
        assert pc.hmp("loadvm b") == "Error: Snapshot 'b' does not exist\n"
        assert pc.hmp("loadvm") == "loadvm: a snapshot name is needed\n"


# -- the command line: -loadvm ----------------------------------------------------------------------------
def test_loadvm_option_resumes_a_saved_machine(floppy, tmp_path):
    with emu.Machine(fda=floppy, ram_mb=RAM_MB, snapshot=True) as pc:
        pc.run(instructions=FIRST)
        pc.savevm("cli")
        start = len(pc.serial_output)
        pc.run(instructions=THEN)
        expected = pc.serial_output[start:]
    com1 = tmp_path / "com1.txt"
    p = pyemu("-fda", floppy, "-snapshot", "-m", str(RAM_MB), "-icount", "shift=3", "-display", "none",
              "-serial", f"file:{com1}", "-loadvm", "cli", "--timeout", "2")
    assert p.returncode == 124, p.stderr.decode()
    got = com1.read_bytes()
    # a fresh boot would start at 'b'; the resumed machine goes on exactly as the saved one did
    assert len(got) >= 3 and got[:len(expected)] == expected[:len(got)], (got, expected)


@pytest.mark.parametrize("kind", ["missing", "truncated", "version", "ram"])
def test_loadvm_option_errors_are_one_line(floppy, kind):
    if kind != "missing":
        with emu.Machine(fda=floppy, ram_mb=RAM_MB, snapshot=True) as pc:
            pc.run(instructions=10_000)
            good = Path(pc.savevm("x")).read_bytes()
        Path(floppy + ".pyemu-snapshots/x.pyvm").write_bytes(_bad_files(Path(), good)[kind])
    p = pyemu("-fda", floppy, "-snapshot", "-m", str(RAM_MB), "-icount", "shift=3", "-display", "none",
              "-loadvm", "x")
    line = one_line_error(p)
    assert p.returncode == 1
    assert line.startswith("pyemu: error: -loadvm x: ")
    fragment = {"missing": "Snapshot 'x' does not exist", "truncated": "truncated snapshot",
                "version": "format version 99", "ram": "64 MiB of RAM, this machine has 8 MiB"}[kind]
    assert fragment in line, line


# -- the monitor and QMP -------------------------------------------------------------------------------------
def _launch(tmp_path: Path, *args: str, stdin=subprocess.DEVNULL) -> subprocess.Popen:
    import os
    import sys

    from tests.test_boot_cli import ROOT

    env = dict(os.environ, PYTHONPATH=str(ROOT), PYEMU_SNAPSHOT_DIR=str(tmp_path / "snaps"))
    return subprocess.Popen([sys.executable, "-m", "emu", "boot", "-display", "none", "-m", str(RAM_MB), *args],
                            cwd=ROOT, env=env, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _ticks(session) -> int:
    return int(session.cmd("xp /1h 0x500").split()[-1], 16)


def test_monitor_commands_over_stdio(floppy, tmp_path):
    from tests.test_monitor import finish, pipe_session

    proc = _launch(tmp_path, "-fda", floppy, "-snapshot", "-S", "-monitor", "stdio", stdin=subprocess.PIPE)
    try:
        s = pipe_session(proc)
        assert s.cmd("info snapshots") == "There is no snapshot available.\n"
        s.cmd("cont")
        time.sleep(0.5)
        s.cmd("stop")
        regs = s.cmd("info registers")
        ticks = _ticks(s)
        assert ticks > 0
        assert s.cmd("savevm one") == ""
        listing = s.cmd("info snapshots").splitlines()
        assert listing[0] == "List of snapshots present on all disks:" and listing[2].split()[:2] == ["1", "one"]
        s.cmd("cont")
        time.sleep(0.3)
        s.cmd("stop")
        assert _ticks(s) > ticks and s.cmd("info registers") != regs
        assert s.cmd("loadvm one") == ""
        assert s.cmd("info registers") == regs and _ticks(s) == ticks
        assert s.cmd("info status") == "VM status: paused\n"  # loadvm keeps the run state
        s.cmd("cont")
        time.sleep(0.3)
        assert s.cmd("savevm two") == "" and s.cmd("loadvm two") == ""  # while running
        before = _ticks(s)
        time.sleep(0.3)
        assert _ticks(s) > before  # the timers go on after a loadvm in the running loop
        assert s.cmd("info status") == "VM status: running\n"
        assert s.cmd("loadvm nosuch") == "Error: Snapshot 'nosuch' does not exist\n"
        assert s.cmd("savevm a b") == "savevm: extraneous characters at the end of line\n"
        assert s.cmd("delvm one") == ""
        assert [ln.split()[1] for ln in s.cmd("info snapshots").splitlines()[2:]] == ["two"]
        (tmp_path / "snaps" / "junk.pyvm").write_bytes(b"junk")
        answer = s.cmd("loadvm junk")
        assert answer.startswith("Error: ") and "not a pyemu snapshot" in answer and answer.count("\n") == 1
        s.writer(b"quit\n")
        status, _ = finish(proc)
    finally:
        proc.kill()
    assert status == 0


def test_monitor_on_a_unix_socket_with_the_in_memory_demo_floppy(tmp_path):
    import socket

    from tests.test_monitor import connect, finish, socket_session

    path = str(tmp_path / "mon.sock")
    proc = _launch(tmp_path, "--demo", "-monitor", f"unix:{path},server,nowait")
    try:
        s = socket_session(connect(socket.AF_UNIX, path))
        time.sleep(0.5)
        s.cmd("stop")
        screen = tmp_path / "a.txt"
        s.cmd(f"screendump {screen}")
        assert s.cmd("savevm demo") == ""
        assert (tmp_path / "snaps" / "demo.pyvm").exists()
        s.cmd("sendkey h")
        s.cmd("sendkey i")
        s.cmd("cont")
        time.sleep(0.5)
        s.cmd("stop")
        s.cmd(f"screendump {tmp_path / 'b.txt'}")
        assert (tmp_path / "b.txt").read_text() != screen.read_text()  # the demo echoed "hi"
        assert s.cmd("loadvm demo") == ""
        s.cmd(f"screendump {tmp_path / 'c.txt'}")
        assert (tmp_path / "c.txt").read_text() == screen.read_text()
        s.writer(b"quit\n")
        status, _ = finish(proc)
    finally:
        proc.kill()
    assert status == 0


def test_qmp_human_monitor_command(floppy, tmp_path):
    import asyncio

    from tests.test_qmp import QMPClient, run_session

    if QMPClient is None:
        pytest.skip("qemu.qmp is not installed (pip install qemu.qmp)")
    path = str(tmp_path / "qmp.sock")
    proc = _launch(tmp_path, "-fda", floppy, "-snapshot", "-qmp", f"unix:{path},server,nowait")

    async def body(qmp):
        async def hmp(line: str) -> str:
            return await qmp.execute("human-monitor-command", {"command-line": line})

        await asyncio.sleep(0.3)
        await qmp.execute("stop")
        regs = await hmp("info registers")
        assert await hmp("savevm q1") == ""
        assert "q1" in await hmp("info snapshots")
        await qmp.execute("cont")
        await asyncio.sleep(0.3)
        await qmp.execute("stop")
        assert await hmp("info registers") != regs
        assert await hmp("loadvm q1") == ""
        assert await hmp("info registers") == regs
        assert await hmp("loadvm q2") == "Error: Snapshot 'q2' does not exist\r\n"
        assert await hmp("delvm q1") == ""
        await qmp.execute("quit")

    assert run_session(proc, path, body) == 0
