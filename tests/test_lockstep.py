"""--lockstep unicorn (emu/lockstep.py): a guest both agree on runs to its end; a planted bug is found where it is."""

from __future__ import annotations

from pathlib import Path

import pytest

from emu import cli
from emu.cpu import state as S
from emu.cpu.core import CpuCore
from tests.cpu.guestasm import needs_nasm

pytest.importorskip("unicorn")
pytest.importorskip("capstone")
pytestmark = needs_nasm

GUEST = Path(__file__).parent / "guests" / "tracediff_boot.asm"
DEBUG_EXIT = ["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]


def floppy(tmp_path) -> tuple[Path, bytes]:
    import subprocess

    img = tmp_path / "boot.img"
    subprocess.run(["nasm", "-f", "bin", "-o", str(img), str(GUEST)], check=True)
    code = img.read_bytes()
    with open(img, "ab") as fh:
        fh.truncate(1474560)
    return img, code


def boot(img: Path, *extra: str) -> int:
    return cli.main(["boot", "-fda", str(img), "-display", "none", "-m", "16", *DEBUG_EXIT, *extra])


def test_guest_runs_to_its_end_in_lockstep(tmp_path, capsys):
    img, _ = floppy(tmp_path)
    rc = boot(img, "--lockstep", "unicorn")
    err = capsys.readouterr().err
    assert "DIVERGED" not in err, err
    assert rc == 1, err  # isa-debug-exit with 0: (0 << 1) | 1
    line = next(x for x in err.splitlines() if "no difference from unicorn" in x)
    compared = int(line.split(" in ")[1].split()[0])
    assert compared > 500, line  # both loops (40 and 60 turns) were compared, not copied
    assert "lockstep: 00007c" in err and "out 0xf4" in err  # the port write was copied, and said so


def test_planted_carry_bug_is_found_at_the_add(tmp_path, capsys, monkeypatch):
    img, code = floppy(tmp_path)
    target = 0x7C00 + code.rindex(bytes.fromhex("01d8"))  # `add eax, ebx` in the protected-mode loop
    real_run = CpuCore.run
    hits = []

    def buggy_run(self, max_insns=1 << 62):
        st = self.st
        pc = int(st[S.seg_slot(S.CS, S.SEG_BASE)]) + int(st[S.EIP])
        ic = int(st[S.ICOUNT])
        reason = real_run(self, max_insns)
        if pc == target and max_insns == 1 and int(st[S.ICOUNT]) == ic + 1:
            hits.append(ic)
            if len(hits) == 3:  # the third turn of the loop: CF comes out inverted
                self.set_flags(self.get_flags() ^ 1)
        return reason

    monkeypatch.setattr(CpuCore, "run", buggy_run)
    rc = boot(img, "--lockstep", "unicorn")
    err = capsys.readouterr().err
    assert rc == 3, err
    assert "DIVERGED" in err
    assert f"instruction {target:08x}: 01 d8  add eax, ebx" in err, err
    assert "EFLAGS pyemu=" in err and "(differs in 0x1)" in err, err
    assert len(hits) == 3  # stopped at once, not on a later instruction


def test_a_rep_that_ends_its_count_is_one_instruction_in_both():
    """Unicorn stops after the last REP iteration with EIP still on the instruction and (E)CX = 0;
    pyemu has gone on. That is the same instruction retired, not a divergence."""
    import capstone

    from emu.lockstep import GPR_ORDER, Lockstep

    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_16)
    insn = next(md.disasm(bytes.fromhex("f366ab"), 0x2BC))  # rep stosd (16-bit code, CX counts)
    snap = {"pc": 0x102BC, "sel": (0x1000, 0x1000)}
    regs = dict.fromkeys(GPR_ORDER, 0)
    done = Lockstep._rep_done(insn, 16, snap, [regs[r] for r in GPR_ORDER], 0x2BC)
    assert done == 0x2BF
    regs["ecx"] = 5  # iterations left: unicorn is mid-instruction, as pyemu would be
    assert Lockstep._rep_done(insn, 16, snap, [regs[r] for r in GPR_ORDER], 0x2BC) == 0x2BC


def test_the_pages_a_32_bit_instruction_can_write():
    """In 32-bit mode only these pages are compared: unicorn's writes, memory operands, around ESP/EDI."""
    import capstone

    from emu.lockstep import GPR_ORDER, Lockstep

    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_32)
    md.detail = True
    insn = next(md.disasm(bytes.fromhex("89448b10"), 0x100000))  # mov [ebx+ecx*4+0x10], eax
    regs = dict(zip(GPR_ORDER, (0, 0x100, 0, 0x2345000, 0x9000, 0, 0, 0x50000), strict=True))
    gpr = [regs[r] for r in GPR_ORDER]
    ls = Lockstep.__new__(Lockstep)
    ls._writes = [(0x777FFE, 4)]  # a write across a page boundary
    pages = ls._pages({"gpr": gpr}, insn, gpr, gpr)
    assert {0x2345, 0x777, 0x778, 0x9, 0x8, 0x50, 0x4F} <= pages  # 0x2345410 is page 0x2345
    assert 0x2346 not in pages and 0x1000 not in pages


def test_unicorn_sees_the_bios_rom_where_the_guest_does():
    """pyemu keeps C0000-FFFFF after RAM in its host array: the shadow unicorn runs on takes those
    pages from where the page map points (a Linux decompressor scans F0000 for the ACPI RSDP)."""
    from types import SimpleNamespace

    import numpy as np

    from emu.lockstep import Lockstep
    from emu.mmu.physmap import PhysMap

    rom = bytes(range(256)) * 256  # 64 KiB: F0000-FFFFF
    phys = PhysMap(2 << 20, rom)
    phys.mem[:2 << 20] = 0x5A  # RAM (and the RAM under the ROM)
    ls = Lockstep.__new__(Lockstep)
    ls.core = SimpleNamespace(mem=phys.mem, phys=phys)
    assert bytes(ls._view(0xF0000, 0x100000)) == rom
    assert np.all(ls._view(0x1000, 0x3000) == 0x5A)
    low = ls._view(0, 0x110000)
    assert bytes(low[0xFFFF0:0x100000]) == rom[-16:] and np.all(low[0x100000:] == 0x5A)


def test_a_stray_write_is_caught_by_the_full_comparison():
    """A byte pyemu changed away from the pages compared per instruction turns up in the comparison
    of all RAM made every FULL_CHECK instructions."""
    from types import SimpleNamespace

    import capstone
    import numpy as np

    from emu.lockstep import FULL_CHECK, Lockstep
    from emu.mmu.physmap import PhysMap

    phys = PhysMap(4 << 20, None)
    ls = Lockstep.__new__(Lockstep)
    ls.core = SimpleNamespace(mem=phys.mem, phys=phys)
    ls.ram, ls._writes, ls._since_full = 4 << 20, [], 0
    ls._shadow = np.array(ls._view(0, ls.ram))
    phys.mem[0x345678] = 0x99  # pyemu's stray write
    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_32)
    md.detail = True
    insn = next(md.disasm(bytes.fromhex("40"), 0x100000))  # inc eax: writes no memory
    gpr = [0, 0, 0, 0, 0x9000, 0, 0, 0x2000]
    assert ls._compare_memory({"gpr": gpr}, insn, 32, gpr, gpr) == []  # not on a page compared
    ls._since_full = FULL_CHECK - 1
    (diff,) = ls._compare_memory({"gpr": gpr}, insn, 32, gpr, gpr)
    assert diff.startswith("memory at 00345678 (1 bytes differ; found by the comparison of all RAM"), diff


def test_an_interrupt_delivered_between_instructions_is_not_a_difference():
    """The main loop delivers an interrupt between two instructions (it pushes FLAGS, CS and IP):
    unicorn's memory is refreshed before the handler's first instruction is compared."""
    import io
    from types import SimpleNamespace

    from emu.lockstep import Lockstep

    core = CpuCore(ram_bytes=2 << 20)
    for seg in (S.CS, S.DS, S.ES, S.SS, S.FS, S.GS):
        core.set_seg_real(seg, 0)
    core.write_phys(0x7C00, bytes.fromhex("9090"))  # nop; nop
    core.write_phys(0x8000, bytes.fromhex("40"))  # the handler: inc ax
    core.write_phys(0x20 * 4, bytes.fromhex("00800000"))  # IVT[0x20] = 0000:8000
    core.st[S.EIP], core.st[S.ESP] = 0x7C00, 0x7000
    core.set_flags(0x202)
    machine = SimpleNamespace(core=core, exit_status=None)
    out = io.StringIO()
    ls = Lockstep(machine, out=out)

    def step():
        ls.before()
        reason = core.run(1)
        ls.after(reason)

    step()
    core.deliver_interrupt(0x20)
    assert core.read_phys(0x6FFA, 6) == bytes.fromhex("017c 0000 0202")  # IP, CS, FLAGS pushed
    step()
    assert not ls.diverged, out.getvalue()
    assert ls.compared == 2 and int(core.st[S.EAX]) & 0xFFFF == 1


def test_a_read_modify_write_after_a_copied_instruction_is_compared_from_the_same_memory():
    """After a copied instruction unicorn's memory is refreshed before pyemu runs the next one, not
    after: refreshed after, `inc word [0x500]` would be done twice in unicorn."""
    import io
    from types import SimpleNamespace

    from emu.lockstep import Lockstep

    core = CpuCore(ram_bytes=2 << 20)
    for seg in (S.CS, S.DS, S.ES, S.SS, S.FS, S.GS):
        core.set_seg_real(seg, 0)
    core.write_phys(0x7C00, bytes.fromhex("e680 ff060005"))  # out 0x80, al; inc word [0x500]
    core.write_phys(0x500, bytes.fromhex("3412"))
    core.st[S.EIP], core.st[S.ESP] = 0x7C00, 0x7000
    out = io.StringIO()
    ls = Lockstep(SimpleNamespace(core=core, exit_status=None), out=out)
    for _ in range(2):
        ls.before()
        reason = core.run(1)
        ls.after(reason)
    assert core.read_phys(0x500, 2) == bytes.fromhex("3512")
    assert not ls.diverged, out.getvalue()
    assert (ls.copied, ls.compared) == (1, 1), out.getvalue()
