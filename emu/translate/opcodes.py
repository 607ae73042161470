"""The x86 opcode table (16- and 32-bit code): one table, as data, for decoder, disassembler and tests.

Each row of ``TABLE`` is ``(opcode, name, operands, flags, semantic)`` in the notation of the Intel SDM:

* ``opcode``: optional mandatory prefix (``NP`` = none of 66/F2/F3, or ``66``/``F3``/``F2``), the map
  escape (``0F``, ``0F 38``, ``0F 3A``), the opcode byte (``40+r``: register in the low 3 bits), then
  the ModRM requirement: ``/r`` (any ModRM), ``/0``..``/7`` (ModRM.reg is an opcode extension), an
  exact ModRM byte ``C8`` or a run ``C0+i`` (mod=11 forms, as in x87 and group 7), and ``mem``/``reg``
  to restrict ModRM.mod (mostly implied by the operands: M/R/U/N only match memory or registers).
  SDM Vol. 2 ch. 2.1 (instruction format), 2.1.2 (ModRM/SIB), Appendix A.2.5/A.4 (groups, x87).
* ``name``: the operation, SDM spelling. It is the identity of the operation (``F_MNEM``): the
  string move is ``movs`` (printed movsb/movsw/movsd) and the SSE2 scalar move is ``movsd``.
* ``operands``: SDM Appendix A.2 codes. Addressing method: E (ModRM r/m GPR or memory), G (ModRM.reg
  GPR), M (r/m memory only), R (r/m GPR only), I (immediate; ``Ibs`` = imm8 sign-extended), J (relative
  offset), O (moffs, sized by the address size), A (far pointer), S (ModRM.reg segment register),
  C/D (control/debug register), X/Y (DS:eSI / ES:eDI string operands), P/Q/N (MMX reg / MMX or memory
  / MMX reg in r/m), V/W/U (XMM reg / XMM or memory / XMM reg in r/m), Z (register in opcode bits 2:0),
  ST/ST(i) (x87 stack), fixed registers (AL, eAX, DX, ES, ...), ``1`` (shift count), XMM0 (implicit).
  Sizes: b w d q dq t(10 bytes) v(operand size) z(word or dword) p(far pointer) a(BOUND pair)
  s(6-byte pseudo-descriptor) ps pd ss sd x(= dq). A ``reg/mem`` pair such as ``Rv/Mw`` gives
  different sizes to the register and memory forms.
* ``flags``: LOCKABLE (LOCK allowed with a memory destination, SDM Vol. 2 ch. 2.1.1, LOCK in Vol. 2
  ch. 3), MODIGN (mod bits ignored, always a register: MOV CR/DR, SDM "MOV-Move to/from Control
  Registers"), EXT (a recognised encoding the emulated CPU lacks: its length is known, it raises #UD).
* ``semantic``: None, or a ``Sem``: the row runs the pure scalar function ``Sem.fn`` of
  emu/cpu/semantics.py through the one handler H_SCALAR in both tiers (its sub-operation is the
  function's number), and belongs to the CPUID feature ``Sem.feature`` (emu/cpu/features.py),
  advertised exactly when its rows are implemented. Such an instruction is this row plus its
  function (docs/internals.md, "Adding an instruction"). Rows without one are run by the older
  per-family handlers that emu/translate/translator.py picks by mnemonic.

Everything not in the table is undefined and raises #UD. ``build_tables`` turns the rows into numpy
integer arrays for the numba decoder (decoder.py).
"""

from __future__ import annotations

import re
from typing import NamedTuple

import numpy as np


class Sem(NamedTuple):
    """The semantic column of a row: its scalar function and CPUID feature ("" if always present)."""

    fn: str
    feature: str = ""


LOCKABLE = 1
MODIGN = 2
EXT = 4
# derived flags (set by the builder)
F_HASMODRM = 0x100
F_BYTEOP = 0x200
F_MAND66 = 0x400
F_MANDREP = 0x800

# ---- addressing methods of an operand (SDM Appendix A.2.1) ----
AM_NONE, AM_E, AM_G, AM_M, AM_R, AM_I, AM_IS, AM_J, AM_O, AM_A, AM_S, AM_C, AM_D = range(13)
AM_FIX, AM_Z, AM_X, AM_Y, AM_SEG, AM_ONE, AM_ST0, AM_STI, AM_P, AM_Q, AM_N, AM_V, AM_W = range(13, 26)
AM_U, AM_XMM0 = 26, 27

# ---- size codes: positive = bytes; negative = depends on the operand size ----
SZ_V = -1  # 2 or 4 (v and z are the same outside 64-bit mode)
SZ_P = -2  # far pointer: 4 or 6
SZ_A = -3  # BOUND: 4 or 8
_SIZES = {"b": 1, "w": 2, "d": 4, "q": 8, "dq": 16, "x": 16, "t": 10, "v": SZ_V, "z": SZ_V, "p": SZ_P,
          "a": SZ_A, "s": 6, "ps": 16, "pd": 16, "ss": 4, "sd": 8, "y": 4, "": 0}

_GPR8 = ["AL", "CL", "DL", "BL", "AH", "CH", "DH", "BH"]
_GPR16 = ["AX", "CX", "DX", "BX", "SP", "BP", "SI", "DI"]
_GPR32 = ["EAX", "ECX", "EDX", "EBX", "ESP", "EBP", "ESI", "EDI"]
_SREGS = ["ES", "CS", "SS", "DS", "FS", "GS"]

# (addressing method, register size, memory size, fixed register)
_METHODS = {"E": AM_E, "G": AM_G, "M": AM_M, "R": AM_R, "I": AM_I, "J": AM_J, "O": AM_O, "A": AM_A,
            "S": AM_S, "C": AM_C, "D": AM_D, "Z": AM_Z, "X": AM_X, "Y": AM_Y, "P": AM_P, "Q": AM_Q,
            "N": AM_N, "V": AM_V, "W": AM_W, "U": AM_U}
_REG_ONLY = {AM_R, AM_N, AM_U}
_MEM_CLASS = {AM_M}


def parse_operand(tok: str) -> tuple[int, int, int, int]:
    """One operand code -> (method, register size, memory size, fixed register)."""
    if tok in _GPR8:
        return AM_FIX, 1, 0, _GPR8.index(tok)
    if tok in _GPR16:
        return AM_FIX, 2, 0, _GPR16.index(tok)
    if tok in _GPR32:
        return AM_FIX, 4, 0, _GPR32.index(tok)
    if tok.startswith("e") and tok[1:].upper() in _GPR16:
        return AM_FIX, SZ_V, 0, _GPR16.index(tok[1:].upper())
    if tok in _SREGS:
        return AM_SEG, 2, 0, _SREGS.index(tok)
    if tok == "1":
        return AM_ONE, 1, 0, 0
    if tok == "ST":
        return AM_ST0, 10, 0, 0
    if tok == "ST(i)":
        return AM_STI, 10, 0, 0
    if tok == "XMM0":
        return AM_XMM0, 16, 0, 0
    if tok == "Ibs":
        return AM_IS, 1, 0, 0
    if "/" in tok:  # register form / memory form, e.g. Rv/Mw, Udq/Mq, Nq/Mq
        r, m = tok.split("/")
        am_r, rs, _, _ = parse_operand(r)
        _, _, ms, _ = parse_operand(m)
        am = {AM_R: AM_E, AM_N: AM_Q, AM_U: AM_W}[am_r]
        return am, rs, ms, 0
    am = _METHODS[tok[0]]
    sz = _SIZES[tok[1:]]
    if am in (AM_P, AM_N, AM_V, AM_U):
        sz = 8 if am in (AM_P, AM_N) else 16
        return am, sz, 0, 0
    if am == AM_Q:
        return am, 8, sz, 0
    if am == AM_W:
        return am, 16, sz, 0
    if am in (AM_M, AM_X, AM_Y, AM_O):
        return am, 0, sz, 0
    return am, sz, sz, 0


# ---------------------------------------------------------------------------------------------
# The table. SDM Vol. 2 Appendix A: Table A-2 (one-byte map), A-3 (0F map), A-4 (0F 38), A-5
# (0F 3A), A-6 (groups by ModRM.reg), A-7..A-22 (x87 escape D8-DF).
# ---------------------------------------------------------------------------------------------
L = LOCKABLE
_ALU = ["add", "or", "adc", "sbb", "and", "sub", "xor", "cmp"]
_SHIFT = ["rol", "ror", "rcl", "rcr", "shl", "shr", "sal", "sar"]
_CC = ["o", "no", "b", "ae", "e", "ne", "be", "a", "s", "ns", "p", "np", "l", "ge", "le", "g"]

TABLE: list[tuple] = []


def _rows(*rows):
    for r in rows:
        TABLE.append((*r, 0, None)[:5] if len(r) == 3 else (*r, None)[:5])


# ---- one-byte map (Table A-2) ----
for _i, _n in enumerate(_ALU):
    _b = _i * 8
    _lk = 0 if _n == "cmp" else L
    _rows((f"{_b:02X} /r", _n, "Eb,Gb", _lk), (f"{_b + 1:02X} /r", _n, "Ev,Gv", _lk),
          (f"{_b + 2:02X} /r", _n, "Gb,Eb"), (f"{_b + 3:02X} /r", _n, "Gv,Ev"),
          (f"{_b + 4:02X}", _n, "AL,Ib"), (f"{_b + 5:02X}", _n, "eAX,Iz"),
          (f"80 /{_i}", _n, "Eb,Ib", _lk), (f"81 /{_i}", _n, "Ev,Iz", _lk),
          (f"82 /{_i}", _n, "Eb,Ib", _lk), (f"83 /{_i}", _n, "Ev,Ibs", _lk))
for _op, _s in ((0x06, "ES"), (0x0E, "CS"), (0x16, "SS"), (0x1E, "DS")):
    _rows((f"{_op:02X}", "push", _s))
    if _s != "CS":
        _rows((f"{_op + 1:02X}", "pop", _s))
_rows(("27", "daa", ""), ("2F", "das", ""), ("37", "aaa", ""), ("3F", "aas", ""),
      ("40+r", "inc", "Zv"), ("48+r", "dec", "Zv"), ("50+r", "push", "Zv"), ("58+r", "pop", "Zv"),
      ("60", "pusha", ""), ("61", "popa", ""), ("62 /r", "bound", "Gv,Ma"), ("63 /r", "arpl", "Ew,Gw"),
      ("68", "push", "Iz"), ("69 /r", "imul", "Gv,Ev,Iz"), ("6A", "push", "Ibs"),
      ("6B /r", "imul", "Gv,Ev,Ibs"), ("6C", "ins", "Yb,DX"), ("6D", "ins", "Yz,DX"),
      ("6E", "outs", "DX,Xb"), ("6F", "outs", "DX,Xz"))
for _i, _c in enumerate(_CC):
    _rows((f"{0x70 + _i:02X}", "j" + _c, "Jb"), (f"0F {0x80 + _i:02X}", "j" + _c, "Jz"),
          (f"0F {0x40 + _i:02X} /r", "cmov" + _c, "Gv,Ev"), (f"0F {0x90 + _i:02X} /r", "set" + _c, "Eb"))
_rows(("84 /r", "test", "Eb,Gb"), ("85 /r", "test", "Ev,Gv"), ("86 /r", "xchg", "Eb,Gb", L),
      ("87 /r", "xchg", "Ev,Gv", L), ("88 /r", "mov", "Eb,Gb"), ("89 /r", "mov", "Ev,Gv"),
      ("8A /r", "mov", "Gb,Eb"), ("8B /r", "mov", "Gv,Ev"), ("8D /r", "lea", "Gv,M"),
      ("8F /0", "pop", "Ev"), ("90", "nop", ""), ("F3 90", "pause", ""),
      ("98", "cbw", ""), ("99", "cwd", ""), ("9A", "callf", "Ap"), ("9B", "wait", ""),
      ("9C", "pushf", ""), ("9D", "popf", ""), ("9E", "sahf", ""), ("9F", "lahf", ""),
      ("A0", "mov", "AL,Ob"), ("A1", "mov", "eAX,Ov"), ("A2", "mov", "Ob,AL"), ("A3", "mov", "Ov,eAX"),
      ("A4", "movs", "Yb,Xb"), ("A5", "movs", "Yv,Xv"), ("A6", "cmps", "Xb,Yb"), ("A7", "cmps", "Xv,Yv"),
      ("A8", "test", "AL,Ib"), ("A9", "test", "eAX,Iz"), ("AA", "stos", "Yb,AL"), ("AB", "stos", "Yv,eAX"),
      ("AC", "lods", "AL,Xb"), ("AD", "lods", "eAX,Xv"), ("AE", "scas", "AL,Yb"), ("AF", "scas", "eAX,Yv"),
      ("B0+r", "mov", "Zb,Ib"), ("B8+r", "mov", "Zv,Iv"),
      ("C2", "ret", "Iw"), ("C3", "ret", ""), ("C4 /r", "les", "Gz,Mp"), ("C5 /r", "lds", "Gz,Mp"),
      ("C6 /0", "mov", "Eb,Ib"), ("C7 /0", "mov", "Ev,Iz"), ("C8", "enter", "Iw,Ib"), ("C9", "leave", ""),
      ("CA", "retf", "Iw"), ("CB", "retf", ""), ("CC", "int3", ""), ("CD", "int", "Ib"), ("CE", "into", ""),
      ("CF", "iret", ""), ("D4", "aam", "Ib"), ("D5", "aad", "Ib"), ("D6", "salc", ""), ("D7", "xlatb", ""),
      ("E0", "loopne", "Jb"), ("E1", "loope", "Jb"), ("E2", "loop", "Jb"), ("E3", "jcxz", "Jb"),
      ("E4", "in", "AL,Ib"), ("E5", "in", "eAX,Ib"), ("E6", "out", "Ib,AL"), ("E7", "out", "Ib,eAX"),
      ("E8", "call", "Jz"), ("E9", "jmp", "Jz"), ("EA", "jmpf", "Ap"), ("EB", "jmp", "Jb"),
      ("EC", "in", "AL,DX"), ("ED", "in", "eAX,DX"), ("EE", "out", "DX,AL"), ("EF", "out", "DX,eAX"),
      ("F1", "int1", ""), ("F4", "hlt", ""), ("F5", "cmc", ""),
      ("F8", "clc", ""), ("F9", "stc", ""), ("FA", "cli", ""), ("FB", "sti", ""), ("FC", "cld", ""),
      ("FD", "std", ""),
      ("FE /0", "inc", "Eb", L), ("FE /1", "dec", "Eb", L),
      ("FF /0", "inc", "Ev", L), ("FF /1", "dec", "Ev", L), ("FF /2", "call", "Ev"), ("FF /3", "callf", "Mp"),
      ("FF /4", "jmp", "Ev"), ("FF /5", "jmpf", "Mp"), ("FF /6", "push", "Ev"))
for _r in range(1, 8):
    _rows((f"{0x90 + _r:02X}", "xchg", "Zv,eAX"))
# MOV Sreg (8C/8E): Sreg 6,7 undefined; MOV to CS (8E /1) is #UD (SDM "MOV", Table A-2 note).
for _r in range(6):
    _rows((f"8C /{_r}", "mov", "Rv/Mw,Sw"))
    if _r != 1:
        _rows((f"8E /{_r}", "mov", "Sw,Ew"))
for _i, _n in enumerate(_SHIFT):  # group 2
    _rows((f"C0 /{_i}", _n, "Eb,Ib"), (f"C1 /{_i}", _n, "Ev,Ib"), (f"D0 /{_i}", _n, "Eb,1"),
          (f"D1 /{_i}", _n, "Ev,1"), (f"D2 /{_i}", _n, "Eb,CL"), (f"D3 /{_i}", _n, "Ev,CL"))
# group 3 (F6/F7); /1 is an undocumented alias of TEST that real CPUs execute
for _i, _n in enumerate(["test", "test", "not", "neg", "mul", "imul", "div", "idiv"]):
    _lk = L if _n in ("not", "neg") else 0
    _rows((f"F6 /{_i}", _n, "Eb,Ib" if _n == "test" else "Eb", _lk),
          (f"F7 /{_i}", _n, "Ev,Iz" if _n == "test" else "Ev", _lk))

# ---- x87 escape (Tables A-7 .. A-22) ----
_X87_ARITH = ["fadd", "fmul", "fcom", "fcomp", "fsub", "fsubr", "fdiv", "fdivr"]
for _i, _n in enumerate(_X87_ARITH):
    _rows((f"D8 /{_i} mem", _n, "Md"), (f"DC /{_i} mem", _n, "Mq"),
          (f"DA /{_i} mem", "fi" + _n[1:], "Md"), (f"DE /{_i} mem", "fi" + _n[1:], "Mw"))
    if _n in ("fcom", "fcomp"):
        _rows((f"D8 {0xC0 + 8 * _i:02X}+i", _n, "ST(i)"))
    else:
        _rows((f"D8 {0xC0 + 8 * _i:02X}+i", _n, "ST,ST(i)"))
# DC/DE register forms: destination ST(i); sub/subr and div/divr swapped (SDM Table note)
for _i, _n in enumerate(["fadd", "fmul", "fcom", "fcomp", "fsubr", "fsub", "fdivr", "fdiv"]):
    if _n in ("fcom", "fcomp"):
        _rows((f"DC {0xC0 + 8 * _i:02X}+i", _n, "ST(i)"))  # undocumented aliases of D8 D0/D8
    else:
        _rows((f"DC {0xC0 + 8 * _i:02X}+i", _n, "ST(i),ST"))
        _rows((f"DE {0xC0 + 8 * _i:02X}+i", _n + "p", "ST(i),ST"))
_rows(("DE D0+i", "fcomp", "ST(i)"), ("DE D9", "fcompp", ""),
      ("D9 /0 mem", "fld", "Md"), ("D9 /2 mem", "fst", "Md"), ("D9 /3 mem", "fstp", "Md"),
      ("D9 /4 mem", "fldenv", "M"), ("D9 /5 mem", "fldcw", "Mw"), ("D9 /6 mem", "fnstenv", "M"),
      ("D9 /7 mem", "fnstcw", "Mw"), ("D9 C0+i", "fld", "ST(i)"), ("D9 C8+i", "fxch", "ST(i)"),
      ("D9 D0", "fnop", ""), ("D9 D8+i", "fstpnce", "ST(i)"),
      ("DA C0+i", "fcmovb", "ST,ST(i)"), ("DA C8+i", "fcmove", "ST,ST(i)"),
      ("DA D0+i", "fcmovbe", "ST,ST(i)"), ("DA D8+i", "fcmovu", "ST,ST(i)"), ("DA E9", "fucompp", ""),
      ("DB /0 mem", "fild", "Md"), ("DB /1 mem", "fisttp", "Md"), ("DB /2 mem", "fist", "Md"),
      ("DB /3 mem", "fistp", "Md"), ("DB /5 mem", "fld", "Mt"), ("DB /7 mem", "fstp", "Mt"),
      ("DB C0+i", "fcmovnb", "ST,ST(i)"), ("DB C8+i", "fcmovne", "ST,ST(i)"),
      ("DB D0+i", "fcmovnbe", "ST,ST(i)"), ("DB D8+i", "fcmovnu", "ST,ST(i)"),
      ("DB E0", "fneni", ""), ("DB E1", "fndisi", ""), ("DB E2", "fnclex", ""), ("DB E3", "fninit", ""),
      ("DB E4", "fnsetpm", ""), ("DB E8+i", "fucomi", "ST,ST(i)"), ("DB F0+i", "fcomi", "ST,ST(i)"),
      ("DD /0 mem", "fld", "Mq"), ("DD /1 mem", "fisttp", "Mq"), ("DD /2 mem", "fst", "Mq"),
      ("DD /3 mem", "fstp", "Mq"), ("DD /4 mem", "frstor", "M"), ("DD /6 mem", "fnsave", "M"),
      ("DD /7 mem", "fnstsw", "Mw"), ("DD C0+i", "ffree", "ST(i)"), ("DD C8+i", "fxch", "ST(i)"),
      ("DD D0+i", "fst", "ST(i)"), ("DD D8+i", "fstp", "ST(i)"), ("DD E0+i", "fucom", "ST(i)"),
      ("DD E8+i", "fucomp", "ST(i)"),
      ("DF /0 mem", "fild", "Mw"), ("DF /1 mem", "fisttp", "Mw"), ("DF /2 mem", "fist", "Mw"),
      ("DF /3 mem", "fistp", "Mw"), ("DF /4 mem", "fbld", "Mt"), ("DF /5 mem", "fild", "Mq"),
      ("DF /6 mem", "fbstp", "Mt"), ("DF /7 mem", "fistp", "Mq"),
      ("DF C0+i", "ffreep", "ST(i)"), ("DF C8+i", "fxch", "ST(i)"), ("DF D0+i", "fstp", "ST(i)"),
      ("DF D8+i", "fstp", "ST(i)"), ("DF E0", "fnstsw", "AX"), ("DF E8+i", "fucomip", "ST,ST(i)"),
      ("DF F0+i", "fcomip", "ST,ST(i)"))
for _b, _n in zip(range(0xE0, 0x100), ["fchs", "fabs", "", "", "ftst", "fxam", "", "", "fld1", "fldl2t",
                                        "fldl2e", "fldpi", "fldlg2", "fldln2", "fldz", "", "f2xm1", "fyl2x",
                                        "fptan", "fpatan", "fxtract", "fprem1", "fdecstp", "fincstp",
                                        "fprem", "fyl2xp1", "fsqrt", "fsincos", "frndint", "fscale",
                                        "fsin", "fcos"], strict=True):
    if _n:
        _rows((f"D9 {_b:02X}", _n, ""))

# ---- 0F map, system and integer (Table A-3, groups 6-9, 15, 16) ----
_rows(("0F 00 /0", "sldt", "Rv/Mw"), ("0F 00 /1", "str", "Rv/Mw"), ("0F 00 /2", "lldt", "Ew"),
      ("0F 00 /3", "ltr", "Ew"), ("0F 00 /4", "verr", "Ew"), ("0F 00 /5", "verw", "Ew"),
      ("0F 01 /0 mem", "sgdt", "Ms"), ("0F 01 /1 mem", "sidt", "Ms"), ("0F 01 /2 mem", "lgdt", "Ms"),
      ("0F 01 /3 mem", "lidt", "Ms"), ("0F 01 /4", "smsw", "Rv/Mw"), ("0F 01 /6", "lmsw", "Ew"),
      ("0F 01 /7 mem", "invlpg", "Mb"), ("0F 01 C8", "monitor", ""), ("0F 01 C9", "mwait", ""),
      ("0F 01 F9", "rdtscp", ""),
      ("0F 02 /r", "lar", "Gv,Ew"), ("0F 03 /r", "lsl", "Gv,Ew"), ("0F 05", "syscall", ""),
      ("0F 06", "clts", ""), ("0F 07", "sysret", ""), ("0F 08", "invd", ""), ("0F 09", "wbinvd", ""),
      ("0F 0B", "ud2", ""),
      ("0F 0D /0 mem", "prefetch", "Mb"), ("0F 0D /1 mem", "prefetchw", "Mb"),
      ("0F 0D /2 mem", "prefetchwt1", "Mb"), ("0F 0D /3 mem", "prefetchw", "Mb"),
      ("0F 0D /4 mem", "prefetch", "Mb"), ("0F 0D /5 mem", "prefetch", "Mb"),
      ("0F 0D /6 mem", "prefetch", "Mb"), ("0F 0D /7 mem", "prefetch", "Mb"),
      # hint space 0F 18-0F 1F: reserved NOPs (SDM Table A-3 "NOP Ev"), group 16 prefetches
      ("0F 18 /r", "nop", "Ev,Gv"), ("0F 18 /0 mem", "prefetchnta", "Mb"),
      ("0F 18 /1 mem", "prefetcht0", "Mb"), ("0F 18 /2 mem", "prefetcht1", "Mb"),
      ("0F 18 /3 mem", "prefetcht2", "Mb"),
      ("0F 19 /r", "nop", "Ev,Gv"), ("0F 1A /r", "nop", "Ev,Gv"), ("0F 1B /r", "nop", "Ev,Gv"),
      ("0F 1C /r", "nop", "Ev,Gv"), ("0F 1D /r", "nop", "Ev,Gv"), ("0F 1E /r", "nop", "Ev,Gv"),
      ("0F 1F /r", "nop", "Ev,Gv"), ("0F 1F /0", "nop", "Ev"),
      ("0F 21 /r", "mov", "Rd,Dd", MODIGN), ("0F 23 /r", "mov", "Dd,Rd", MODIGN),
      ("0F 30", "wrmsr", ""), ("0F 31", "rdtsc", ""), ("0F 32", "rdmsr", ""), ("0F 33", "rdpmc", ""),
      ("0F 34", "sysenter", ""), ("0F 35", "sysexit", ""),
      ("0F A0", "push", "FS"), ("0F A1", "pop", "FS"), ("0F A2", "cpuid", ""), ("0F A3 /r", "bt", "Ev,Gv"),
      ("0F A4 /r", "shld", "Ev,Gv,Ib"), ("0F A5 /r", "shld", "Ev,Gv,CL"), ("0F A8", "push", "GS"),
      ("0F A9", "pop", "GS"), ("0F AA", "rsm", ""), ("0F AB /r", "bts", "Ev,Gv", L),
      ("0F AC /r", "shrd", "Ev,Gv,Ib"), ("0F AD /r", "shrd", "Ev,Gv,CL"), ("0F AF /r", "imul", "Gv,Ev"),
      ("0F AE /0 mem", "fxsave", "M"), ("0F AE /1 mem", "fxrstor", "M"), ("0F AE /2 mem", "ldmxcsr", "Md"),
      ("0F AE /3 mem", "stmxcsr", "Md"), ("NP 0F AE /7 mem", "clflush", "Mb"),
      ("NP 0F AE E8+i", "lfence", ""), ("NP 0F AE F0+i", "mfence", ""), ("NP 0F AE F8+i", "sfence", ""),
      ("0F B0 /r", "cmpxchg", "Eb,Gb", L), ("0F B1 /r", "cmpxchg", "Ev,Gv", L), ("0F B2 /r", "lss", "Gz,Mp"),
      ("0F B3 /r", "btr", "Ev,Gv", L), ("0F B4 /r", "lfs", "Gz,Mp"), ("0F B5 /r", "lgs", "Gz,Mp"),
      ("0F B6 /r", "movzx", "Gv,Eb"), ("0F B7 /r", "movzx", "Gv,Ew"),
      ("0F B9 /r", "ud1", "Gv,Ev"), ("0F BA /4", "bt", "Ev,Ib"), ("0F BA /5", "bts", "Ev,Ib", L),
      ("0F BA /6", "btr", "Ev,Ib", L), ("0F BA /7", "btc", "Ev,Ib", L), ("0F BB /r", "btc", "Ev,Gv", L),
      ("0F BC /r", "bsf", "Gv,Ev", 0, Sem("bsf")), ("0F BD /r", "bsr", "Gv,Ev", 0, Sem("bsr")),
      ("0F BE /r", "movsx", "Gv,Eb"), ("0F BF /r", "movsx", "Gv,Ew"), ("0F C0 /r", "xadd", "Eb,Gb", L),
      ("0F C1 /r", "xadd", "Ev,Gv", L),
      ("0F C7 /1 mem", "cmpxchg8b", "Mq", L), ("0F C8+r", "bswap", "Zv"), ("0F FF /r", "ud0", "Gd,Ed"))
# bit counts with a mandatory F3 (without it 0F BC/BD are BSF/BSR, as on CPUs that lack the feature)
_rows(("F3 0F B8 /r", "popcnt", "Gv,Ev", 0, Sem("popcnt", "popcnt")),
      ("F3 0F BC /r", "tzcnt", "Gv,Ev", 0, Sem("tzcnt", "bmi1")),
      ("F3 0F BD /r", "lzcnt", "Gv,Ev", 0, Sem("lzcnt", "lzcnt")))
for _r in (0, 2, 3, 4):  # CR1, CR5-CR7 are reserved: #UD (SDM "MOV-Move to/from Control Registers")
    _rows((f"0F 20 /{_r}", "mov", "Rd,Cd", MODIGN), (f"0F 22 /{_r}", "mov", "Cd,Rd", MODIGN))

# ---- MMX / SSE / SSE2 / SSE3 in the 0F map: NP (MMX or ps), 66 (xmm or pd), F3 (ss), F2 (sd) ----
_PSD = {"NP": ("ps", "Vps,Wps"), "66": ("pd", "Vpd,Wpd"), "F3": ("ss", "Vss,Wss"), "F2": ("sd", "Vsd,Wsd")}
for _op, _n, _pfx in ((0x51, "sqrt", "NP 66 F3 F2"), (0x52, "rsqrt", "NP F3"), (0x53, "rcp", "NP F3"),
                      (0x58, "add", "NP 66 F3 F2"), (0x59, "mul", "NP 66 F3 F2"),
                      (0x5C, "sub", "NP 66 F3 F2"),
                      (0x5D, "min", "NP 66 F3 F2"), (0x5E, "div", "NP 66 F3 F2"),
                      (0x5F, "max", "NP 66 F3 F2"), (0x54, "and", "NP 66"), (0x55, "andn", "NP 66"),
                      (0x56, "or", "NP 66"), (0x57, "xor", "NP 66"), (0x14, "unpckl", "NP 66"),
                      (0x15, "unpckh", "NP 66")):
    for _p in _pfx.split():
        _sfx, _ops = _PSD[_p]
        _rows((f"{_p} 0F {_op:02X} /r", _n + _sfx, _ops))
for _p in ("NP", "66", "F3", "F2"):
    _sfx, _ops = _PSD[_p]
    _rows((f"{_p} 0F C2 /r", "cmp" + _sfx, _ops + ",Ib"))
    _rows((f"{_p} 0F 10 /r", "mov" + ("u" + _sfx if _p in ("NP", "66") else _sfx), _ops))
    _w, _v = _ops.split(",")
    _rows((f"{_p} 0F 11 /r", "mov" + ("u" + _sfx if _p in ("NP", "66") else _sfx), f"{_v},{_w}"))
_rows(("NP 0F 12 mem", "movlps", "Vq,Mq"), ("NP 0F 12 reg", "movhlps", "Vq,Uq"),
      ("66 0F 12 mem", "movlpd", "Vq,Mq"), ("F3 0F 12 /r", "movsldup", "Vdq,Wdq"),
      ("F2 0F 12 /r", "movddup", "Vdq,Uq/Mq"), ("NP 0F 13 mem", "movlps", "Mq,Vq"),
      ("66 0F 13 mem", "movlpd", "Mq,Vq"),
      ("NP 0F 16 mem", "movhps", "Vq,Mq"), ("NP 0F 16 reg", "movlhps", "Vq,Uq"),
      ("66 0F 16 mem", "movhpd", "Vq,Mq"), ("F3 0F 16 /r", "movshdup", "Vdq,Wdq"),
      ("NP 0F 17 mem", "movhps", "Mq,Vq"), ("66 0F 17 mem", "movhpd", "Mq,Vq"),
      ("NP 0F 28 /r", "movaps", "Vps,Wps"), ("66 0F 28 /r", "movapd", "Vpd,Wpd"),
      ("NP 0F 29 /r", "movaps", "Wps,Vps"), ("66 0F 29 /r", "movapd", "Wpd,Vpd"),
      ("NP 0F 2A /r", "cvtpi2ps", "Vps,Qq"), ("66 0F 2A /r", "cvtpi2pd", "Vpd,Qq"),
      ("F3 0F 2A /r", "cvtsi2ss", "Vss,Ed"), ("F2 0F 2A /r", "cvtsi2sd", "Vsd,Ed"),
      ("NP 0F 2B mem", "movntps", "Mps,Vps"), ("66 0F 2B mem", "movntpd", "Mpd,Vpd"),
      ("NP 0F 2C /r", "cvttps2pi", "Pq,Udq/Mq"), ("66 0F 2C /r", "cvttpd2pi", "Pq,Wpd"),
      ("F3 0F 2C /r", "cvttss2si", "Gd,Wss"), ("F2 0F 2C /r", "cvttsd2si", "Gd,Wsd"),
      ("NP 0F 2D /r", "cvtps2pi", "Pq,Udq/Mq"), ("66 0F 2D /r", "cvtpd2pi", "Pq,Wpd"),
      ("F3 0F 2D /r", "cvtss2si", "Gd,Wss"), ("F2 0F 2D /r", "cvtsd2si", "Gd,Wsd"),
      ("NP 0F 2E /r", "ucomiss", "Vss,Wss"), ("66 0F 2E /r", "ucomisd", "Vsd,Wsd"),
      ("NP 0F 2F /r", "comiss", "Vss,Wss"), ("66 0F 2F /r", "comisd", "Vsd,Wsd"),
      ("NP 0F 50 reg", "movmskps", "Gd,Ups"), ("66 0F 50 reg", "movmskpd", "Gd,Upd"),
      ("NP 0F 5A /r", "cvtps2pd", "Vpd,Udq/Mq"), ("66 0F 5A /r", "cvtpd2ps", "Vps,Wpd"),
      ("F3 0F 5A /r", "cvtss2sd", "Vsd,Wss"), ("F2 0F 5A /r", "cvtsd2ss", "Vss,Wsd"),
      ("NP 0F 5B /r", "cvtdq2ps", "Vps,Wdq"), ("66 0F 5B /r", "cvtps2dq", "Vdq,Wps"),
      ("F3 0F 5B /r", "cvttps2dq", "Vdq,Wps"),
      ("NP 0F 6E /r", "movd", "Pq,Ed"), ("66 0F 6E /r", "movd", "Vdq,Ed"),
      ("NP 0F 6F /r", "movq", "Pq,Qq"), ("66 0F 6F /r", "movdqa", "Vdq,Wdq"),
      ("F3 0F 6F /r", "movdqu", "Vdq,Wdq"),
      ("NP 0F 70 /r", "pshufw", "Pq,Qq,Ib"), ("66 0F 70 /r", "pshufd", "Vdq,Wdq,Ib"),
      ("F3 0F 70 /r", "pshufhw", "Vdq,Wdq,Ib"), ("F2 0F 70 /r", "pshuflw", "Vdq,Wdq,Ib"),
      ("NP 0F 77", "emms", ""),
      ("66 0F 7C /r", "haddpd", "Vpd,Wpd"), ("F2 0F 7C /r", "haddps", "Vps,Wps"),
      ("66 0F 7D /r", "hsubpd", "Vpd,Wpd"), ("F2 0F 7D /r", "hsubps", "Vps,Wps"),
      ("NP 0F 7E /r", "movd", "Ed,Pq"), ("66 0F 7E /r", "movd", "Ed,Vdq"),
      ("F3 0F 7E /r", "movq", "Vq,Uq/Mq"),
      ("NP 0F 7F /r", "movq", "Qq,Pq"), ("66 0F 7F /r", "movdqa", "Wdq,Vdq"),
      ("F3 0F 7F /r", "movdqu", "Wdq,Vdq"),
      ("NP 0F C3 mem", "movnti", "Md,Gd"),
      ("NP 0F C4 /r", "pinsrw", "Pq,Rd/Mw,Ib"), ("66 0F C4 /r", "pinsrw", "Vdq,Rd/Mw,Ib"),
      ("NP 0F C5 reg", "pextrw", "Gd,Nq,Ib"), ("66 0F C5 reg", "pextrw", "Gd,Udq,Ib"),
      ("NP 0F C6 /r", "shufps", "Vps,Wps,Ib"), ("66 0F C6 /r", "shufpd", "Vpd,Wpd,Ib"),
      ("66 0F D0 /r", "addsubpd", "Vpd,Wpd"), ("F2 0F D0 /r", "addsubps", "Vps,Wps"),
      ("66 0F D6 /r", "movq", "Uq/Mq,Vq"), ("F3 0F D6 reg", "movq2dq", "Vdq,Nq"),
      ("F2 0F D6 reg", "movdq2q", "Pq,Uq"),
      ("NP 0F D7 reg", "pmovmskb", "Gd,Nq"), ("66 0F D7 reg", "pmovmskb", "Gd,Udq"),
      ("66 0F E6 /r", "cvttpd2dq", "Vdq,Wpd"), ("F3 0F E6 /r", "cvtdq2pd", "Vpd,Udq/Mq"),
      ("F2 0F E6 /r", "cvtpd2dq", "Vdq,Wpd"),
      ("NP 0F E7 mem", "movntq", "Mq,Pq"), ("66 0F E7 mem", "movntdq", "Mdq,Vdq"),
      ("F2 0F F0 mem", "lddqu", "Vdq,Mdq"),
      ("NP 0F F7 reg", "maskmovq", "Pq,Nq"), ("66 0F F7 reg", "maskmovdqu", "Vdq,Udq"))
# MMX (NP, Pq,Qq) and their SSE2 forms (66, Vdq,Wdq)
_MMX = {0x60: "punpcklbw", 0x61: "punpcklwd", 0x62: "punpckldq", 0x63: "packsswb", 0x64: "pcmpgtb",
        0x65: "pcmpgtw", 0x66: "pcmpgtd", 0x67: "packuswb", 0x68: "punpckhbw", 0x69: "punpckhwd",
        0x6A: "punpckhdq", 0x6B: "packssdw", 0x74: "pcmpeqb", 0x75: "pcmpeqw", 0x76: "pcmpeqd",
        0xD1: "psrlw", 0xD2: "psrld", 0xD3: "psrlq", 0xD4: "paddq", 0xD5: "pmullw", 0xD8: "psubusb",
        0xD9: "psubusw", 0xDA: "pminub", 0xDB: "pand", 0xDC: "paddusb", 0xDD: "paddusw", 0xDE: "pmaxub",
        0xDF: "pandn", 0xE0: "pavgb", 0xE1: "psraw", 0xE2: "psrad", 0xE3: "pavgw", 0xE4: "pmulhuw",
        0xE5: "pmulhw", 0xE8: "psubsb", 0xE9: "psubsw", 0xEA: "pminsw", 0xEB: "por", 0xEC: "paddsb",
        0xED: "paddsw", 0xEE: "pmaxsw", 0xEF: "pxor", 0xF1: "psllw", 0xF2: "pslld", 0xF3: "psllq",
        0xF4: "pmuludq", 0xF5: "pmaddwd", 0xF6: "psadbw", 0xF8: "psubb", 0xF9: "psubw", 0xFA: "psubd",
        0xFB: "psubq", 0xFC: "paddb", 0xFD: "paddw", 0xFE: "paddd"}
for _op, _n in _MMX.items():
    _rows((f"NP 0F {_op:02X} /r", _n, "Pq,Qd" if _op in (0x60, 0x61, 0x62) else "Pq,Qq"),
          (f"66 0F {_op:02X} /r", _n, "Vdq,Wdq"))
_rows(("66 0F 6C /r", "punpcklqdq", "Vdq,Wdq"), ("66 0F 6D /r", "punpckhqdq", "Vdq,Wdq"))
# groups 12-14: shifts by immediate
for _op, _subs in ((0x71, {2: "psrlw", 4: "psraw", 6: "psllw"}), (0x72, {2: "psrld", 4: "psrad", 6: "pslld"}),
                   (0x73, {2: "psrlq", 6: "psllq"})):
    for _r, _n in _subs.items():
        _rows((f"NP 0F {_op:02X} /{_r} reg", _n, "Nq,Ib"), (f"66 0F {_op:02X} /{_r} reg", _n, "Udq,Ib"))
_rows(("66 0F 73 /3 reg", "psrldq", "Udq,Ib"), ("66 0F 73 /7 reg", "pslldq", "Udq,Ib"))

# ---- 0F 38 and 0F 3A: SSSE3, SSE4.1, SSE4.2 (Tables) ----
_SSSE3 = {0x00: "pshufb", 0x01: "phaddw", 0x02: "phaddd", 0x03: "phaddsw", 0x04: "pmaddubsw", 0x05: "phsubw",
          0x06: "phsubd", 0x07: "phsubsw", 0x08: "psignb", 0x09: "psignw", 0x0A: "psignd", 0x0B: "pmulhrsw",
          0x1C: "pabsb", 0x1D: "pabsw", 0x1E: "pabsd"}
for _op, _n in _SSSE3.items():
    _rows((f"NP 0F 38 {_op:02X} /r", _n, "Pq,Qq"), (f"66 0F 38 {_op:02X} /r", _n, "Vdq,Wdq"))
_rows(("NP 0F 3A 0F /r", "palignr", "Pq,Qq,Ib"), ("66 0F 3A 0F /r", "palignr", "Vdq,Wdq,Ib"))
for _op, _n in {0x10: "pblendvb", 0x14: "blendvps", 0x15: "blendvpd"}.items():
    _rows((f"66 0F 38 {_op:02X} /r", _n, "Vdq,Wdq,XMM0"))
for _op, _n in {0x17: "ptest", 0x28: "pmuldq", 0x29: "pcmpeqq", 0x2B: "packusdw", 0x37: "pcmpgtq",
                0x38: "pminsb", 0x39: "pminsd", 0x3A: "pminuw", 0x3B: "pminud", 0x3C: "pmaxsb",
                0x3D: "pmaxsd", 0x3E: "pmaxuw", 0x3F: "pmaxud", 0x40: "pmulld", 0x41: "phminposuw"}.items():
    _rows((f"66 0F 38 {_op:02X} /r", _n, "Vdq,Wdq"))
for _i, (_n, _ms) in enumerate((("bw", "q"), ("bd", "d"), ("bq", "w"), ("wd", "q"), ("wq", "d"),
                                ("dq", "q"))):
    _rows((f"66 0F 38 {0x20 + _i:02X} /r", "pmovsx" + _n, f"Vdq,Udq/M{_ms}"),
          (f"66 0F 38 {0x30 + _i:02X} /r", "pmovzx" + _n, f"Vdq,Udq/M{_ms}"))
_rows(("66 0F 38 2A mem", "movntdqa", "Vdq,Mdq"),
      ("F2 0F 38 F0 /r", "crc32", "Gd,Eb"), ("F2 0F 38 F1 /r", "crc32", "Gd,Ev"),
      ("66 0F 3A 08 /r", "roundps", "Vps,Wps,Ib"), ("66 0F 3A 09 /r", "roundpd", "Vpd,Wpd,Ib"),
      ("66 0F 3A 0A /r", "roundss", "Vss,Wss,Ib"), ("66 0F 3A 0B /r", "roundsd", "Vsd,Wsd,Ib"),
      ("66 0F 3A 0C /r", "blendps", "Vps,Wps,Ib"), ("66 0F 3A 0D /r", "blendpd", "Vpd,Wpd,Ib"),
      ("66 0F 3A 0E /r", "pblendw", "Vdq,Wdq,Ib"), ("66 0F 3A 14 /r", "pextrb", "Rd/Mb,Vdq,Ib"),
      ("66 0F 3A 15 /r", "pextrw", "Rd/Mw,Vdq,Ib"), ("66 0F 3A 16 /r", "pextrd", "Ed,Vdq,Ib"),
      ("66 0F 3A 17 /r", "extractps", "Ed,Vdq,Ib"), ("66 0F 3A 20 /r", "pinsrb", "Vdq,Rd/Mb,Ib"),
      ("66 0F 3A 21 /r", "insertps", "Vdq,Udq/Md,Ib"), ("66 0F 3A 22 /r", "pinsrd", "Vdq,Ed,Ib"),
      ("66 0F 3A 40 /r", "dpps", "Vps,Wps,Ib"), ("66 0F 3A 41 /r", "dppd", "Vpd,Wpd,Ib"),
      ("66 0F 3A 42 /r", "mpsadbw", "Vdq,Wdq,Ib"), ("66 0F 3A 60 /r", "pcmpestrm", "Vdq,Wdq,Ib"),
      ("66 0F 3A 61 /r", "pcmpestri", "Vdq,Wdq,Ib"), ("66 0F 3A 62 /r", "pcmpistrm", "Vdq,Wdq,Ib"),
      ("66 0F 3A 63 /r", "pcmpistri", "Vdq,Wdq,Ib"))

# ---- encodings recognised only for their length (EXT: the emulated CPU raises #UD) ----
# VEX (C4/C5), EVEX (62), XOP (8F, map >= 8) and 3DNow! (0F 0F /r ib) are handled by the decoder
# directly; these pseudo-rows give them form numbers and names.
EXT_FORMS = ("vex", "evex", "xop", "3dnow")

# ---------------------------------------------------------------------------------------------
# Builder: rows -> forms -> numpy lookup arrays
# ---------------------------------------------------------------------------------------------
_PFX_COL = {None: 0, "NP": 0, "66": 1, "F3": 2, "F2": 3}
_RE_MODRM = re.compile(r"^([0-9A-F]{2})(\+i)?$")


class Form:
    """One table row, parsed: a decoded instruction's ``F_FORM`` indexes the list ``FORMS``."""

    __slots__ = ("index", "spec", "name", "operands", "flags", "ops", "mnem", "map", "opcode", "pfx", "sem")

    def __repr__(self):
        return f"Form({self.index}, {self.spec!r}, {self.name!r}, {self.operands!r})"


def _parse_spec(spec: str):
    toks = spec.split()
    pfx = None
    if toks[0] in ("NP", "66", "F2", "F3") and len(toks) > 1:
        pfx = toks.pop(0)
    mp = 0
    if toks[0] == "0F":
        toks.pop(0)
        mp = 1
        if toks[0] in ("38", "3A") and len(toks) > 1:
            mp = 2 if toks.pop(0) == "38" else 3
    optok = toks.pop(0)
    if optok.endswith("+r"):
        opcodes = [int(optok[:-2], 16) + i for i in range(8)]
    else:
        opcodes = [int(optok, 16)]
    modrm = None  # None: no ModRM; else (mods, regs, rms)
    mods = {0, 1}  # 0 = memory, 1 = register
    for t in toks:
        if t == "/r":
            modrm = (None, range(8), range(8))
        elif t.startswith("/"):
            modrm = (None, [int(t[1:])], range(8))
        elif t == "mem":
            mods = {0}
            modrm = modrm or (None, range(8), range(8))
        elif t == "reg":
            mods = {1}
            modrm = modrm or (None, range(8), range(8))
        else:
            m = _RE_MODRM.match(t)
            assert m, spec
            b = int(m.group(1), 16)
            assert b >= 0xC0, spec
            rms = range(b & 7, (b & 7) + 8) if m.group(2) else [b & 7]
            modrm = ({1}, [(b >> 3) & 7], rms)
    if modrm is not None and modrm[0] is None:
        modrm = (mods, modrm[1], modrm[2])
    return pfx, mp, opcodes, modrm


def build_tables():
    """Parse TABLE into forms and the numpy arrays the decoder indexes (see decoder.py)."""
    forms: list[Form] = []
    mnemonics: list[str] = []
    mnem_id: dict[str, int] = {}
    # per (map, opcode): list of (form, pfx, modrm-spec)
    slots: dict[int, list] = {}

    def add_form(spec, name, operands, flags, mp=0, opcode=0, pfx=None, sem=None):
        f = Form()
        f.index = len(forms)
        f.spec, f.name, f.operands, f.flags, f.sem = spec, name, operands, flags, sem
        f.ops = [parse_operand(t) for t in operands.split(",")] if operands else []
        if name not in mnem_id:
            mnem_id[name] = len(mnemonics)
            mnemonics.append(name)
        f.mnem = mnem_id[name]
        f.map, f.opcode, f.pfx = mp, opcode, pfx
        forms.append(f)
        return f

    for name in ("(bad)",):
        add_form("", name, "", 0)
    for name in EXT_FORMS:
        add_form("", name, "", EXT)
    for spec, name, operands, flags, sem in TABLE:
        pfx, mp, opcodes, modrm = _parse_spec(spec)
        f = add_form(spec, name, operands, flags, mp, opcodes[0], pfx, sem)
        if modrm is not None:
            f.flags |= F_HASMODRM
            mods, regs, rms = modrm
            rm_ops = [o[0] for o in f.ops]
            if any(a in _REG_ONLY for a in rm_ops) or any(a == AM_STI for a in rm_ops):
                mods = mods & {1}
            if any(a in _MEM_CLASS for a in rm_ops):
                mods = mods & {0}
            if flags & MODIGN:
                mods = {0, 1}
            modrm = (mods, regs, rms)
        if pfx == "66":
            f.flags |= F_MAND66
        elif pfx in ("F2", "F3"):
            f.flags |= F_MANDREP
        sizes = [o[1] for o in f.ops if o[0] in (AM_E, AM_G, AM_FIX, AM_Z, AM_X, AM_Y, AM_M, AM_R)]
        msizes = [o[2] for o in f.ops if o[0] in (AM_X, AM_Y, AM_O)]
        if (1 in sizes or 1 in msizes) and SZ_V not in sizes + msizes and not any(
                o[0] in (AM_V, AM_W, AM_U, AM_P, AM_Q, AM_N) for o in f.ops) and name not in (
                "crc32", "movzx", "movsx", "pextrb", "pinsrb"):
            f.flags |= F_BYTEOP
        for op in opcodes:
            slots.setdefault(mp * 256 + op, []).append((f, pfx, modrm))

    nops = 4
    n = len(forms)
    form_mnem = np.array([f.mnem for f in forms], np.int32)
    form_flags = np.array([f.flags for f in forms], np.int32)
    form_nops = np.array([len(f.ops) for f in forms], np.int32)
    form_am = np.zeros((n, nops), np.int32)
    form_rsz = np.zeros((n, nops), np.int32)
    form_msz = np.zeros((n, nops), np.int32)
    form_fix = np.zeros((n, nops), np.int32)
    for f in forms:
        for i, (am, rs, ms, fx) in enumerate(f.ops):
            j = f.index
            form_am[j, i], form_rsz[j, i], form_msz[j, i], form_fix[j, i] = am, rs, ms, fx

    # level 1: map*256+opcode -> kind (0 invalid, 1 form, 2 group) and value
    op_kind = np.zeros(4 * 256, np.int32)
    op_val = np.zeros(4 * 256, np.int32)
    groups = []
    grp_modrm = []
    grp_pfx = []
    for key in sorted(slots):
        entries = slots[key]
        has_modrm = {m is not None for (_, _, m) in entries}
        assert len(has_modrm) == 1, (key, entries)
        has_modrm = has_modrm.pop()
        uses_pfx = any(p is not None for (_, p, _) in entries)
        if not has_modrm and not uses_pfx:
            assert len(entries) == 1, entries
            op_kind[key] = 1
            op_val[key] = entries[0][0].index
            continue
        g = np.full((4, 2, 8, 8), -1, np.int32)
        # rows without a mandatory prefix first, so prefixed rows override them
        for f, pfx, modrm in sorted(entries, key=lambda e: e[1] is not None):
            cols = range(4) if pfx is None else [_PFX_COL[pfx]]
            if modrm is None:
                for c in cols:
                    g[c, 0, 0, 0] = f.index
                continue
            mods, regs, rms = modrm
            for c in cols:
                for md in mods:
                    for r in regs:
                        for rm in rms:
                            g[c, md, r, rm] = f.index
        op_kind[key] = 2
        op_val[key] = len(groups)
        groups.append(g)
        grp_modrm.append(1 if has_modrm else 0)
        grp_pfx.append(1 if uses_pfx else 0)
    grp = np.array(groups, np.int32).reshape(len(groups), 4 * 2 * 8 * 8)
    return dict(forms=forms, mnemonics=mnemonics, form_mnem=form_mnem, form_flags=form_flags,
                form_nops=form_nops, form_am=form_am, form_rsz=form_rsz, form_msz=form_msz,
                form_fix=form_fix, op_kind=op_kind, op_val=op_val, grp=grp.astype(np.int16),
                grp_modrm=np.array(grp_modrm, np.int32), grp_pfx=np.array(grp_pfx, np.int32))


_T = build_tables()
FORMS: list[Form] = _T["forms"]
MNEMONICS: list[str] = _T["mnemonics"]
FORM_BAD = 0
FORM_VEX, FORM_EVEX, FORM_XOP, FORM_3DNOW = 1, 2, 3, 4
