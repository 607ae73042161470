"""`pyemu boot` as a user runs it: a subprocess, QEMU's options, one-line errors, exit statuses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cpu.guestasm import needs_nasm
from tests.test_machine import boot_sector

ROOT = Path(__file__).resolve().parents[1]
RUN_TIMEOUT = 900  # a hang guard; a cold numba cache can take minutes to compile


def pyemu(*args: str, stdin: bytes = b"", cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "emu", "boot", *args], input=stdin, capture_output=True,
                          cwd=cwd or ROOT, env=env, timeout=RUN_TIMEOUT)


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    err = proc.stderr.decode()
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("pyemu: error: ")
    return lines[0]


def write_floppy(path: Path, sector: bytes) -> Path:
    with open(path, "wb") as fh:
        fh.write(sector)
        fh.truncate(1440 * 1024)
    return path


# -- bad input ----------------------------------------------------------------------------------

def test_missing_image(tmp_path):
    p = pyemu(str(tmp_path / "missing.img"), "-display", "none")
    assert p.returncode == 1
    assert "not found" in one_line_error(p)


def test_empty_image(tmp_path):
    empty = tmp_path / "empty.img"
    empty.write_bytes(b"")
    p = pyemu("-hda", str(empty), "-display", "none")
    assert p.returncode == 1
    one_line_error(p)


def test_unknown_option():
    p = pyemu("-frobnicate", "-display", "none")
    assert p.returncode == 1
    assert "-frobnicate" in one_line_error(p)


def test_unsupported_device():
    p = pyemu("-device", "e1000", "-display", "none")
    assert p.returncode == 1
    assert "e1000" in one_line_error(p)


def test_non_bootable_disk_says_so_on_the_screen(tmp_path):
    disk = tmp_path / "blank.img"
    with open(disk, "wb") as fh:
        fh.truncate(1 << 20)
    shot = tmp_path / "screen.txt"
    p = pyemu(str(disk), "-display", "none", "-icount", "--screendump", str(shot), "--timeout", "60")
    assert p.returncode == 0
    err = p.stderr.decode()
    assert "Traceback" not in err
    assert "No bootable device." in err and "pyemu: guest halted" in err
    assert "No bootable device." in shot.read_text(encoding="utf-8")


# -- running guests -----------------------------------------------------------------------------

@needs_nasm
def test_serial_both_directions_with_nographic(tmp_path):
    body = """
    mov si, hello
.tx:
    lodsb
    test al, al
    jz .rx
    call com_out
    jmp .tx
.rx:
    mov cx, 3
.next:
    mov dx, 0x3fd
.poll:
    in al, dx
    test al, 1
    jz .poll
    mov dx, 0x3f8
    in al, dx
    and al, 0xdf            ; upper case
    call com_out
    loop .next
    jmp done
com_out:
    mov dx, 0x3fd
    mov ah, al
.wait:
    in al, dx
    test al, 0x20
    jz .wait
    mov al, ah
    mov dx, 0x3f8
    out dx, al
    ret
hello: db "hi from COM1", 13, 10, 0
"""
    img = write_floppy(tmp_path / "serial.img", boot_sector(body))
    p = pyemu(str(img), "-nographic", "-icount", "--timeout", "60", stdin=b"abc")
    assert p.returncode == 0, p.stderr
    assert p.stdout == b"hi from COM1\r\nABC"
    assert p.stderr.decode().strip() == "pyemu: guest halted"


@needs_nasm
def test_debugcon_file_isa_debug_exit_and_stats_json(tmp_path):
    body = "mov al, 'D'\nout 0xe9, al\nmov al, 0x10\nout 0xf4, al\njmp done\n"
    img = write_floppy(tmp_path / "exit.img", boot_sector(body))
    log = tmp_path / "debug.log"
    stats = tmp_path / "stats.json"
    p = pyemu("-fda", str(img), "-display", "none", "-icount", "-debugcon", f"file:{log}",
              "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", "--stats-json", str(stats),
              "--timeout", "60")
    assert p.returncode == (0x10 << 1) | 1
    assert log.read_bytes() == b"D"
    data = json.loads(stats.read_text())
    assert data["guest_instructions"] > 0 and data["exits_io_out"] > 0
    # the hit rate counts chained entries as hits: only misses (blocks translated) are not
    assert data["lookup_hit_rate"] == round(1 - data["lookup_misses"] / data["lookups"], 4)
    assert data["lookup_misses"] == data["tb_translated"]
    assert data["chained"] + data["lookup_fast_hits"] + data["lookup_slow_hits"] + data["lookup_misses"] \
        == data["lookups"]


@needs_nasm
def test_timeout_exits_124_says_so_and_writes_the_stats(tmp_path):
    img = write_floppy(tmp_path / "spin.img", boot_sector("jmp $\n"))
    stats = tmp_path / "stats.json"
    p = pyemu(str(img), "-display", "none", "--timeout", "2", "--stats-json", str(stats))
    assert p.returncode == 124
    assert p.stderr.decode().strip() == "pyemu: timeout after 2 s"
    assert json.loads(stats.read_text())["guest_instructions"] > 0


@needs_nasm
@pytest.mark.parametrize("body, cause", [
    ("lidt [bad]\nint 0x20\njmp done\nbad: dw 0\ndd 0\n", "triple fault"),
    ("mov al, 0xfe\nout 0x64, al\njmp $\n", "keyboard controller"),  # pulse the reset line
])
def test_no_reboot_ends_the_run_on_a_guest_reset_and_says_why(tmp_path, body, cause):
    img = write_floppy(tmp_path / "tf.img", boot_sector(body))
    p = pyemu(str(img), "-display", "none", "-no-reboot", "-icount", "--timeout", "60")
    assert p.returncode == 0
    assert p.stderr.decode().strip() == f"pyemu: guest reset ({cause})"


def test_demo_end_to_end(tmp_path):
    shot = tmp_path / "demo.txt"
    p = pyemu("--demo", "-display", "none", "-icount", "--screendump", str(shot), "--timeout", "120",
              stdin=b"hello pyemu\r\x1b")
    assert p.returncode == 0, p.stderr
    assert p.stderr.decode().strip() == "pyemu: guest halted"
    screen = shot.read_text(encoding="utf-8")
    assert "pyemu demo" in screen
    assert "> hello pyemu" in screen
    assert "Bye." in screen


@pytest.mark.skipif(not Path("/usr/share/seabios/bios.bin").exists(), reason="SeaBIOS is not installed")
def test_bios_option_with_seabios_says_a_blank_disk_is_not_bootable(tmp_path):
    """-bios loads a foreign ROM: SeaBIOS tries the blank disk and says so on its own screen."""
    disk = tmp_path / "blank.img"
    with open(disk, "wb") as fh:
        fh.truncate(1 << 20)
    shot = tmp_path / "screen.txt"
    p = pyemu(str(disk), "-bios", "/usr/share/seabios/bios.bin", "-display", "none", "--screendump", str(shot),
              "--timeout", "15")  # host time: its 60 s retry never comes
    assert "Traceback" not in p.stderr.decode()
    assert p.returncode == 124
    screen = shot.read_text()
    assert screen.startswith("SeaBIOS (version ")
    assert "Booting from Hard Disk...\nBoot failed: not a bootable disk" in screen


def test_bad_bios_file(tmp_path):
    rom = tmp_path / "rom.bin"
    rom.write_bytes(b"\x90" * 1000)
    p = pyemu("-bios", str(rom), "-display", "none")
    assert p.returncode == 1
    assert "64, 128, 192 or 256 KiB" in one_line_error(p)


@needs_nasm
def test_ctrl_c_exits_130_without_traceback(tmp_path):
    import signal
    import time

    img = write_floppy(tmp_path / "spin.img", boot_sector("mov al, 'S'\nout 0xe9, al\njmp $\n"))
    log = tmp_path / "started"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "emu", "boot", str(img), "-display", "none",
                             "-debugcon", f"file:{log}", "--timeout", "120"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 800  # allows a cold numba compile
    while time.monotonic() < deadline and not (log.exists() and log.read_bytes() == b"S"):
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "Traceback" not in err.decode()
    assert err.decode().strip() == "pyemu: interrupted"


def test_curses_display_on_a_terminal_echoes_keys_and_restores_it():
    import pty
    import select
    import time

    pid, fd = pty.fork()
    if pid == 0:  # the child: pyemu on a terminal, the default display
        os.environ["PYTHONPATH"] = str(ROOT)
        os.chdir(ROOT)
        os.execv(sys.executable, [sys.executable, "-m", "emu", "boot", "--demo", "--timeout", "120"])
    out = b""
    sent = quit_sent = False
    deadline = time.monotonic() + 800  # allows a cold numba compile
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                data = os.read(fd, 65536)
            except OSError:
                break
            if not data:
                break
            out += data
        if not sent and b"\x1b[0;37;40m> " in out:
            os.write(fd, b"typed!\r")
            sent = True
        if sent and not quit_sent and b"> typed!" in out:
            os.write(fd, b"\x1b")
            quit_sent = True
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert b"> typed!" in out and b"Bye." in out
    assert b"\x1b[?25h" in out  # the cursor is shown again
    assert b"pyemu: guest halted" in out


def test_isa_debugcon_needs_debugcon_and_knows_only_iobase():
    p = pyemu("-device", "isa-debugcon,iobase=0x402", "-display", "none")
    assert "needs -debugcon" in one_line_error(p)
    p = pyemu("-device", "isa-debugcon,chardev=x", "-debugcon", "stdio", "-display", "none")
    assert "unknown property 'chardev'" in one_line_error(p)


# -- image locking and read-only images (QEMU's rules) -------------------------------------------

def _start_spinning(img: Path, started: Path, *extra: str) -> subprocess.Popen:
    """A pyemu running a guest that writes 'S' to -debugcon and spins; returns once it is running."""
    import time

    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "emu", "boot", *extra, "-display", "none",
                             "-debugcon", f"file:{started}", "--timeout", "300"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 800  # allows a cold numba compile
    while time.monotonic() < deadline and proc.poll() is None and not (started.exists() and started.read_bytes()):
        time.sleep(0.1)
    assert proc.poll() is None, proc.communicate()
    return proc


def _stop(proc: subprocess.Popen) -> None:
    import signal

    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)


@needs_nasm
def test_an_image_in_use_for_writing_is_refused_to_a_second_pyemu(tmp_path):
    img = write_floppy(tmp_path / "disk.img", boot_sector("mov al, 'S'\nout 0xe9, al\njmp $\n"))
    first = _start_spinning(img, tmp_path / "started", "-fda", str(img))
    try:
        for extra in ((), ("-snapshot",)):  # a writer is refused, and so is a reader (QEMU: -snapshot too)
            p = pyemu("-fda", str(img), *extra, "-display", "none", "--timeout", "30")
            assert p.returncode == 1
            line = one_line_error(p)
            assert line.startswith('pyemu: error: Failed to get ') and '"write" lock' in line
            assert line.endswith(f"{img} is in use by another process" if not extra
                                 else f"{img} is being written by another process")
    finally:
        _stop(first)
    assert first.returncode == 130


@needs_nasm
def test_readers_share_an_image_but_keep_a_writer_out(tmp_path):
    img = write_floppy(tmp_path / "disk.img", boot_sector("mov al, 'S'\nout 0xe9, al\njmp $\n"))
    first = _start_spinning(img, tmp_path / "started", "-fda", str(img), "-snapshot")
    try:
        p = pyemu("-fda", str(img), "-display", "none", "--timeout", "30")
        assert p.returncode == 1
        assert one_line_error(p) == f'pyemu: error: Failed to get "write" lock: {img} is in use by another process'
        second = _start_spinning(img, tmp_path / "started2", "-fda", str(img), "-snapshot")
        _stop(second)
        assert second.returncode == 130
    finally:
        _stop(first)


def _without_root_override() -> list[str]:
    """A command prefix under which a 0444 file is not writable (root normally writes anything)."""
    if os.geteuid() != 0:
        return []
    import shutil

    if shutil.which("setpriv") is None:
        pytest.skip("running as root and setpriv (util-linux) is missing: a 0444 file stays writable")
    return ["setpriv", "--bounding-set=-dac_override"]


@needs_nasm
def test_an_image_the_user_cannot_write_is_refused_unless_snapshot(tmp_path):
    img = write_floppy(tmp_path / "ro.img", boot_sector("mov al, 'K'\nout 0xe9, al\njmp done\n"))
    img.chmod(0o444)
    before = img.read_bytes()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [*_without_root_override(), sys.executable, "-m", "emu", "boot", "-fda", str(img), "-display", "none",
           "-icount", "--timeout", "60"]
    p = subprocess.run(cmd, capture_output=True, env=env, cwd=ROOT, timeout=RUN_TIMEOUT)
    assert p.returncode == 1
    assert one_line_error(p) == (f"pyemu: error: cannot open disk image '{img}' for writing: Permission denied "
                                 "(-snapshot boots it without writing to it)")
    log = tmp_path / "debug.log"
    p = subprocess.run([*cmd, "-snapshot", "-debugcon", f"file:{log}"], capture_output=True, env=env, cwd=ROOT,
                       timeout=RUN_TIMEOUT)
    assert p.returncode == 0, p.stderr
    assert p.stderr.decode().strip() == "pyemu: guest halted"
    assert log.read_bytes() == b"K"
    assert img.read_bytes() == before


# -- SIGTERM and SIGHUP end a run as Ctrl-C does ---------------------------------------------------

WRITE_THEN_SPIN = """
    mov di, 0x1000          ; a sector of 'W' at 0:1000
    mov cx, 512
    mov al, 'W'
    rep stosb
    mov ax, 0x0301          ; INT 13h AH=03h: write 1 sector
    mov cx, 0x0002          ; cylinder 0, sector 2
    xor dx, dx              ; head 0, drive A:
    mov bx, 0x1000
    int 0x13
    jc done
    mov al, 'S'
    out 0xe9, al
    jmp $
"""


@needs_nasm
@pytest.mark.parametrize("signame, status", [("SIGTERM", 143), ("SIGHUP", 129)])
def test_sigterm_and_sighup_end_the_run_cleanly(tmp_path, signame, status):
    """The QEMU line `terminating on signal N`, status 128 + N, the guest's disk write kept and the
    statistics written (pyemu's promise: the same as Ctrl-C)."""
    import signal

    img = write_floppy(tmp_path / "disk.img", boot_sector(WRITE_THEN_SPIN))
    stats = tmp_path / "stats.json"
    proc = _start_spinning(img, tmp_path / "started", "-fda", str(img), "--stats-json", str(stats))
    sig = getattr(signal, signame)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == status == 128 + sig
    assert err.decode().strip() == f"pyemu: terminating on signal {int(sig)}"
    assert json.loads(stats.read_text())["guest_instructions"] > 0
    assert img.read_bytes()[512:1024] == b"W" * 512


@needs_nasm
def test_closing_the_terminal_hangs_up_cleanly(tmp_path):
    """The terminal pyemu draws on goes away (its window closed): the kernel sends SIGHUP; pyemu ends
    with 129 and still writes its statistics, although nothing can be printed any more."""
    import pty
    import time

    img = write_floppy(tmp_path / "spin.img", boot_sector("mov al, 'S'\nout 0xe9, al\njmp $\n"))
    started, stats = tmp_path / "started", tmp_path / "stats.json"
    pid, fd = pty.fork()
    if pid == 0:  # the child: pyemu on the terminal, the default (curses) display
        os.environ["PYTHONPATH"] = str(ROOT)
        os.chdir(ROOT)
        os.execv(sys.executable, [sys.executable, "-m", "emu", "boot", str(img), "-debugcon", f"file:{started}",
                                  "--stats-json", str(stats), "--timeout", "300"])
    deadline = time.monotonic() + 800  # allows a cold numba compile
    try:
        while time.monotonic() < deadline and not (started.exists() and started.read_bytes()):
            try:
                os.read(fd, 65536)  # keep the terminal drained
            except OSError:
                break
    finally:
        os.close(fd)  # hang up
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 129
    assert json.loads(stats.read_text())["guest_instructions"] > 0
