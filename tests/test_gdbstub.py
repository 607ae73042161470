"""The gdb remote stub (emu/gdbstub.py): the packet layer over a socket pair, the commands against an
in-process machine, the CLI's errors, and end-to-end sessions of the real gdb against `pyemu boot`."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from emu import gdbstub as G
from tests.cpu.guestasm import needs_nasm
from tests.test_boot_cli import ROOT, RUN_TIMEOUT, one_line_error, pyemu, write_floppy
from tests.test_machine import boot_sector

GDB = shutil.which("gdb")
needs_gdb = pytest.mark.skipif(GDB is None, reason="gdb is not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the packet layer ----------------------------------------------------------------------------------

def test_checksum_and_frame():
    assert G.checksum(b"") == 0
    assert G.checksum(b"OK") == (ord("O") + ord("K")) & 0xFF
    assert G.frame(b"OK") == b"$OK#9a"
    assert G.frame(b"qSupported") == b"$qSupported#37"


def test_escape_round_trip():
    raw = bytes(range(256))
    esc = G.escape(raw)
    for special in b"#$*":
        assert special not in esc
    assert G.unescape(esc) == raw
    assert G.escape(b"a}b#") == b"a}]b}\x03"
    assert G.unescape(b"}]") == b"}"


def test_reader_framing():
    r = G.PacketReader()
    assert r.feed(b"+$g#6") == []  # incomplete: held back
    assert r.feed(b"7") == [("packet", b"g")]
    events = r.feed(b"$m0,4#fd\x03-$?#3f$bad#00")
    assert events == [("packet", b"m0,4"), ("interrupt",), ("nak",), ("packet", b"?"), ("bad",)]
    # an escaped byte in the body is decoded, and the checksum is over the escaped form
    body = b"X0,1:}]"
    assert r.feed(G.frame(body)) == [("packet", b"X0,1:}")]


def test_connection_acks_naks_and_no_ack_mode():
    a, b = socket.socketpair()
    conn = G.Connection(a)
    try:
        b.sendall(G.frame(b"g"))
        assert conn.poll(2) == [("packet", b"g")]
        assert b.recv(16) == b"+"
        conn.send("OK")
        assert b.recv(16) == b"$OK#9a"
        b.sendall(b"-")  # gdb did not get it: send it again
        assert conn.poll(0.2) == []
        assert b.recv(16) == b"$OK#9a"
        b.sendall(b"$g#00")  # bad checksum: asked again
        assert conn.poll(0.2) == []
        assert b.recv(16) == b"-"
        conn.no_ack = True
        b.sendall(G.frame(b"?") + b"\x03")
        assert conn.poll(2) == [("packet", b"?"), ("interrupt",)]
        b.setblocking(False)
        with pytest.raises(BlockingIOError):
            b.recv(16)  # no '+' in no-ack mode
        b.close()
        assert conn.poll(2) == [("eof",)]
    finally:
        conn.close()
        b.close()


def test_parse_spec():
    assert G.parse_spec("tcp::1234") == ("", 1234)
    assert G.parse_spec("tcp:localhost:4321") == ("localhost", 4321)
    assert G.parse_spec("tcp:127.0.0.1:99,server,nowait") == ("127.0.0.1", 99)
    assert G.parse_spec("none") is None
    for bad in ("udp::1234", "tcp:1234", "tcp::", "tcp::x", "tcp::70000", "tcp::1234,frob", "stdio"):
        with pytest.raises(G.GdbSpecError):
            G.parse_spec(bad)


def test_target_xml_is_gdbs_i386_core():
    import xml.etree.ElementTree as ET

    root = ET.fromstring(G.target_xml().split("\n", 2)[2])
    assert root.find("architecture").text == "i386"
    feature = root.find("feature")
    assert feature.get("name") == "org.gnu.gdb.i386.core"
    names = [r.get("name") for r in feature.findall("reg")]
    assert names[:16] == ["eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi", "eip", "eflags",
                          "cs", "ss", "ds", "es", "fs", "gs"]
    assert names[16:24] == [f"st{i}" for i in range(8)]
    assert names[24:] == ["fctrl", "fstat", "ftag", "fiseg", "fioff", "foseg", "fooff", "fop"]
    assert [int(r.get("bitsize")) // 8 for r in feature.findall("reg")] == list(G.REG_SIZES)


# -- commands against an in-process machine -------------------------------------------------------------

def make_stub(floppy: bytes | None = None) -> G.GdbStub:
    from emu.devices.diskimage import DiskImage
    from emu.machine import Machine, MachineConfig

    cfg = MachineConfig(ram_mb=8)
    if floppy is not None:
        cfg.floppy_images = [DiskImage.from_bytes(bytearray(floppy).ljust(1440 * 1024, b"\0"))]
    m = Machine(cfg)
    listener = G.Listener(f"tcp:127.0.0.1:{free_port()}")
    s = G.GdbStub(m, listener, start_paused=True)
    a, b = socket.socketpair()
    s.conn = G.Connection(a)
    s.peer = b
    return s


def close_stub(s: G.GdbStub) -> None:
    s.finish(0)
    s.peer.close()
    s.m.close()


@pytest.fixture()
def stub():
    s = make_stub()
    yield s
    close_stub(s)


def test_registers(stub):
    from emu.cpu import state as S

    st = stub.st
    regs = bytes.fromhex(stub.handle(b"g"))
    assert len(regs) == sum(G.REG_SIZES)
    assert int.from_bytes(regs[32:36], "little") == 0xFFF0  # eip at reset
    assert int.from_bytes(regs[40:44], "little") == 0xF000  # cs
    assert int.from_bytes(regs[36:40], "little") == 0x2  # eflags
    assert regs[64:] == bytes(len(regs) - 64)  # x87: zeros
    assert stub.handle(b"P0=78563412") == "OK"
    assert int(st[S.EAX]) == 0x12345678
    assert stub.handle(b"p0") == "78563412"
    assert stub.handle(b"P9=c3080000") == "OK"  # eflags: CF ZF PF ... through the lazy flags
    assert stub.core.get_flags() & 0x8C3 == 0x8C3
    assert stub.handle(b"p9") == (stub.core.get_flags()).to_bytes(4, "little").hex()
    assert stub.handle(b"Pc=34120000") == "OK"  # ds in real mode: base = selector << 4
    assert int(st[S.seg_slot(S.DS, S.SEG_BASE)]) == 0x12340
    assert stub.handle(b"pc") == "34120000"
    assert stub.handle(b"p10") == "00" * 10  # st0
    assert stub.handle(b"p40") == "E45"
    # G writes back only what changed
    regs = bytearray(bytes.fromhex(stub.handle(b"g")))
    regs[4:8] = (0xCAFE).to_bytes(4, "little")  # ecx
    assert stub.handle(b"G" + regs.hex().encode()) == "OK"
    assert int(st[S.ECX]) == 0xCAFE and int(st[S.EAX]) == 0x12345678


def test_protected_mode_segment_write(stub):
    from emu.cpu import state as S

    def desc(base: int, limit: int, access: int, flags: int = 0xC) -> bytes:
        v = (limit & 0xFFFF) | (base & 0xFF_FFFF) << 16 | access << 40 | (limit >> 16 & 0xF) << 48 \
            | flags << 52 | (base >> 24) << 56
        return v.to_bytes(8, "little")

    core = stub.core
    gdt = 0x1000
    core.write_phys(gdt, bytes(8) + desc(0, 0xFFFFF, 0x9A) + desc(0x123400, 0xFFFFF, 0x92))
    core.setup_flat32()
    stub.st[S.GDTR_BASE], stub.st[S.GDTR_LIMIT] = gdt, 23
    assert stub.handle(b"Pc=10000000") == "OK"  # ds = 0x10: base from the descriptor
    assert int(stub.st[S.seg_slot(S.DS, S.SEG_BASE)]) == 0x123400
    assert int(stub.st[S.seg_slot(S.DS, S.SEG_LIMIT)]) == 0xFFFF_FFFF
    assert stub.handle(b"Pc=18000000") == "E22"  # beyond the GDT limit: refused


def test_memory_through_paging(stub):
    core = stub.core
    core.write_phys(0x7000, b"\x11\x22\x33\x44")
    core.write_phys(0x2000, b"\xAA\xBB")
    assert stub.handle(b"m7000,4") == "11223344"  # paging off: physical
    assert stub.handle(b"M7001,2:5566") == "OK"
    assert core.read_phys(0x7000, 4) == b"\x11\x55\x66\x44"
    core.setup_flat32(paging=True, page_tables=0x80000, map_mib=8)
    pt1 = 0x80000 + 0x2000  # the page table for 4..8 MiB
    core.write_phys(pt1, (0x7000 | 3).to_bytes(4, "little"))  # 0x400000 -> 0x7000
    core.write_phys(pt1 + 4, (0x2000 | 3).to_bytes(4, "little"))  # 0x401000 -> 0x2000
    core.write_phys(pt1 + 8, (0).to_bytes(4, "little"))  # 0x402000: not present
    assert stub.handle(b"m400000,4") == "11556644"
    assert stub.handle(b"m400fff,3") == "00aabb"  # across a page boundary into another frame
    assert stub.handle(b"m401fff,2") == "00"  # the readable prefix
    assert stub.handle(b"m402000,4") == "E14"
    assert stub.handle(b"M402000,1:00") == "E14"
    assert core.read_phys(pt1, 4)[0] & 0x20 == 0  # the debugger's walk sets no Accessed bit


def test_breakpoints_and_queries(stub):
    assert stub.handle(b"Z0,7c00,1") == "OK"
    assert stub.handle(b"Z1,7c10,1") == "OK"
    assert stub.breakpoints == {0x7C00, 0x7C10}
    assert stub.handle(b"z0,7c00,1") == "OK"
    assert stub.breakpoints == {0x7C10}
    assert stub.handle(b"Z2,1000,4") == ""  # watchpoints: unsupported
    assert stub.handle(b"?") == "T05thread:01;"
    assert "qXfer:features:read+" in stub.handle(b"qSupported:multiprocess+;swbreak+")
    assert stub.handle(b"qAttached") == "1"
    assert stub.handle(b"qC") == "QC1"
    assert stub.handle(b"qfThreadInfo") == "m1"
    assert stub.handle(b"qsThreadInfo") == "l"
    assert stub.handle(b"Hg0") == "OK"
    assert stub.handle(b"T1") == "OK"
    assert stub.handle(b"vCont?") == "vCont;c;C;s;S"
    assert stub.handle(b"vMustReplyEmpty") == ""
    xml = b""
    while True:
        reply = stub.handle(b"qXfer:features:read:target.xml:%x,80" % len(xml))
        xml += G.unescape(reply[1:])
        if reply[:1] == b"l":
            break
    assert xml.decode() == G.target_xml()
    assert stub.handle(b"qXfer:features:read:other.xml:0,80") == "E00"
    assert stub.handle(b"mzz,4") == "E01"


def in_loop(stub):
    """A main loop that serves `stub`, and the list of packets the stub sends."""
    from emu.mainloop import MainLoop

    loop = MainLoop(stub.m, None, timeout=120)
    loop.gdb = stub
    stub.loop = loop
    sent: list[str] = []
    stub.conn.send = lambda p: sent.append(p if isinstance(p, str) else p.decode())
    return loop, sent


def test_step_and_continue_in_process():
    """s/vCont;s single-steps through the main loop; a breakpoint stops before its instruction."""
    from emu.cpu import state as S

    stub = make_stub(b"\xeb\xfe" + bytes(508) + b"\x55\xaa")  # a boot sector: jmp $
    try:
        m = stub.m
        loop, sent = in_loop(stub)
        # at F000:FFF0 (the BIOS's reset jump): step it, then run to a breakpoint at 0x7c00, step
        # the `jmp $` (it stays), and kill
        stub.conn.pending += [("packet", b"vCont;s:1"), ("packet", b"Z0,7c00,1"), ("packet", b"c"),
                              ("packet", b"s"), ("packet", b"k")]
        status = loop.run()
        assert status == 0
        assert [p for p in sent if p.startswith("T")] == ["T05thread:01;"] * 3
        assert stub.pc() == 0x7C00 and int(m.st[S.EIP]) == 0x7C00
    finally:
        close_stub(stub)


def test_step_over_hlt_with_interrupts_off_stops():
    """A single step whose instruction is a final HLT (IF=0) still answers T05, and gdb can go on
    looking at the halted machine."""
    from emu.cpu import state as S

    stub = make_stub(b"\xfa\xf4\xeb\xfd" + bytes(506) + b"\x55\xaa")  # cli; hlt; jmp $-3
    try:
        m = stub.m
        loop, sent = in_loop(stub)
        stub.conn.pending += [("packet", b"Z0,7c00,1"), ("packet", b"c"), ("packet", b"s"), ("packet", b"s"),
                              ("packet", b"p8"), ("packet", b"k")]
        assert loop.run() == 0
        assert [p for p in sent if p.startswith("T")] == ["T05thread:01;"] * 3
        assert sent[-1] == "027c0000"  # eip after the HLT
        assert int(m.st[S.HALTED]) == 1
    finally:
        close_stub(stub)


# -- the command line -----------------------------------------------------------------------------------

def test_cli_bad_gdb_spec():
    p = pyemu("-gdb", "udp::1", "-display", "none")
    assert p.returncode == 1
    assert "-gdb udp::1" in one_line_error(p)


def test_cli_port_in_use():
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        s.listen(1)
        port = s.getsockname()[1]
        p = pyemu("-gdb", f"tcp::{port}", "-display", "none")
    assert p.returncode == 1
    assert "cannot listen" in one_line_error(p)


def test_cli_S_needs_a_gdb():
    p = pyemu("-S", "-display", "none")
    assert p.returncode == 1
    assert "-S needs" in one_line_error(p)


@needs_nasm
def test_s_without_S_runs_at_once(tmp_path):
    img = write_floppy(tmp_path / "f.img", boot_sector("mov al, 'R'\ncall out_al\nmov al, 3\nout 0xf4, al\n"))
    log = tmp_path / "debug.log"
    p = pyemu("-fda", str(img), "-display", "none", "-gdb", f"tcp:127.0.0.1:{free_port()}",
              "-device", "isa-debug-exit", "-debugcon", f"file:{log}", "--timeout", "120")
    assert p.returncode == 7, p.stderr.decode()
    assert log.read_bytes() == b"R"


# -- real gdb ---------------------------------------------------------------------------------------------

def _gdb(port: int, *commands: str, interrupt_after: float | None = None) -> str:
    argv = [GDB, "-batch", "-nx", "-ex", "set tcp connect-timeout 900", "-ex", "set architecture i8086",
            "-ex", f"target remote 127.0.0.1:{port}"]
    for c in commands:
        argv += ["-ex", c]
    g = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    if interrupt_after is not None:
        time.sleep(interrupt_after)
        g.send_signal(signal.SIGINT)  # gdb passes Ctrl-C on as a 0x03 byte
    try:
        out, _ = g.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        g.kill()
        raise
    return out.decode(errors="replace")


def _start(tmp_path: Path, body: str, *extra: str) -> tuple[subprocess.Popen, int, Path]:
    img = write_floppy(tmp_path / "f.img", boot_sector(body))
    log = tmp_path / "debug.log"
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "emu", "boot", "-fda", str(img), "-display", "none",
                             "-gdb", f"tcp:127.0.0.1:{port}", "-debugcon", f"file:{log}", *extra],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return proc, port, log


def _finish(proc: subprocess.Popen) -> tuple[int, str]:
    try:
        _, err = proc.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    err = err.decode()
    assert "Traceback" not in err
    return proc.returncode, err


@needs_gdb
@needs_nasm
def test_gdb_break_examine_stepi_kill(tmp_path):
    proc, port, _ = _start(tmp_path, "mov al, 'A'\ncall out_al\njmp done\n", "-S")
    out = _gdb(port, "info registers eip cs", "break *0x7c00", "continue", "info registers eip",
               "x/2xb 0x7c00", "stepi", "info registers eip", "stepi", "info registers eip cs", "kill")
    status, err = _finish(proc)
    assert status == 0, err
    eips = [line.split()[1] for line in out.splitlines() if line.startswith("eip")]
    assert eips == ["0xfff0", "0x7c00", "0x7c05", "0x7c06"], out  # jmp 0:start is 5 bytes, cli 1
    assert "Breakpoint 1, 0x00007c00" in out
    assert "0x7c00:\t0xea\t0x05" in out  # the boot sector's first bytes: jmp far 0000:7C05
    assert "cs             0xf000" in out


@needs_gdb
@needs_nasm
def test_gdb_register_write_reaches_the_guest(tmp_path):
    body = "mov al, 'A'\nmark:\ncall out_al\nmov al, 1\nout 0xf4, al\n"
    proc, port, log = _start(tmp_path, body, "-S", "-device", "isa-debug-exit")
    code = boot_sector(body)
    mark = 0x7C00 + code.index(bytes.fromhex("b041")) + 2  # after `mov al, 'A'`
    out = _gdb(port, f"break *{mark:#x}", "continue", "set $eax = 0x1234", "info registers eax", "continue")
    status, err = _finish(proc)
    assert status == 3, err + out  # isa-debug-exit: (1 << 1) | 1
    assert "0x1234" in out
    assert "exited with code 03" in out  # the W packet when pyemu exits under gdb
    assert log.read_bytes() == b"\x34"


@needs_gdb
@needs_nasm
def test_gdb_ctrl_c_stops_a_running_guest(tmp_path):
    proc, port, log = _start(tmp_path, "xor ecx, ecx\nspin: inc ecx\njmp spin\n", "--timeout", "600")
    out = _gdb(port, "continue", "info registers ecx", "kill", interrupt_after=3.0)
    status, err = _finish(proc)
    assert status == 0, err
    assert "Program received signal SIGINT" in out, out
    ecx = [int(line.split()[1], 16) for line in out.splitlines() if line.startswith("ecx")]
    assert ecx and ecx[0] > 0


def test_breakpoint_inside_a_block_stops_each_time_and_the_rest_runs_block_by_block():
    """A breakpoint in the middle of a loop's block stops before its instruction on every pass
    (ECX counts 2, 4, 6), and code far from it (a warm-up loop of 10-instruction blocks) does not
    run one instruction per turn: the loop leaves only before each block while a breakpoint is set."""

    # 0x7c00: mov cx, 1000; w: 8 x inc ax; dec cx; jnz w; jmp 0x7de0 (far from the breakpoint)
    warm = bytes.fromhex("b9e803") + b"\x40" * 8 + bytes.fromhex("4975f5")
    warm += b"\xe9" + (0x1E0 - len(warm) - 3).to_bytes(2, "little")
    # 0x7de0: xor ecx,ecx; l: inc ecx; inc ecx; nop; cmp ecx,100 (the breakpoint: 0x7de8); jne l; jmp $
    loop_code = bytes.fromhex("6631c9" "6641" "6641" "90" "6683f964" "75f4" "ebfe")
    sector = warm.ljust(0x1E0, b"\x90") + loop_code
    stub = make_stub(sector.ljust(510, b"\0") + b"\x55\xaa")
    try:
        loop, sent = in_loop(stub)
        stub.conn.pending += [("packet", b"Z0,7de8,1"), ("packet", b"c"), ("packet", b"p1"), ("packet", b"c"),
                              ("packet", b"p1"), ("packet", b"c"), ("packet", b"p1"), ("packet", b"k")]
        assert loop.run() == 0
        assert [p for p in sent if p.startswith("T")] == ["T05thread:01;"] * 3
        assert [p for p in sent if len(p) == 8] == ["02000000", "04000000", "06000000"]  # ECX, little-endian
        assert loop.retired > 10_000
        assert loop.retired / sum(loop.exits) > 3  # instructions per turn of the CPU (stepping: 1)
    finally:
        close_stub(stub)
