"""Operation numbers of the x87 group (handler H_FPU) and the decoder-form → R_AUX mapping.

The translator stores one packed number per x87 instruction in R_AUX:

    bits 0..7    the operation (OP_*)
    bits 8..11   the operand form (ARG_*): which memory format, or which register is the destination
    bits 12..13  how many registers the instruction pops afterwards (0, 1 or 2)
    bits 16..19  a sub-operation: the FCMOVcc condition (emu/cpu/flags.py codes) or the FLDxx constant

R_IMM holds ModRM.rm (the i of ST(i)) | operand size << 3, R_IMM2 the 11-bit x87 opcode (FOP),
R_SIZE the memory operand's size. emu/cpu/fpu.py runs them.
"""

from __future__ import annotations

# ---- operations (SDM Vol 1, ch. 8; Vol 2 instruction pages) ----
OP_ADD, OP_MUL, OP_SUB, OP_SUBR, OP_DIV, OP_DIVR = range(6)  # binary arithmetic, dst = dst op src
OP_COM = 6  # FCOM/FCOMP/FCOMPP/FICOM/FICOMP: C3 C2 C0
OP_UCOM = 7
OP_COMI = 8  # FCOMI/FCOMIP: ZF PF CF
OP_UCOMI = 9
OP_TST = 10
OP_XAM = 11
OP_LD = 12  # FLD/FILD/FBLD: push the operand
OP_ST = 13  # FST/FSTP/FIST/FISTP/FBSTP (rounded by FCW.RC)
OP_ISTT = 14  # FISTTP (truncates)
OP_XCH = 15
OP_CMOV = 16
OP_FREE = 17  # FFREE / FFREEP
OP_NOP = 18  # FNOP
OP_CHS = 19
OP_ABS = 20
OP_LDCONST = 21  # sub = CONST_*
OP_F2XM1 = 22
OP_YL2X = 23
OP_PTAN = 24
OP_PATAN = 25
OP_XTRACT = 26
OP_PREM1 = 27
OP_DECSTP = 28
OP_INCSTP = 29
OP_PREM = 30
OP_YL2XP1 = 31
OP_SQRT = 32
OP_SINCOS = 33
OP_RNDINT = 34
OP_SCALE = 35
OP_SIN = 36
OP_COS = 37
# Control instructions (from here on: they do not update FIP/FDP/FOP).
OP_FIRST_CONTROL = 40
OP_LDCW = 40
OP_LDENV = 41
OP_RSTOR = 42
# No-wait control instructions (from here on: they never raise #MF for a pending exception).
OP_FIRST_NOWAIT = 48
OP_NSTCW = 48
OP_NSTSW = 49  # m16, or AX when the operand is a register
OP_NSTENV = 50
OP_NSAVE = 51
OP_NINIT = 52
OP_NCLEX = 53
OP_NNOP = 54  # FNENI, FNDISI, FNSETPM: no-ops on a 387-class FPU

# ---- operand forms ----
ARG_NONE = 0
ARG_STI = 1  # ST(0) is the destination (or the only operand), ST(i) the source
ARG_STI_DST = 2  # ST(i) is the destination, ST(0) the source (DC/DE register forms)
ARG_M32FP = 3
ARG_M64FP = 4
ARG_M80FP = 5
ARG_M16INT = 6
ARG_M32INT = 7
ARG_M64INT = 8
ARG_M80BCD = 9
ARG_MEM = 10  # a control operand: m2byte, m14/28byte, m94/108byte
ARG_AX = 11  # FNSTSW AX
FIRST_MEM_ARG = ARG_M32FP

CONST_ONE, CONST_L2T, CONST_L2E, CONST_PI, CONST_LG2, CONST_LN2, CONST_Z = range(7)

AUX_OP_MASK = 0xFF
AUX_ARG_SHIFT = 8
AUX_POPS_SHIFT = 12
AUX_SUB_SHIFT = 16

_BINARY = {"add": OP_ADD, "mul": OP_MUL, "sub": OP_SUB, "subr": OP_SUBR, "div": OP_DIV, "divr": OP_DIVR}
_NOARG = {"fnop": OP_NOP, "fchs": OP_CHS, "fabs": OP_ABS, "ftst": OP_TST, "fxam": OP_XAM,
          "f2xm1": OP_F2XM1, "fyl2x": OP_YL2X, "fptan": OP_PTAN, "fpatan": OP_PATAN,
          "fxtract": OP_XTRACT, "fprem1": OP_PREM1, "fdecstp": OP_DECSTP, "fincstp": OP_INCSTP,
          "fprem": OP_PREM, "fyl2xp1": OP_YL2XP1, "fsqrt": OP_SQRT, "fsincos": OP_SINCOS,
          "frndint": OP_RNDINT, "fscale": OP_SCALE, "fsin": OP_SIN, "fcos": OP_COS,
          "fninit": OP_NINIT, "fnclex": OP_NCLEX, "fneni": OP_NNOP, "fndisi": OP_NNOP,
          "fnsetpm": OP_NNOP}
_CONSTS = {"fld1": CONST_ONE, "fldl2t": CONST_L2T, "fldl2e": CONST_L2E, "fldpi": CONST_PI,
           "fldlg2": CONST_LG2, "fldln2": CONST_LN2, "fldz": CONST_Z}
_CONTROL = {"fldcw": OP_LDCW, "fldenv": OP_LDENV, "frstor": OP_RSTOR, "fnstcw": OP_NSTCW,
            "fnstsw": OP_NSTSW, "fnstenv": OP_NSTENV, "fnsave": OP_NSAVE}
# FCMOVcc conditions as emu/cpu/flags.py condition codes (b, e, be, p and their negations).
_FCMOV_CC = {"b": 2, "e": 4, "be": 6, "u": 10, "nb": 3, "ne": 5, "nbe": 7, "nu": 11}
_POP1 = {"faddp", "fmulp", "fsubp", "fsubrp", "fdivp", "fdivrp", "fcomp", "fucomp", "ficomp", "fstp",
         "fistp", "fisttp", "fbstp", "fcomip", "fucomip", "ffreep", "fstpnce"}
_POP2 = {"fcompp", "fucompp"}
_INT_ARITH = {"add", "mul", "com", "comp", "sub", "subr", "div", "divr"}
_MEM_FP = {"Md": ARG_M32FP, "Mq": ARG_M64FP, "Mt": ARG_M80FP}
_MEM_INT = {"Mw": ARG_M16INT, "Md": ARG_M32INT, "Mq": ARG_M64INT}


def pack(op: int, arg: int = ARG_NONE, pops: int = 0, sub: int = 0) -> int:
    return op | (arg << AUX_ARG_SHIFT) | (pops << AUX_POPS_SHIFT) | (sub << AUX_SUB_SHIFT)


def _arg_of(name: str, operands: str) -> int:
    if operands in ("ST,ST(i)", "ST(i)", ""):
        return ARG_STI if operands else ARG_NONE
    if operands == "ST(i),ST":
        return ARG_STI_DST
    if operands == "AX":
        return ARG_AX
    if name in ("fbld", "fbstp"):
        return ARG_M80BCD
    if name.startswith("fi"):
        return _MEM_INT[operands]
    return _MEM_FP.get(operands, ARG_MEM)


def aux_for(name: str, operands: str) -> int:
    """R_AUX of the x87 form named `name` with operand codes `operands` (opcodes.py notation)."""
    pops = 2 if name in _POP2 else 1 if name in _POP1 else 0
    arg = _arg_of(name, operands)
    if name in _CONSTS:
        return pack(OP_LDCONST, ARG_NONE, 0, _CONSTS[name])
    if name in _NOARG:
        return pack(_NOARG[name], ARG_NONE, 0)
    if name in _CONTROL:
        return pack(_CONTROL[name], arg, 0)
    if name.startswith("fcmov"):
        return pack(OP_CMOV, ARG_STI, 0, _FCMOV_CC[name[5:]])
    base = name[1:]
    if base.startswith("i") and base[1:] in _INT_ARITH:
        base = base[1:]  # FIADD ... FIDIVR: the integer operand is in `arg`
    if name == "fstpnce":
        base = "st"
    elif name in _POP2:
        base = base[:-2]
    elif name in _POP1:
        base = base[:-1]
    if base in _BINARY:
        return pack(_BINARY[base], arg, pops)
    if base in ("com", "ucom", "comi", "ucomi"):
        op = {"com": OP_COM, "ucom": OP_UCOM, "comi": OP_COMI, "ucomi": OP_UCOMI}[base]
        return pack(op, arg if name not in _POP2 else ARG_STI, pops)
    if base in ("ld", "ild", "bld"):
        return pack(OP_LD, arg, 0)
    if base in ("st", "ist", "bst"):
        return pack(OP_ST, arg, pops)
    if base == "istt":
        return pack(OP_ISTT, arg, 1)
    if base == "xch":
        return pack(OP_XCH, ARG_STI, 0)
    if base == "free":
        return pack(OP_FREE, ARG_STI, pops)
    raise ValueError(f"no x87 operation for {name} {operands}")
