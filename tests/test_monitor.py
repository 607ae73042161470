"""The human monitor (emu/monitor.py): `pyemu boot -monitor ...` driven the way a user drives it, over
standard input and over unix and TCP sockets, against small boot sectors assembled by nasm."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cpu.guestasm import needs_nasm
from tests.test_boot_cli import ROOT, one_line_error, pyemu, write_floppy
from tests.test_machine import boot_sector

PROMPT = b"(qemu) "
STEP_TIMEOUT = 20.0  # one command's answer; the first start on a cold numba cache is slower (see start)
START_TIMEOUT = 900.0

# Prints to COM1, then counts in ECX for ever (interrupts on: the BIOS's timer keeps running).
HELLO_SPIN = """
    mov si, msg
.p: lodsb
    test al, al
    jz spin
    mov dx, 0x3f8
    out dx, al
    jmp .p
spin:
    inc ecx
    jmp spin
msg: db "hello", 13, 10, 0
"""

# Interrupts off; every byte the keyboard controller delivers goes to the 0xE9 debug console.
KEYS_TO_DEBUGCON = """
    cli
.w: in al, 0x64
    test al, 1
    jz .w
    in al, 0x60
    out 0xe9, al
    jmp .w
"""

# Identity-maps the first MiB with one page table (PDE user, PTEs supervisor), turns paging on and halts.
PAGING_HALT = """
    mov di, 0x2000
    xor eax, eax
    mov cx, 0x800
    rep stosd
    mov dword [0x2000], 0x3007
    mov di, 0x3000
    mov eax, 3
    mov cx, 256
.f: stosd
    add eax, 0x1000
    loop .f
    mov eax, 0x2000
    mov cr3, eax
    mov eax, cr0
    or eax, 0x80000001
    mov cr0, eax
    jmp done
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(tmp_path: Path, body: str, *extra: str, stdin=subprocess.DEVNULL) -> subprocess.Popen:
    img = write_floppy(tmp_path / "f.img", boot_sector(body))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-m", "emu", "boot", "-fda", str(img), "-display", "none",
                             "-serial", f"file:{tmp_path / 'com1.txt'}", *extra],
                            cwd=ROOT, env=env, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(proc: subprocess.Popen, timeout: float = STEP_TIMEOUT) -> tuple[int, str]:
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    err = err.decode()
    assert "Traceback" not in err, err
    return proc.returncode, err


def quit_stdio(proc: subprocess.Popen) -> int:
    """`quit` on a -monitor stdio; pyemu's exit status."""
    proc.stdin.write(b"quit\n")
    proc.stdin.flush()
    return finish(proc)[0]


def wait_for(pred, timeout: float = STEP_TIMEOUT, what: str = "") -> None:
    end = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.05)


def connect(family, address, timeout: float = START_TIMEOUT) -> socket.socket:
    end = time.monotonic() + timeout
    while True:
        s = socket.socket(family, socket.SOCK_STREAM)
        try:
            s.connect(address)
            return s
        except OSError:
            s.close()
            if time.monotonic() > end:
                raise
            time.sleep(0.05)


class Session:
    """A monitor on a socket (or a process's stdin/stdout): send a line, read until the prompt."""

    def __init__(self, reader, writer):
        self.reader = reader
        self.writer = writer
        self.banner = self._until_prompt(START_TIMEOUT)

    def _until_prompt(self, timeout: float) -> str:
        buf = b""
        end = time.monotonic() + timeout
        while not buf.endswith(PROMPT):
            assert time.monotonic() < end, f"no prompt after {buf!r}"
            data = self.reader(end - time.monotonic())
            assert data, f"monitor closed after {buf!r}"
            buf += data
        return buf[: -len(PROMPT)].decode()

    def cmd(self, line: str) -> str:
        self.writer(line.encode() + b"\n")
        return self._until_prompt(STEP_TIMEOUT).replace("\r\n", "\n")


def socket_session(sock: socket.socket) -> Session:
    def reader(timeout: float) -> bytes:
        sock.settimeout(max(0.01, timeout))
        return sock.recv(65536)

    return Session(reader, sock.sendall)


def pipe_session(proc: subprocess.Popen) -> Session:
    import select

    fd = proc.stdout.fileno()

    def reader(timeout: float) -> bytes:
        ready, _, _ = select.select([fd], [], [], max(0.01, timeout))
        return os.read(fd, 65536) if ready else b"\0"  # a NUL: not a prompt, look again

    def writer(data: bytes) -> None:
        proc.stdin.write(data)
        proc.stdin.flush()

    s = Session(reader, writer)
    return s


def registers(text: str) -> dict[str, int]:
    """EAX=... EIP=... pairs of `info registers`."""
    out = {}
    for word in text.replace("\n", " ").split():
        name, eq, value = word.partition("=")
        if eq and name.isalnum() and len(value) == 8:
            out[name] = int(value, 16)
    return out


def jit(text: str) -> dict[str, float]:
    """`info jit`'s counters by name."""
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and not line.endswith(":"):
            out[parts[0]] = float(parts[1])
    return out


# -- the command line -------------------------------------------------------------------------------

def test_bad_monitor_specs_are_one_line_errors():
    p = pyemu("-S", "-display", "none")
    assert p.returncode == 1 and "-monitor" in one_line_error(p)  # -S alone: nothing could continue it
    p = pyemu("-monitor", "unix:/tmp/x.sock", "-display", "none")
    assert p.returncode == 1 and "server" in one_line_error(p)
    p = pyemu("-qmp", "udp::4444,server", "-display", "none")
    assert p.returncode == 1 and "-qmp" in one_line_error(p)
    p = pyemu("-monitor", "stdio", "-nographic")
    assert p.returncode == 1 and "stdio" in one_line_error(p)


def test_port_in_use_is_a_one_line_error():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        p = pyemu("-monitor", f"tcp:127.0.0.1:{port},server,nowait", "-display", "none")
    assert p.returncode == 1
    assert f"port {port}" in one_line_error(p)


# -- sessions ------------------------------------------------------------------------------------------

@needs_nasm
def test_stdio_monitor_S_cont_stop_registers_quit(tmp_path):
    proc = start(tmp_path, HELLO_SPIN, "-S", "-monitor", "stdio", stdin=subprocess.PIPE)
    try:
        mon = pipe_session(proc)
        assert "monitor - type 'help'" in mon.banner
        assert mon.cmd("info status").strip() == "VM status: paused (prelaunch)"
        regs = mon.cmd("info registers")
        assert registers(regs)["EIP"] == 0xFFF0  # -S: nothing has run
        assert "CS =f000 ffff0000 0000ffff 00009b00\n" in regs
        assert "GDT=     00000000 0000ffff\n" in regs
        assert (tmp_path / "com1.txt").read_bytes() == b""
        assert mon.cmd("cont") == ""
        wait_for(lambda: b"hello" in (tmp_path / "com1.txt").read_bytes(), what="the guest's COM1 output")
        assert mon.cmd("info status").strip() == "VM status: running"
        assert mon.cmd("stop") == ""
        regs = registers(mon.cmd("info registers"))
        assert 0x7C00 < regs["EIP"] < 0x7E00 and regs["ECX"] > 0  # in the boot sector's loop
        assert registers(mon.cmd("info registers"))["ECX"] == regs["ECX"]  # stopped means stopped
        spin = 0x7C00 + boot_sector(HELLO_SPIN).index(bytes.fromhex("6641eb"))  # inc ecx; jmp spin
        assert regs["EIP"] in (spin, spin + 2)
        assert mon.cmd(f"x/2i {spin:#x}") == f"0x{spin:08x}:  inc ecx\n0x{spin + 2:08x}:  jmp 0x{spin:x}\n"
        assert mon.cmd("x/1i $pc").startswith(f"0x{regs['EIP']:08x}:  ")
        status = quit_stdio(proc)
    finally:
        proc.kill()
    assert status == 0


@needs_nasm
def test_unix_monitor_sendkey_reset_and_memory(tmp_path):
    path = str(tmp_path / "mon.sock")
    log = tmp_path / "debug.log"
    proc = start(tmp_path, KEYS_TO_DEBUGCON, "-monitor", f"unix:{path},server,nowait", "-debugcon", f"file:{log}")
    try:
        mon = socket_session(connect(socket.AF_UNIX, path))
        assert mon.cmd("sendkey a") == ""
        wait_for(lambda: log.read_bytes() == b"\x1e\x9e", what="the make and break codes of 'a'")
        assert mon.cmd("sendkey ctrl-alt-delete") == ""
        expected = b"\x1e\x9e" + bytes.fromhex("1d 38 e0 53 e0 d3 b8 9d")  # pressed in order, released in reverse
        wait_for(lambda: log.read_bytes() == expected, what="ctrl-alt-delete's scancodes")
        assert mon.cmd("sendkey frob").strip() == "unknown key: 'frob'"
        assert mon.cmd("xp/4xb 0x7dfc") == "0000000000007dfc: 0x00 0x00 0x55 0xaa\n"  # the boot signature
        assert mon.cmd("x/2xh 0x7dfe") == "00007dfe: 0xaa55 0x0000\n"
        assert mon.cmd("x/1dh 0x7dfe") == "00007dfe: -21931\n"
        assert mon.cmd("x/1uh 0x7dfe") == "00007dfe: 43605\n"
        assert mon.cmd("x/2ub 0x7dfe") == "00007dfe:  85 170\n"  # QEMU pads to the widest value of the size
        assert mon.cmd("bogus").strip() == "unknown command: 'bogus'"
        assert jit(mon.cmd("info jit"))["resets"] == 0
        assert mon.cmd("system_reset") == ""
        wait_for(lambda: jit(mon.cmd("info jit"))["resets"] == 1, what="the reset")
        assert mon.cmd("info status").strip() == "VM status: running"
        mon.writer(b"quit\n")
        status, _ = finish(proc)
    finally:
        proc.kill()
    assert status == 0


@needs_nasm
def test_halted_guest_stays_up_for_the_monitor_tlb_mem(tmp_path):
    port = free_port()
    shot = tmp_path / "screen.png"
    proc = start(tmp_path, PAGING_HALT, "-monitor", f"tcp:127.0.0.1:{port},server,nowait")
    try:
        mon = socket_session(connect(socket.AF_INET, ("127.0.0.1", port)))
        wait_for(lambda: "HLT=1" in mon.cmd("info registers"), what="the guest to halt")
        time.sleep(0.3)
        assert proc.poll() is None  # halted for good, but the monitor keeps the machine up
        regs = mon.cmd("info registers")
        assert registers(regs)["CR0"] & 0x8000_0001 == 0x8000_0001
        assert "CS =0000 00000000 0000ffff 00009b00 DPL=0 CS16 [-RA]\n" in regs  # protected mode: decoded
        assert mon.cmd("info mem") == "00000000-00100000 00100000 -rw\n"  # the PTEs are supervisor
        tlb = mon.cmd("info tlb").splitlines()
        assert len(tlb) == 256
        assert tlb[7].startswith("0000000000007000: 0000000000007000 ----A---W")  # the code page: accessed
        assert mon.cmd("xp/1xw 0x3004") == "0000000000003004: 0x00001003\n"
        assert mon.cmd("x/1xw 0x100000").startswith("Cannot access memory")  # beyond the mapping
        assert mon.cmd(f"screendump {shot}") == ""
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        pic = mon.cmd("info pic").splitlines()
        assert pic[0].startswith("pic0: irr=") and pic[1].startswith("pic1: irr=")
        assert "irq_base=08" in pic[0] and "irq_base=70" in pic[1]  # as the BIOS programmed them
        irq = mon.cmd("info irq").splitlines()
        assert irq[0] == "IRQ statistics for isa-i8259:" and int(irq[1].split(":")[1]) > 0
        assert irq[1].startswith(" 0: ")  # the timer ticked while the BIOS booted
        pci = mon.cmd("info pci")
        assert "Host bridge: PCI device 8086:1237" in pci and "IDE controller: PCI device 8086:7010" in pci
        assert mon.cmd("info block").startswith(f"floppy0: {tmp_path / 'f.img'} (raw)\n")
        assert "Translation buffer state:" in mon.cmd("info jit")
        mon.writer(b"q\n")
        status, _ = finish(proc)
    finally:
        proc.kill()
    assert status == 0


@pytest.mark.parametrize("command", ["help", "info"])
def test_help_lists_the_commands(command):
    from emu.monitor import Hmp

    text = Hmp(control=None).execute(command)
    assert "info registers" in text
    if command == "help":
        assert "system_reset" in text and "x /fmt addr" in text


@needs_nasm
def test_ctrl_a_c_switches_a_nographic_terminal_to_the_monitor(tmp_path):
    import pty
    import select

    img = write_floppy(tmp_path / "f.img", boot_sector(HELLO_SPIN))
    master, slave = pty.openpty()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "emu", "boot", "-fda", str(img), "-nographic"],
                            cwd=ROOT, env=env, stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    seen = bytearray()

    def read_until(marker: bytes, timeout: float = STEP_TIMEOUT) -> str:
        end = time.monotonic() + timeout
        while marker not in seen:
            assert time.monotonic() < end, f"no {marker!r} in {bytes(seen)!r}"
            ready, _, _ = select.select([master], [], [], 0.05)
            if ready:
                try:
                    seen.extend(os.read(master, 65536))
                except OSError:
                    break
        text = seen[: seen.index(marker) + len(marker)].decode(errors="replace")
        del seen[: seen.index(marker) + len(marker)]
        return text

    try:
        read_until(b"hello", START_TIMEOUT)  # COM1 on the terminal
        os.write(master, b"\x01c")
        assert "monitor - type 'help'" in read_until(PROMPT.rstrip())
        os.write(master, b"info statx\x7fus\r")  # typed, with a Backspace: raw mode, the monitor edits
        assert "VM status: running\r\n" in read_until(PROMPT.rstrip())
        os.write(master, b"stop\rinfo status\r")
        read_until(PROMPT.rstrip())
        assert "VM status: paused\r\n" in read_until(PROMPT.rstrip())
        os.write(master, b"\x01c\x01x")  # back to COM1, then quit
        status = proc.wait(timeout=STEP_TIMEOUT)
    finally:
        proc.kill()
        os.close(master)
    assert status == 0


@needs_nasm
def test_icount_idle_time_still_follows_the_host_clock_with_a_monitor(tmp_path):
    # 18 timer ticks (about 1 s) waited for in HLT under -icount sleep=on: the monitor is served
    # between short sleeps, which must not make idle guest time run ahead of the host's
    body = """
    mov al, 'A'
    call out_al
    mov bx, [0x46c]
.w: hlt
    mov ax, [0x46c]
    sub ax, bx
    cmp ax, 18
    jb .w
    mov al, 'B'
    call out_al
    mov al, 0
    out 0xf4, al
"""
    log = tmp_path / "debug.log"
    proc = start(tmp_path, body, "-icount", "-monitor", f"unix:{tmp_path / 'm.sock'},server,nowait",
                 "-device", "isa-debug-exit", "-debugcon", f"file:{log}")
    try:
        wait_for(lambda: log.exists() and log.read_bytes().startswith(b"A"), START_TIMEOUT, "the first mark")
        t0 = time.monotonic()
        wait_for(lambda: log.read_bytes() == b"AB", what="the second mark")
        waited = time.monotonic() - t0
        status, _ = finish(proc)
    finally:
        proc.kill()
    assert status == 1  # isa-debug-exit with 0
    assert 0.85 < waited < 3.0, waited  # 18 ticks of 54.9 ms: 0.99 s (0.7 s when the clock ran ahead)


@needs_nasm
def test_log_switches_the_d_items_while_the_guest_runs(tmp_path):
    """QEMU's `log int` / `log none`: the -D file gets the interrupts (the BIOS timer's v=08 lines)
    only while the item is on."""
    log = tmp_path / "d.log"
    proc = start(tmp_path, HELLO_SPIN, "-monitor", "stdio", "-D", str(log), stdin=subprocess.PIPE)
    try:
        mon = pipe_session(proc)
        wait_for(lambda: b"hello" in (tmp_path / "com1.txt").read_bytes(), what="the guest's COM1 output")
        assert log.read_text() == ""
        assert mon.cmd("log int") == ""
        wait_for(lambda: "v=08" in log.read_text(), what="timer interrupts in the log")
        assert mon.cmd("log none") == ""
        time.sleep(0.3)  # (a few exits: what the ring still held is written)
        size = len(log.read_text())
        time.sleep(0.5)  # the BIOS timer ticks about 9 times more
        assert len(log.read_text()) == size
        assert mon.cmd("log bogus").startswith("Invalid parameter 'bogus'")
        status = quit_stdio(proc)
    finally:
        proc.kill()
    assert status == 0


@needs_nasm
def test_gdbserver_starts_a_gdb_stub_on_a_running_guest_and_none_stops_it(tmp_path):
    """`gdbserver tcp::PORT` while the guest runs: a gdb that attaches there stops the guest (as
    QEMU's: `?` answers T05) and reads its registers (EIP in the boot sector's loop); after gdb
    continues and leaves, `gdbserver none` closes the stub and the guest runs on."""
    port = free_port()
    proc = start(tmp_path, HELLO_SPIN, "-monitor", "stdio", stdin=subprocess.PIPE)
    try:
        mon = pipe_session(proc)
        wait_for(lambda: b"hello" in (tmp_path / "com1.txt").read_bytes(), what="the guest's COM1 output")
        assert mon.cmd(f"gdbserver tcp::{port}") == f"Waiting for gdb connection on device 'tcp::{port}'\n"
        assert mon.cmd(f"gdbserver tcp::{port}").startswith("gdbserver already running")
        sock = connect(socket.AF_INET, ("127.0.0.1", port))
        sock.settimeout(STEP_TIMEOUT)

        def packet(data: bytes) -> bytes:
            sock.sendall(b"$" + data + b"#" + f"{sum(data) & 0xFF:02x}".encode())
            reply = b""
            while b"#" not in reply:
                reply += sock.recv(4096)
            sock.sendall(b"+")
            return reply.lstrip(b"+")[1:reply.lstrip(b"+").index(b"#")]

        assert packet(b"?").startswith(b"T05")
        regs = packet(b"g")
        eip = int.from_bytes(bytes.fromhex(regs[8 * 8:9 * 8].decode()), "little")
        cs = int.from_bytes(bytes.fromhex(regs[10 * 8:11 * 8].decode()), "little")
        # in the boot sector's loop, or in the BIOS's timer interrupt handler that preempts it
        assert (cs == 0 and 0x7C00 < eip < 0x7E00) or cs == 0xF000, (hex(cs), hex(eip))
        sock.sendall(b"$c#63")
        sock.close()
        assert mon.cmd("gdbserver none") == "Disabled gdbserver\n"
        assert mon.cmd("gdbserver none") == "No gdbserver to disable\n"
        assert mon.cmd("info status").strip() == "VM status: running"
        status = quit_stdio(proc)
    finally:
        proc.kill()
    assert status == 0
