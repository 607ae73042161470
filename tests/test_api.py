"""`emu.Machine`, the Python API (emu/api.py): build a PC from Python, run it in slices, look at it,
type on it; small boot sectors assembled by nasm."""

from __future__ import annotations

import pytest

import emu
from tests.cpu.guestasm import needs_nasm
from tests.test_boot_cli import write_floppy
from tests.test_machine import boot_sector

pytestmark = needs_nasm

SPIN = "xor ecx, ecx\nspin: inc ecx\njmp spin\n"
# Echoes typed keys (INT 16h) to COM1 (INT 14h would be slower to set up: the UART is written directly)
ECHO_KEYS = """
.k: xor ah, ah
    int 0x16
    cmp al, 0x1b
    je done
    mov dx, 0x3f8
    out dx, al
    jmp .k
"""


@pytest.fixture()
def floppy(tmp_path):
    def make(body: str) -> str:
        return str(write_floppy(tmp_path / "f.img", boot_sector(body)))
    return make


def test_run_in_slices_of_instructions(floppy):
    with emu.Machine(floppy(SPIN), ram_mb=8) as pc:
        assert pc.run(instructions=2_000_000) == "limit"
        first = pc.instructions
        assert first >= 2_000_000
        ecx = pc.registers()["ecx"]
        assert ecx > 0  # the BIOS has booted the sector and it has been counting
        assert pc.run(instructions=100_000) == "limit"
        assert 100_000 <= pc.instructions - first < 100_000 + 50  # a slice ends where it was asked to
        assert 0 < pc.registers()["ecx"] - ecx <= 100_000 // 2 + 1  # two instructions per turn
        assert pc.read(0x7DFE, 2) == b"\x55\xaa"
        pc.write(0x500, b"pyemu")
        assert pc.read(0x500, 5, physical=True) == b"pyemu"
        assert "EAX=" in pc.hmp("info registers")


def test_serial_output_halt_and_exit_status(floppy):
    body = "mov dx, 0x3f8\nmov al, 'o'\nout dx, al\nmov al, 'k'\nout dx, al\njmp done\n"
    with emu.Machine(fda=floppy(body), ram_mb=8) as pc:
        assert pc.run(seconds=60) == "halted"
        assert pc.serial_output == b"ok"
        assert pc.registers()["eflags"] & 0x200 == 0
        assert pc.run(instructions=10) == "halted"  # halted for good stays halted
        pc.reset()
        assert pc.run(seconds=60) == "halted"
        assert pc.serial_output == b"okok"
    with emu.Machine(fda=floppy("mov al, 5\nout 0xf4, al\njmp done\n"), ram_mb=8, debug_exit=True) as pc:
        assert pc.run(seconds=60) == "exit"
        assert pc.exit_status == 11  # (5 << 1) | 1, as isa-debug-exit


def test_typed_keys_reach_the_guest(floppy):
    with emu.Machine(floppy(ECHO_KEYS), ram_mb=8) as pc:
        assert pc.run(seconds=2) == "limit"  # booted, waiting in INT 16h
        pc.type("Hi!\r")
        pc.run(seconds=1)
        assert pc.serial_output == b"Hi!\r"
        pc.type("\x1b")
        assert pc.run(seconds=60) == "halted"
        with pytest.raises(Exception, match="unknown key"):
            pc.sendkey("frob")


def test_registers_can_be_written_and_port_io_and_interrupts_hooked(floppy):
    """set_registers changes what the guest computes with; a port-read hook changes what IN
    returns, a port-write hook sees every OUT and may keep one from the device; an interrupt
    hook sees the BIOS timer's vector 8."""
    with emu.Machine(floppy(SPIN), ram_mb=8) as pc:
        vectors = []
        pc.on_interrupt(vectors.append)
        pc.run(instructions=1_000_000)
        pc.set_registers(ecx=5)
        pc.run(instructions=2)  # inc ecx; jmp spin (in one order or the other)
        assert pc.registers()["ecx"] == 6
        pc.run(seconds=0.3)
        assert 8 in vectors  # IRQ 0 at the BIOS's vector base
        with pytest.raises(ValueError):
            pc.set_registers(cr0=1)
    body = "mov dx, 0x3f8\nmov al, 'a'\nout dx, al\nin al, 0x80\nout dx, al\njmp done\n"
    with emu.Machine(fda=floppy(body), ram_mb=8) as pc:
        outs = []

        def on_read(port, size, value):
            return ord("z") if port == 0x80 else value

        def on_write(port, size, value):
            outs.append((port, size, value))
            return port == 0x3F8 and value == ord("a")  # keep the 'a' from the UART

        pc.on_port(read=on_read, write=on_write)
        assert pc.run(seconds=60) == "halted"
        assert pc.serial_output == b"z"
        assert (0x3F8, 1, ord("a")) in outs and (0x3F8, 1, ord("z")) in outs


MMIO_AND_LOOP = """
    mov ax, 0x0012  ; mode 12h, 640x480 16 colours: the A0000 window is planar, device memory
    int 0x10
    mov ax, 0xa000
    mov es, ax
    mov byte [es:0], 'A'
    mov al, [es:0]
    mov dx, 0x3f8
    out dx, al
    xor ecx, ecx
.again:
    inc ecx
    cmp ecx, 3
    jne .again
    jmp done
"""
LOOP_HEAD = bytes.fromhex("6641" "6683f903")  # inc ecx; cmp ecx, 3 (16-bit code, 66h: 32-bit operands)


def test_mmio_address_and_translation_hooks(floppy):
    """An MMIO-read hook changes what the guest reads from the VGA's planar window and a write hook
    sees the guest's store there; an address hook runs before each execution of its instruction (the
    loop's head: three times, seeing ECX before each INC) and can stop the run there; a
    translation hook reports the boot sector's blocks."""
    image = floppy(MMIO_AND_LOOP)
    with open(image, "rb") as f:
        head = 0x7C00 + f.read(512).index(LOOP_HEAD)
    with emu.Machine(image, ram_mb=8) as pc:
        writes, ecx_seen, blocks = [], [], []
        pc.on_mmio(read=lambda addr, size, value: ord("Z") if addr == 0xA0000 else value,
                   write=lambda addr, size, value: writes.append((addr, size, value)))
        pc.on_address(head, lambda address: ecx_seen.append(pc.registers()["ecx"]))
        pc.on_translate(lambda eip, phys, size, insns: blocks.append((eip, phys, size, insns)))
        assert pc.run(seconds=60) == "halted"
        assert pc.serial_output == b"Z"
        assert (0xA0000, 1, ord("A")) in writes
        assert pc.pc.vga.planes[0, 0] == ord("A")  # the write reached the VGA's plane 0
        assert ecx_seen == [0, 1, 2]
        assert any(phys == 0x7C00 and size > 0 and insns > 0 for eip, phys, size, insns in blocks)
        assert any(phys <= head < phys + size for eip, phys, size, insns in blocks)
        assert any(phys >= 0xF0000 for eip, phys, size, insns in blocks)  # the BIOS's own code
    with emu.Machine(image, ram_mb=8) as pc:
        pc.on_address(head, lambda address: True)
        assert pc.run(seconds=60) == "hook"
        assert pc.registers()["pc"] == head and pc.registers()["ecx"] == 0
        assert pc.run(seconds=60) == "hook"  # the INC ran; stopped before the next turn
        assert pc.registers()["ecx"] == 1
        pc.remove_address_hook(head)
        assert pc.run(seconds=60) == "halted"
        assert pc.registers()["ecx"] == 3


def test_the_api_type_checks():
    """emu.Machine is typed (the package ships py.typed): mypy finds no error in the API, its hooks
    and the main loop it drives, and a script that misuses a hook's type is refused."""
    api = pytest.importorskip("mypy.api")
    import pathlib

    root = pathlib.Path(emu.__file__).parent
    files = [str(root / name) for name in ("api.py", "hooks.py", "mainloop.py")]
    out, err, status = api.run([*files, "--ignore-missing-imports", "--follow-imports=silent",
                                "--no-incremental"])
    assert status == 0, out + err
    out, err, status = api.run(["--ignore-missing-imports", "--follow-imports=silent", "--no-incremental",
                                "-c", "import emu\nemu.Machine('x.img').on_address('0x7c00', print)"])
    assert status == 1 and "on_address" in out, out + err


def test_the_readme_example_runs(tmp_path, monkeypatch, capsys):
    """README's "Python API" example runs as written, on the demo's boot sector as boot.img: it
    boots, types on the keyboard and prints the screen, the registers and the PIC."""
    import pathlib
    import re

    from bios.demo import demo_sector

    readme = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Python API"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    (tmp_path / "boot.img").write_bytes(demo_sector().ljust(1_474_560, b"\0"))
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})  # noqa: S102 - the README's own example
    out = capsys.readouterr().out
    assert "pyemu demo: this PC booted" in out, out  # the screen, after 2 s of guest time
    assert "Type some text" in out  # COM1
    assert "pic0: irr=" in out  # `info pic` answered


def test_a_machine_from_the_command_lines_options(floppy):
    """Machine.from_options takes `pyemu boot`'s own options and checks them as it does."""
    body = "mov dx, 0x3f8\nmov al, 'o'\nout dx, al\nmov al, 'k'\nout dx, al\njmp done\n"
    with emu.Machine.from_options("-m", "8", "-fda", floppy(body), "-icount", "shift=0", "-no-reboot") as pc:
        assert pc.config.ram_mb == 8 and pc.config.icount and pc.config.no_reboot
        assert pc.run(seconds=60) == "halted"
        assert pc.serial_output == b"ok"
    for argv, words in ((("-m", "abc"), "-m"), (("-boot", "z"), "-boot"), (("-frob",), "-frob")):
        with pytest.raises(ValueError, match=words):
            emu.Machine.from_options(*argv)
