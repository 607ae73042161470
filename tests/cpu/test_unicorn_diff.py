"""Differential tests: random straight-line programs run in pyemu's engine and in unicorn.

Each example draws a program of 5-20 integer instructions from a generator table (ALU, INC/DEC,
NEG/NOT, shifts and rotates, MUL/IMUL/DIV/IDIV, MOV/MOVZX/MOVSX/LEA, XCHG/XADD/CMPXCHG/BSWAP,
BT*/BSF/BSR, POPCNT/LZCNT/TZCNT, SETcc/CMOVcc, PUSH/POP, CBW/CWD/CWDE/CDQ, LAHF/SAHF, CLC/STC/CMC, string ops with
REP, a Jcc over one instruction, XLAT, SHLD/SHRD and, in 16-bit code, the BCD adjustments), with
register and memory operands, operand-size (66) and address-size (67) prefixes and segment
overrides. nasm assembles it (tests/cpu/guestasm.py); pyemu runs it through CpuCore (real mode for
16-bit code, `setup_flat32()` for 32-bit code) and unicorn runs it from the same registers, flags
and memory. The GPRs, EIP, the flags the SDM defines at the end, and the whole data area must be
equal.

Undefined flags: every generator entry says which flags its instruction defines and which it
leaves undefined; the program's undefined set is folded instruction by instruction
(``undef = (undef & ~defines) | undefined``). An instruction that reads a flag that is undefined
at that point (ADC, Jcc, SETcc, LAHF, ...) is preceded by a CMP that defines all six.

Memory layout (both emulators see the same bytes from 0 to DATA_END):
    0000-007F  real-mode IVT: every vector -> 0000:0F00+v (a HLT stub)
    0400-04FF  IDT (32-bit runs): interrupt gates -> 08:0F00+v
    0600-0617  GDT: null, flat code 08, flat data 10
    0F00-0F1F  HLT stubs, one per exception vector: an exception ends the run there
    1000-      the program, then HLT
    8000-8FFFF data, random bytes. 16-bit: DS=SS=FS=1000h, ES=GS=1800h, so every 16-bit offset is
               inside. 32-bit: EBX/ESI/EDI/EBP hold 0001xxxxh and the generator never writes their
               upper halves; ESP starts at 80000h.
Real mode has 64 KiB segment limits and QEMU does not check them: an access that crosses a
segment's end is rejected (hypothesis `reject`), as is a program that faults only in unicorn.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from emu import stats as K
from emu.cpu import state as S
from tests.cpu.guestasm import AsmError, assemble, needs_nasm

unicorn = pytest.importorskip("unicorn")
from unicorn import x86_const as X  # noqa: E402

core_mod = pytest.importorskip("emu.cpu.core")

pytestmark = needs_nasm

CF, PF, AF, ZF, SF, OF = 0x1, 0x4, 0x10, 0x40, 0x80, 0x800
ALL6 = CF | PF | AF | ZF | SF | OF
DF = 0x400
SZAPC = SF | ZF | AF | PF | CF

CODE = 0x1000
STUBS = 0x0F00
IDT = 0x400
GDT = 0x600
DATA = 0x8000
DATA_END = 0x90000
SEG_DS16 = 0x1000  # DS/SS/FS in 16-bit runs (base 10000h)
SEG_ES16 = 0x1800  # ES/GS (base 18000h)
SEG_ENDS16 = (0x10000, 0x18000, 0x20000, 0x28000)
ESP32 = 0x80000

GPRS = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi")
UC_REG = {n: getattr(X, f"UC_X86_REG_{n.upper()}") for n in GPRS}

CONDS = {
    "o": OF, "no": OF, "b": CF, "ae": CF, "e": ZF, "ne": ZF, "be": CF | ZF, "a": CF | ZF,
    "s": SF, "ns": SF, "p": PF, "np": PF, "l": SF | OF, "ge": SF | OF, "le": ZF | SF | OF, "g": ZF | SF | OF,
}

R8 = ("al", "cl", "dl", "bl", "ah", "ch", "dh", "bh")
R16 = ("ax", "cx", "dx", "bx", "sp", "bp", "si", "di")
R32 = GPRS


class Insn:
    """One generated instruction (or a short fixed sequence, e.g. DIV with its setup)."""

    __slots__ = ("text", "reads", "defines", "undef")

    def __init__(self, text: str, reads: int = 0, defines: int = 0, undef: int = 0):
        self.text = text
        self.reads = reads
        self.defines = defines
        self.undef = undef


# ------------------------------------------------------------------------- operand generation
class Gen:
    """Operand choices for one mode, drawn through hypothesis's `data`."""

    def __init__(self, data, bits: int):
        self.d = data
        self.bits = bits

    def pick(self, seq):
        return self.d.draw(st.sampled_from(seq))

    def imm(self, size: int, signed8: bool = False) -> int:
        if signed8:
            return self.d.draw(st.integers(-128, 127))
        top = (1 << (8 * size)) - 1
        return self.d.draw(st.one_of(st.integers(0, top),
                                     st.sampled_from([0, 1, top, top >> 1, (top >> 1) + 1, 0x80 & top])))

    def size(self) -> int:
        return self.pick((1, 2, 4))

    def wreg(self, size: int, exclude=()) -> str:
        """A register the program may write (never SP/ESP; in 32-bit code never the 32-bit pointers)."""
        if size == 1:
            regs = R8
        elif size == 2:
            regs = tuple(r for r in R16 if r != "sp")
        elif self.bits == 16:
            regs = tuple(r for r in R32 if r != "esp")
        else:
            regs = ("eax", "ecx", "edx")
        regs = tuple(r for r in regs if r not in exclude)
        return self.pick(regs)

    def rreg(self, size: int) -> str:
        return self.pick({1: R8, 2: R16, 4: R32}[size])

    def mem(self, size: int | None, write: bool) -> str:
        """A memory operand (with its size keyword unless size is None). nasm adds the 67h prefix
        itself for 16-bit addressing in 32-bit code and 32-bit addressing in 16-bit code."""
        d = self.d
        if self.bits == 16:
            choices = ["bx+si", "bx+di", "bp+si", "bp+di", "si", "di", "bx",
                       "bp+{d8}", "bx+si+{d8}", "di+{d16}", "word {d16}", "bp+di+{d16}"]
            if not write:
                choices.append("dword {d32s}")  # 67h: a 32-bit address (below the 64 KiB limit)
            form = self.pick(choices)
        else:
            ptr = ("ebx", "esi", "edi", "ebp")
            choices = ["{p}", "{p}+{d8}", "{p}+{q}", "{p}+{q}+{d8}", "{p}+{d32}", "dword {abs}", "esp+{d8u}"]
            if not write:  # 67h: 16-bit addresses reach the code page, so only reads
                choices += ["bx+si", "bp+di+{d8}", "word {d16}", "si"]
            form = self.pick(choices)
            form = form.replace("{p}", self.pick(ptr)).replace("{q}", self.pick(ptr))
        fill = {
            "d8": d.draw(st.integers(-128, 127)),
            "d8u": d.draw(st.integers(0, 0x7C)),
            "d16": d.draw(st.integers(0, 0xFFF8)),
            "d32": d.draw(st.integers(0, 0x1000)),
            "d32s": d.draw(st.integers(0, 0xFFF0)),
            "abs": d.draw(st.integers(0x10000, 0x1FFF8)),
        }
        for k, v in fill.items():
            form = form.replace("{" + k + "}", f"{v:#x}" if v >= 0 else f"-{-v:#x}")
        form = form.replace("+-", "-")
        # CS is only read: a write through it would #GP in protected mode and hit code in real mode
        seg = self.pick(["", "", "", "ds", "es", "ss", "fs", "gs"] + ([] if write else ["cs"]))
        kw = {None: "", 1: "byte ", 2: "word ", 4: "dword "}[size]
        return f"{kw}[{seg + ':' if seg else ''}{form}]"

    def rm(self, size: int, write: bool):
        """A register or memory operand."""
        if self.d.draw(st.booleans()):
            return (self.wreg(size) if write else self.rreg(size)), False
        return self.mem(size, write), True


# ------------------------------------------------------------------------- the generator table
ALU_OPS = ("add", "or", "adc", "sbb", "and", "sub", "xor", "cmp")


def g_alu(g: Gen) -> Insn:
    op = g.pick(ALU_OPS)
    sz = g.size()
    write = op != "cmp"
    form = g.pick(("rr", "rm", "mr", "ri", "mi", "mi8"))
    if form == "mi8" and sz == 1:
        form = "mi"
    if form == "rr":
        t = f"{op} {g.wreg(sz) if write else g.rreg(sz)}, {g.rreg(sz)}"
    elif form == "rm":
        t = f"{op} {g.wreg(sz) if write else g.rreg(sz)}, {g.mem(sz, False)}"
    elif form == "mr":
        t = f"{op} {g.mem(sz, write)}, {g.rreg(sz)}"
    elif form == "ri":
        t = f"{op} {g.wreg(sz) if write else g.rreg(sz)}, {g.imm(sz)}"
    elif form == "mi":
        t = f"{op} {g.mem(sz, write)}, {g.imm(sz)}"
    else:
        t = f"{op} {g.mem(sz, write)}, byte {g.imm(1, signed8=True)}"
    reads = CF if op in ("adc", "sbb") else 0
    if op in ("and", "or", "xor"):
        return Insn(t, reads, ALL6 & ~AF, AF)
    return Insn(t, reads, ALL6)


def g_test(g: Gen) -> Insn:
    sz = g.size()
    form = g.pick(("rr", "mr", "ri", "mi"))
    if form == "rr":
        t = f"test {g.rreg(sz)}, {g.rreg(sz)}"
    elif form == "mr":
        t = f"test {g.mem(sz, False)}, {g.rreg(sz)}"
    elif form == "ri":
        t = f"test {g.rreg(sz)}, {g.imm(sz)}"
    else:
        t = f"test {g.mem(sz, False)}, {g.imm(sz)}"
    return Insn(t, 0, ALL6 & ~AF, AF)


def g_unary(g: Gen) -> Insn:
    op = g.pick(("inc", "dec", "neg", "not"))
    sz = g.size()
    opnd, _ = g.rm(sz, True)
    t = f"{op} {opnd}"
    if op in ("inc", "dec"):
        return Insn(t, 0, ALL6 & ~CF)
    if op == "neg":
        return Insn(t, 0, ALL6)
    return Insn(t)


def g_shift(g: Gen) -> Insn:
    op = g.pick(("rol", "ror", "rcl", "rcr", "shl", "shr", "sar", "sal"))
    sz = g.size()
    opnd, _ = g.rm(sz, True)
    how = g.pick(("1", "imm", "cl"))
    width = 8 * sz
    rot = op in ("rol", "ror", "rcl", "rcr")
    reads = CF if op in ("rcl", "rcr") else 0
    if how == "cl":
        # the count is only known at run time: nothing is surely defined; OF/AF (and CF of an 8/16-bit
        # shift by >= its width) may be undefined
        und = OF | (0 if rot else AF | (CF if sz < 4 else 0))
        return Insn(f"{op} {opnd}, cl", reads, 0, und)
    count = 1 if how == "1" else g.d.draw(st.integers(0, 31))
    t = f"{op} {opnd}, {count}"
    c = count & 31
    if c == 0:
        return Insn(t, 0, 0, 0)
    if rot:
        if op in ("rcl", "rcr") and sz < 4 and c % (width + 1) == 0:
            return Insn(t, reads, 0, 0)
        return Insn(t, reads, CF | (OF if c == 1 else 0), 0 if c == 1 else OF)
    defines = SF | ZF | PF | CF | OF
    und = AF
    if c != 1:
        defines &= ~OF
        und |= OF
    if c >= width:  # 8/16-bit shifts by their width or more: CF undefined
        defines &= ~CF
        und |= CF
    return Insn(t, 0, defines, und)


def g_shxd(g: Gen) -> Insn:
    op = g.pick(("shld", "shrd"))
    sz = g.pick((2, 4))
    opnd, _ = g.rm(sz, True)
    c = g.d.draw(st.integers(0, 31))
    if sz == 2 and c > 16:
        c = 16
    t = f"{op} {opnd}, {g.rreg(sz)}, {c}"
    if c == 0:
        return Insn(t)
    return Insn(t, 0, (SF | ZF | PF | CF) | (OF if c == 1 else 0), AF | (0 if c == 1 else OF))


def g_mul(g: Gen) -> Insn:
    form = g.pick(("mul", "imul1", "imul2", "imul3"))
    sz = g.size() if form in ("mul", "imul1") else g.pick((2, 4))
    if form in ("mul", "imul1"):
        opnd, _ = g.rm(sz, False)
        t = f"{'mul' if form == 'mul' else 'imul'} {opnd}"
    elif form == "imul2":
        opnd, _ = g.rm(sz, False)
        t = f"imul {g.wreg(sz)}, {opnd}"
    else:
        opnd, _ = g.rm(sz, False)
        imm = g.imm(1, signed8=True) if g.d.draw(st.booleans()) else g.imm(sz)
        t = f"imul {g.wreg(sz)}, {opnd}, {imm}"
    return Insn(t, 0, CF | OF, SF | ZF | AF | PF)


def g_div(g: Gen) -> Insn:
    signed = g.d.draw(st.booleans())
    sz = g.size()
    top = (1 << (8 * sz)) - 1
    if signed:
        mag = g.d.draw(st.integers(1, top >> 1))
        neg = g.d.draw(st.booleans()) and mag >= 2
        div = (-mag) & top if neg else mag
        setup = {1: "cbw", 2: "cwd", 4: "cdq"}[sz]
    else:
        div = g.d.draw(st.integers(1, top))
        setup = {1: "mov ah, 0", 2: "mov dx, 0", 4: "mov edx, 0"}[sz]
    excl = {1: ("al", "ah"), 2: ("ax", "dx"), 4: ("eax", "edx")}[sz]
    if g.d.draw(st.booleans()):
        opnd = g.wreg(sz, exclude=excl)
        load = f"mov {opnd}, {div:#x}"
    else:
        opnd = g.mem(sz, True)
        load = f"mov {opnd}, {div:#x}"  # the same address: nothing in between writes its registers
    t = "\n".join((load, setup, f"{'idiv' if signed else 'div'} {opnd}"))
    return Insn(t, 0, 0, ALL6)


def g_mov(g: Gen) -> Insn:
    sz = g.size()
    form = g.pick(("rr", "rm", "mr", "ri", "mi", "movzx", "movsx", "lea"))
    if form == "rr":
        return Insn(f"mov {g.wreg(sz)}, {g.rreg(sz)}")
    if form == "rm":
        return Insn(f"mov {g.wreg(sz)}, {g.mem(sz, False)}")
    if form == "mr":
        return Insn(f"mov {g.mem(sz, True)}, {g.rreg(sz)}")
    if form == "ri":
        return Insn(f"mov {g.wreg(sz)}, {g.imm(sz)}")
    if form == "mi":
        return Insn(f"mov {g.mem(sz, True)}, {g.imm(sz)}")
    if form in ("movzx", "movsx"):
        src = g.pick((1, 2))
        dst = g.pick((2, 4)) if src == 1 else 4
        opnd, _ = g.rm(src, False)
        return Insn(f"{form} {g.wreg(dst)}, {opnd}")
    dst = g.pick((2, 4))
    m = g.mem(None, False)
    if ":" in m:  # a segment override means nothing to LEA
        m = "[" + m.split(":", 1)[1]
    return Insn(f"lea {g.wreg(dst)}, {m}")


def g_xchg(g: Gen) -> Insn:
    op = g.pick(("xchg", "xadd", "cmpxchg", "bswap"))
    sz = g.size()
    if op == "bswap":
        return Insn(f"bswap {g.wreg(4)}")
    opnd, _ = g.rm(sz, True)
    r = g.wreg(sz)
    t = f"{op} {opnd}, {r}"
    if op == "xchg":
        return Insn(t)
    return Insn(t, 0, ALL6)


def g_bt(g: Gen) -> Insn:
    op = g.pick(("bt", "bts", "btr", "btc"))
    sz = g.pick((2, 4))
    write = op != "bt"
    if g.d.draw(st.booleans()):
        opnd = g.wreg(sz) if write else g.rreg(sz)
        src = g.rreg(sz) if g.d.draw(st.booleans()) else str(g.d.draw(st.integers(0, 255)))
    else:  # memory: immediate bit offsets only (a register offset reaches far outside the data area)
        opnd = g.mem(sz, write)
        src = str(g.d.draw(st.integers(0, 255)))
    return Insn(f"{op} {opnd}, {src}", 0, CF, OF | SF | AF | PF)


def g_bsf(g: Gen) -> Insn:
    op = g.pick(("bsf", "bsr"))
    sz = g.pick((2, 4))
    opnd, _ = g.rm(sz, False)
    return Insn(f"{op} {g.wreg(sz)}, {opnd}", 0, ZF, CF | OF | SF | AF | PF)


def g_bitcount(g: Gen) -> Insn:
    """POPCNT (all six flags defined), LZCNT/TZCNT (CF and ZF defined; SDM Vol. 2B). Not POPCNT in
    16-bit code: QEMU sizes it by the 66 prefix alone (32 bits without it; tests/cpu/test_bitcount.py
    checks pyemu's SDM behaviour there)."""
    op = g.pick(("popcnt", "lzcnt", "tzcnt") if g.bits == 32 else ("lzcnt", "tzcnt"))
    sz = g.pick((2, 4))
    opnd, _ = g.rm(sz, False)
    if op == "popcnt":
        return Insn(f"{op} {g.wreg(sz)}, {opnd}", 0, ALL6)
    return Insn(f"{op} {g.wreg(sz)}, {opnd}", 0, CF | ZF, OF | SF | AF | PF)


def g_cc(g: Gen) -> Insn:
    cc = g.pick(tuple(CONDS))
    if g.d.draw(st.booleans()):
        opnd, _ = g.rm(1, True)
        return Insn(f"set{cc} {opnd}", CONDS[cc])
    sz = g.pick((2, 4))
    opnd, _ = g.rm(sz, False)
    return Insn(f"cmov{cc} {g.wreg(sz)}, {opnd}", CONDS[cc])


def g_stack(g: Gen) -> Insn:
    form = g.pick(("push_r", "push_m", "push_i", "pop_r", "pop_m"))
    sz = g.pick((2, 4))
    if form == "push_r":
        return Insn(f"push {g.rreg(sz)}")
    if form == "push_m":
        return Insn(f"push {g.mem(sz, False)}")
    if form == "push_i":
        kw = "word" if sz == 2 else "dword"
        return Insn(f"push {kw} {g.imm(sz)}")
    if form == "pop_r":
        return Insn(f"pop {g.wreg(sz)}")
    m = g.mem(sz, True)
    if "esp" in m:  # POP [ESP+d] addresses with ESP after the pop: use a plain register instead
        return Insn(f"pop {g.wreg(sz)}")
    return Insn(f"pop {m}")


def g_misc(g: Gen) -> Insn:
    op = g.pick(("cbw", "cwd", "cwde", "cdq", "lahf", "sahf", "clc", "stc", "cmc", "xlatb"))
    if op == "lahf":
        return Insn(op, SZAPC)
    if op == "sahf":
        return Insn(op, 0, SZAPC)
    if op in ("clc", "stc"):
        return Insn(op, 0, CF)
    if op == "cmc":
        return Insn(op, CF, CF)
    if op == "xlatb":
        seg = g.pick(("", "es", "ss", "fs", "gs"))
        return Insn(f"{seg} xlatb".strip())
    return Insn(op)


def g_string(g: Gen) -> Insn:
    op = g.pick(("movs", "stos", "lods", "cmps", "scas"))
    sfx = g.pick(("b", "w", "d"))
    rep = g.pick(("", "rep", "repe", "repne") if op in ("cmps", "scas") else ("", "rep"))
    n = g.d.draw(st.integers(0, 6))
    cnt = "cx" if g.bits == 16 else "ecx"
    seg = ""
    if op in ("movs", "lods", "cmps") and g.d.draw(st.booleans()):
        seg = g.pick(("es", "ss", "fs", "gs", "cs"))
    lines = []
    if rep:
        lines.append(f"mov {cnt}, {n}")
    body = f"{rep} {op}{sfx}".strip()
    if seg:
        body = f"{seg} {body}"
    lines.append(body)
    cmp_like = op in ("cmps", "scas")
    if rep and cmp_like:
        # zero iterations leave the flags alone: only "maybe defines"
        return Insn("\n".join(lines), 0, ALL6 if n > 0 else 0)
    return Insn("\n".join(lines), 0, ALL6 if cmp_like else 0)


def g_dir(g: Gen) -> Insn:
    if g.bits == 32:  # 32-bit runs keep DF=0 (the pointers must not walk below the data area)
        return Insn("cld")
    return Insn(g.pick(("cld", "std")))


def g_bcd(g: Gen) -> Insn:
    op = g.pick(("daa", "das", "aaa", "aas", "aam", "aad"))
    if op in ("daa", "das"):
        return Insn(op, CF | AF, CF | AF | SF | ZF | PF, OF)
    if op in ("aaa", "aas"):
        return Insn(op, AF, AF | CF, OF | SF | ZF | PF)
    base = g.d.draw(st.integers(1, 255))
    return Insn(f"{op} {base}", 0, SF | ZF | PF, OF | AF | CF)


TABLE16 = [g_alu, g_alu, g_test, g_unary, g_shift, g_shxd, g_mul, g_div, g_mov, g_mov, g_xchg, g_bt, g_bsf,
           g_bitcount, g_cc, g_stack, g_misc, g_string, g_dir, g_bcd]
TABLE32 = [g for g in TABLE16 if g is not g_bcd]


def gen_program(data, bits: int) -> tuple[list[str], int]:
    """(source lines, undefined flags at the end)."""
    g = Gen(data, bits)
    table = TABLE16 if bits == 16 else TABLE32
    n = data.draw(st.integers(5, 20))
    undef = 0
    lines: list[str] = []
    label = 0
    for _ in range(n):
        gen = g.pick(table + ["jcc"])
        if gen == "jcc":
            cc = g.pick(tuple(CONDS))
            inner = g.pick(table)(g)
            need = CONDS[cc] | inner.reads
            if need & undef:
                lines.append(f"cmp {g.rreg(4)}, {g.rreg(4)}")
                undef = 0
            lines.append(f"j{cc} short .L{label}")
            lines.append(inner.text)
            lines.append(f".L{label}:")
            label += 1
            undef |= (undef & ~inner.defines) | inner.undef
            continue
        ins = gen(g)
        if ins.reads & undef:
            lines.append(f"cmp {g.rreg(4)}, {g.rreg(4)}")
            undef = 0
        lines.append(ins.text)
        undef = (undef & ~ins.defines) | ins.undef
    return lines, undef


# ------------------------------------------------------------------------- the two machines
def system_image(bits: int) -> bytearray:
    img = bytearray(DATA_END)
    for v in range(32):
        img[4 * v: 4 * v + 4] = (STUBS + v).to_bytes(2, "little") + b"\0\0"  # IVT: 0000:0F00+v
        off = STUBS + v  # IDT: 32-bit interrupt gate 08:off
        gate = (off & 0xFFFF) | (0x08 << 16) | ((0x8E00 | ((off >> 16) << 16)) << 32)
        img[IDT + 8 * v: IDT + 8 * v + 8] = gate.to_bytes(8, "little")
        img[STUBS + v] = 0xF4
    img[GDT: GDT + 24] = (bytes(8) + (0x00CF9B000000FFFF).to_bytes(8, "little")
                          + (0x00CF93000000FFFF).to_bytes(8, "little"))
    return img


_cores: dict[int, object] = {}


def pyemu_run(bits: int, image: bytes, regs: dict[str, int], eflags: int, tier: int = 0):
    """Run the program in pyemu. With tier 1 the compile threshold is 1: the first run queues its
    blocks and compiles them at the exit, and a second run from the same state and memory runs
    them compiled (its result is the one returned)."""
    if tier not in _cores:
        _cores[tier] = core_mod.CpuCore(ram_bytes=1 << 20, tier1_threshold=tier)
    c = _cores[tier]
    c.flush_blocks()
    for _attempt in range(2 if tier else 1):
        c.reset()
        c.mem[:DATA_END] = np.frombuffer(bytes(image), dtype=np.uint8)
        c.flush_tlb()
        if bits == 16:
            c.set_seg_real(S.CS, 0)
            for seg, sel in ((S.DS, SEG_DS16), (S.SS, SEG_DS16), (S.FS, SEG_DS16), (S.ES, SEG_ES16),
                             (S.GS, SEG_ES16)):
                c.set_seg_real(seg, sel)
            c.st[S.IDTR_BASE] = 0
            c.st[S.IDTR_LIMIT] = 0x3FF
        else:
            c.setup_flat32()
            c.st[S.GDTR_BASE] = GDT
            c.st[S.GDTR_LIMIT] = 23
            c.st[S.IDTR_BASE] = IDT
            c.st[S.IDTR_LIMIT] = 32 * 8 - 1
        for i, name in enumerate(GPRS):
            c.st[i] = regs[name]
        c.st[S.EIP] = CODE
        c.set_flags(eflags)
        before = int(c.stats[K.COMPILED_INSNS])
        reason = c.run(100_000)
    c.ran_compiled = int(c.stats[K.COMPILED_INSNS]) - before
    return c, reason


class UcRunner:
    def __init__(self, bits: int):
        self.bits = bits
        self.uc = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_16 if bits == 16 else unicorn.UC_MODE_32)
        self.uc.mem_map(0, DATA_END + 0x1000)
        self.exception = None
        self.crossed = False
        self.uc.hook_add(unicorn.UC_HOOK_INTR, self._intr)
        if bits == 16:
            self.uc.hook_add(unicorn.UC_HOOK_MEM_READ | unicorn.UC_HOOK_MEM_WRITE, self._access)

    def _intr(self, uc, intno, _):
        self.exception = intno
        uc.emu_stop()

    def _access(self, uc, _acc, addr, size, _value, _):
        for end in SEG_ENDS16:
            if addr < end < addr + size:
                self.crossed = True


_uc: dict[int, UcRunner] = {}


def uc_run(bits: int, image: bytes, regs: dict[str, int], eflags: int, end: int) -> UcRunner:
    r = _uc.get(bits)
    if r is None:
        r = _uc[bits] = UcRunner(bits)
    uc = r.uc
    uc.mem_write(0, bytes(image))
    uc.ctl_remove_cache(0, DATA_END)
    for name in GPRS:
        uc.reg_write(UC_REG[name], regs[name])
    if bits == 16:
        uc.reg_write(X.UC_X86_REG_CS, 0)
        for rid, sel in ((X.UC_X86_REG_DS, SEG_DS16), (X.UC_X86_REG_SS, SEG_DS16), (X.UC_X86_REG_FS, SEG_DS16),
                         (X.UC_X86_REG_ES, SEG_ES16), (X.UC_X86_REG_GS, SEG_ES16)):
            uc.reg_write(rid, sel)
    uc.reg_write(X.UC_X86_REG_EFLAGS, eflags | 2)
    r.exception = None
    r.crossed = False
    try:
        uc.emu_start(CODE, end, count=100_000)
    except unicorn.UcError as e:
        if r.exception is None:
            r.exception = -1 if e.errno != unicorn.UC_ERR_INSN_INVALID else 6
    if r.exception is not None:
        _uc.pop(bits, None)  # see unicorn_oracle: a fresh instance after an exception
    return r


# ------------------------------------------------------------------------- the test
def initial_regs(data, bits: int) -> dict[str, int]:
    u32 = st.one_of(st.integers(0, 0xFFFFFFFF),
                    st.sampled_from([0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x7FFFFFFF,
                                     0x80000000, 0xFFFFFFFF]))
    regs = {}
    for name in GPRS:
        if bits == 16:
            v = data.draw(u32)
            if name == "esp":
                v = data.draw(st.integers(0x40, 0xFFF0)) & ~1
        elif name in ("ebx", "esi", "edi", "ebp"):
            v = 0x10000 | data.draw(st.integers(0, 0xFFFF))
        elif name == "esp":
            v = ESP32
        else:
            v = data.draw(u32)
        regs[name] = v
    return regs


def check_program(data, bits: int, tier: int = 0) -> None:
    lines, undef = gen_program(data, bits)
    src = "\n".join(lines) + "\n"
    try:
        code = assemble(src, bits=bits, org=CODE)
    except AsmError as e:  # a generator bug: show it
        raise AssertionError(str(e)) from None
    regs = initial_regs(data, bits)
    eflags = data.draw(st.integers(0, 0xFFF)) & ALL6 | 2
    seed = data.draw(st.integers(0, 2**32 - 1))
    img = system_image(bits)
    img[DATA:DATA_END] = random.Random(seed).randbytes(DATA_END - DATA)
    end = CODE + len(code)
    img[CODE:end] = code
    img[end] = 0xF4  # HLT
    ref = uc_run(bits, img, regs, eflags, end)
    if ref.crossed:
        reject()  # a real-mode access across a segment's end (#GP/#SS on a real CPU, not in QEMU)
    core, reason = pyemu_run(bits, img, regs, eflags, tier)
    st_ = core.st
    eip = int(st_[S.EIP])
    listing = f"\nregs={ {k: hex(v) for k, v in regs.items()} } eflags={eflags:#x} seed={seed}\n{src}"
    if ref.exception is not None:
        if ref.exception < 0:
            reject()
        # pyemu must fault the same way: it ends in that vector's HLT stub
        assert reason == S.EXIT_HLT and eip == STUBS + ref.exception + 1, (
            f"unicorn raised #{ref.exception}, pyemu ended {S.EXIT_REASON_NAMES[reason]} at {eip:#x}{listing}")
        return
    assert reason == S.EXIT_HLT, f"pyemu exit {S.EXIT_REASON_NAMES[reason]} at {eip:#x}{listing}"
    assert eip == end + 1, f"pyemu ended at {eip:#x} (stub = exception), expected {end + 1:#x}{listing}"
    uc = ref.uc
    got = {n: int(st_[i]) & 0xFFFFFFFF for i, n in enumerate(GPRS)}
    want = {n: uc.reg_read(UC_REG[n]) for n in GPRS}
    diffs = {n: (hex(got[n]), hex(want[n])) for n in GPRS if got[n] != want[n]}
    assert not diffs, f"registers (pyemu, unicorn): {diffs}{listing}"
    mask = (ALL6 & ~undef) | DF
    gf, wf = core.get_flags(), uc.reg_read(X.UC_X86_REG_EFLAGS)
    assert gf & mask == wf & mask, (
        f"flags {gf & mask:#x} vs unicorn {wf & mask:#x} (differ {(gf ^ wf) & mask:#x}, undefined {undef:#x})"
        f"{listing}")
    mine = core.mem[:DATA_END].tobytes()
    theirs = bytes(uc.mem_read(0, DATA_END))
    if mine != theirs:
        a = np.frombuffer(mine, np.uint8)
        b = np.frombuffer(theirs, np.uint8)
        where = np.nonzero(a != b)[0][:8]
        raise AssertionError(f"memory differs at {[hex(int(x)) for x in where]}: "
                             f"{[hex(int(a[x])) for x in where]} vs {[hex(int(b[x])) for x in where]}{listing}")


N_DEFAULT = 150
SET = settings(max_examples=N_DEFAULT, deadline=None, derandomize=False,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                      HealthCheck.data_too_large])
SLOW = settings(SET, max_examples=5000)


@pytest.mark.parametrize("bits", [16, 32])
@SET
@given(data=st.data())
def test_random_programs(bits, data):
    check_program(data, bits)


@pytest.mark.parametrize("bits", [16, 32])
@SET
@given(data=st.data())
def test_random_programs_compiled(bits, data):
    """The same programs with every block compiled (tier 1, threshold 1): identical results."""
    check_program(data, bits, tier=1)


def hlt_image(src: str):
    """A 32-bit system image with `src` assembled at CODE and a HLT after it."""
    code = assemble(src, bits=32, org=CODE)
    img = system_image(32)
    img[CODE:CODE + len(code)] = code
    img[CODE + len(code)] = 0xF4
    return img


def both_tiers(img, regs: dict, state) -> tuple[list, object]:
    """Run `img` in the interpreter and compiled (threshold 2): [state(core, reason)] of the two
    runs, and the compiled run's core."""
    states = []
    for tier in (0, 1):
        core, reason = pyemu_run(32, img, regs, 2, tier)
        states.append(state(core, reason))
    return states, core


def test_compiled_tier_runs_the_programs():
    """The compiled-tier test is not vacuous: a plain ALU program runs inside tier-1 code."""
    img = hlt_image("mov eax, 5\nadd eax, ebx\nimul ecx, eax, 7\nxor edx, ecx\ndec eax\n")
    regs = dict.fromkeys(GPRS, 1) | {"esp": ESP32}
    core, reason = pyemu_run(32, img, regs, 2, tier=1)
    assert reason == S.EXIT_HLT
    assert core.ran_compiled == 5
    assert core.st[S.EDX] == (1 ^ (6 * 7))


@pytest.mark.slow
@pytest.mark.parametrize("bits", [16, 32])
@SLOW
@given(data=st.data())
def test_random_programs_many(bits, data):
    check_program(data, bits)


@pytest.mark.slow
@pytest.mark.parametrize("bits", [16, 32])
@SLOW
@given(data=st.data())
def test_random_programs_many_compiled(bits, data):
    check_program(data, bits, tier=1)


def test_compiled_calls_and_indirect_jumps_match_the_interpreter():
    """A loop of CALL rel, CALL/JMP through a register and memory, RET and LOOP: both tiers end in
    the same registers and memory (tier 1 runs the blocks compiled on its second run)."""
    src = """
        mov ecx, 40
        mov dword [0x9000], sub2
    top:
        call sub1
        mov eax, sub3
        call eax
        call [0x9000]
        mov edx, back
        jmp edx
    back:
        loop top
        jmp done
    sub1: add ebx, ecx
        ret
    sub2: xor ebx, 0x55
        ret
    sub3: rol ebx, 3
        ret 0
    done:
    """
    regs = dict.fromkeys(GPRS, 0) | {"esp": ESP32, "ebx": 7}
    states, core = both_tiers(hlt_image(src), regs, lambda core, reason: (
        reason, [int(core.st[i]) for i in range(9)], core.mem[:DATA_END].tobytes()))
    assert all(state[0] == S.EXIT_HLT for state in states)
    assert core.ran_compiled > 100
    assert states[0] == states[1]


@needs_nasm
@pytest.mark.parametrize("divisor", [7, 0, -1, 0x10000])
def test_compiled_mul_div_and_push_memory_match_the_interpreter(divisor):
    """MUL/IMUL/DIV/IDIV at every size and PUSH m, compiled: the same registers, flags and memory
    as the interpreter, and a divide error (zero divisor, a quotient that does not fit, or
    INT_MIN / -1) is raised by the interpreter at the same instruction with the same state."""
    src = f"""
        mov ecx, 30
    top:
        mov eax, 0x12345 ; mul ecx ; mov [0x9000], eax ; push dword [0x9000] ; pop esi
        imul ebx ; mov al, 200 ; mul cl ; imul cx ; imul dword [0x9000]
        mov eax, 1000000 ; xor edx, edx ; mov edi, 13 ; div edi ; add esi, eax ; add esi, edx
        mov eax, -1000000 ; cdq ; idiv edi ; add esi, eax ; add esi, edx
        mov ax, 1234 ; mov dl, 9 ; div dl ; add esi, eax
        mov ax, -1234 ; idiv dl ; add esi, eax
        mov ax, 300 ; xor dx, dx ; mov di, 7 ; div di ; idiv di ; add esi, eax
        loop top
        mov edi, {divisor & 0xFFFFFFFF}
        mov eax, 0 ; mov edx, 0x80000000 ; cmp edi, -1 ; jne skip ; idiv edi
    skip:
        mov eax, 5 ; xor edx, edx ; div edi
    """
    regs = dict.fromkeys(GPRS, 0) | {"esp": ESP32, "ebx": 3}
    states, core = both_tiers(hlt_image(src), regs, lambda core, reason: (
        reason, [int(core.st[i]) for i in range(9)], core.get_flags() & 0x8D5, core.mem[:DATA_END].tobytes()))
    assert core.ran_compiled > 100
    assert states[0] == states[1]
