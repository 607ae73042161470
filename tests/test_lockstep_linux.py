"""--lockstep unicorn over a Linux boot (-kernel): clean as far as it runs, and a bug planted here is
found at the kernel instruction that first shows it.

The boot runs the BIOS and the kernel's real-mode setup code (compared in real mode), then enters the
decompressor (arch/x86/boot/compressed/head_32.S: flat 32-bit, no paging, compared too). Marked
`images` and `slow`; skips without Debian's linux-image-*-686 (i386), unicorn or capstone.
"""

from __future__ import annotations

import glob

import pytest

from emu import cli
from emu.cpu import state as S
from emu.cpu.core import CpuCore

pytest.importorskip("unicorn")
pytest.importorskip("capstone")
pytestmark = [pytest.mark.images, pytest.mark.slow]

KERNELS = sorted(glob.glob("/boot/vmlinuz-*-686*"))
needs_kernel = pytest.mark.skipif(not KERNELS, reason="needs Debian's linux-image-*-686 (i386) in /boot")
PREFIXES = {0x26, 0x2E, 0x36, 0x3E, 0x64, 0x65, 0x66, 0x67, 0xF0, 0xF2, 0xF3}


def boot_linux(seconds: int) -> int:
    return cli.main(["boot", "-kernel", KERNELS[-1], "-append", "console=ttyS0", "-m", "64", "-display", "none",
                     "-serial", "none", "-icount", "shift=0", "--lockstep", "unicorn", "--timeout", str(seconds)])


def compared(err: str) -> int:
    line = next(x for x in err.splitlines() if "no difference from unicorn" in x)
    return int(line.split(" in ")[1].split()[0])


def not_r32(core) -> int | None:
    """The register a `not r32` (F7 /2, mod 3, 32-bit operand) at CS:EIP inverts, else None."""
    st = core.st
    code = core.read_phys(int(st[S.seg_slot(S.CS, S.SEG_BASE)]) + int(st[S.EIP]), 15)
    i = 0
    while i < len(code) - 2 and code[i] in PREFIXES:
        i += 1
    wide = bool(int(st[S.seg_slot(S.CS, S.SEG_ATTR)]) & S.ATTR_DB) != (0x66 in code[:i])
    if wide and code[i] == 0xF7 and code[i + 1] & 0xF8 == 0xD0:
        return code[i + 1] & 7
    return None


@needs_kernel
def test_linux_boot_runs_clean_in_lockstep(capsys):
    rc = boot_linux(60)
    err = capsys.readouterr().err
    assert "DIVERGED" not in err, err[-5000:]
    assert rc == 124, err[-3000:]  # the timeout
    assert compared(err) > 50_000, err[-3000:]  # about 200,000 on an idle machine
    assert "lockstep: 00100065 popfd" in err  # it got to the decompressor (the copy logged there)
    print(err.splitlines()[-2])  # pyemu: lockstep: no difference from unicorn in N instructions compared


@needs_kernel
@pytest.mark.parametrize("where", ["setup", "decompressor"])
def test_planted_not_flags_bug_is_found_where_linux_first_shows_it(capsys, monkeypatch, where):
    """The plant: `not r32` sets ZF, SF and PF from its result, as the XOR it is often written as
    would (NOT changes no flags). Everywhere, it shows first in the kernel's real-mode setup code
    (a 16-bit `66 f7 d0`); planted in 32-bit code segments only, in the decompressor's `not eax`
    (head_32.S, aligning its load address)."""
    real_run = CpuCore.run
    visible = []  # the addresses where the plant changed the flags

    def buggy_run(self, max_insns=1 << 62):
        st = self.st
        reg = not_r32(self) if max_insns == 1 else None
        if where == "decompressor" and not int(st[S.seg_slot(S.CS, S.SEG_ATTR)]) & S.ATTR_DB:
            reg = None
        pc = int(st[S.seg_slot(S.CS, S.SEG_BASE)]) + int(st[S.EIP])
        ic = int(st[S.ICOUNT])
        reason = real_run(self, max_insns)
        if reg is not None and int(st[S.ICOUNT]) == ic + 1:
            v = int(st[reg]) & 0xFFFFFFFF
            old = self.get_flags()
            f = old & ~(ZF | SF | PF)
            f |= (ZF if v == 0 else 0) | (SF if v >> 31 else 0) | (0 if bin(v & 0xFF).count("1") & 1 else PF)
            self.set_flags(f)
            if f != old:
                visible.append(pc)
        return reason

    monkeypatch.setattr(CpuCore, "run", buggy_run)
    rc = boot_linux(600)
    err = capsys.readouterr().err
    assert rc == 3, err[-3000:]
    assert len(visible) == 1, visible  # stopped at the first instruction the plant changed
    pc = visible[0]
    kernel = open(KERNELS[-1], "rb").read()
    setup = ((kernel[0x1F1] or 4) + 1) * 512
    if where == "setup":
        assert 0x10000 <= pc < 0x10000 + setup  # the setup code, loaded at 1000:0000
        assert kernel[pc - 0x10000:pc - 0x10000 + 3] == bytes.fromhex("66f7d0")
        assert f"instruction {pc:08x}: 66 f7 d0  not eax" in err, err[-3000:]
    else:
        assert pc == 0x100000 + kernel.index(b"\xf7\xd0", setup, setup + 0x100) - setup  # startup_32's not eax
        assert f"instruction {pc:08x}: f7 d0  not eax" in err, err[-3000:]
    line = next(x for x in err.splitlines() if "EFLAGS pyemu=" in x)
    assert int(line.split("differs in ")[1].rstrip(")"), 16) & ~(ZF | SF | PF) == 0, line
    assert "lockstep: DIVERGED after" in err and "--- unicorn after" in err
    print(err[err.index("lockstep: DIVERGED"):])  # the report, for `pytest -rP`


ZF, SF, PF = 0x40, 0x80, 0x4
