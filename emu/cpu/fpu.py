"""The x87 FPU (SDM Vol 1, ch. 8): one compiled entry, `fpu_insn`, for every x87 instruction.

Representation. The eight physical data registers R0..R7 live in the state array (S.FPU_R0..) as
float64 bit patterns, as v86 and several other emulators do: **80-bit precision is not kept**.
Values are rounded to 53 bits and to float64's exponent range when they enter a register (FLD m80
of a value outside that range becomes an infinity or a zero; FILD m64 of a large integer is
rounded). Everything else is architectural: TOP and the condition codes in FSW, the full 2-bit
tag word (valid, zero, special, empty), stack overflow and underflow, the six exception flags,
masked default results, ES/B and #MF, FIP/FCS/FOP/FDP/FDS, and the 16/32-bit, real/protected mode
FNSTENV/FNSAVE images (Vol 1, Figures 8-9..8-12).

Rounding. Results are computed in round-to-nearest float64 and then corrected to FCW.RC with the
exact error of the operation (two-sum for FADD/FSUB, FMA for FMUL/FDIV/FSQRT), so the basic
arithmetic rounds correctly in all four modes. FCW.PC is ignored (always 53 bits); with PC = 10b
(double precision) results equal a real x87's. Transcendental functions use the host's libm.

Exceptions (Vol 1, 8.4-8.7). Each operation returns the exception bits it raised; `_finish` merges
them into FSW and sets ES and B when one of them is unmasked in FCW. An unmasked invalid-operation,
zero-divide or denormal exception leaves the destination and the stack unchanged; an unmasked
exception of a store to memory leaves memory unchanged. The next waiting x87 instruction (or WAIT)
then raises #MF if CR0.NE = 1. With CR0.NE = 0 a PC would signal FERR# to the interrupt
controller (IRQ13): this is not modelled, and the exception simply stays pending. DE is reported
for denormal m32fp/m64fp source operands only (a float64 register never holds an 80-bit denormal).

Memory operands are read completely before any state changes, and multi-part stores probe the
first and last byte for writability first, so a #PF or #GP leaves the FPU and memory unchanged.
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from emu.cpu import flags as F
from emu.cpu import fpuops as P
from emu.cpu import state as S
from emu.cpu.access import GP_VECTOR, raise_fault, rset, seg_la, sget, sset, vprobe_write, vread, vwrite
from emu.cpu.eflags import set_status

MF_VECTOR = 16  # x87 floating-point error (SDM Vol 3, 6.15)
CR0_NE = 1 << 5

# ---- FSW (Vol 1, 8.1.3, Figure 8-4) ----
FSW_IE = 0x0001
FSW_DE = 0x0002
FSW_ZE = 0x0004
FSW_OE = 0x0008
FSW_UE = 0x0010
FSW_PE = 0x0020
FSW_EXC = 0x003F  # the six exception flags; FCW's mask bits sit at the same positions
FSW_SF = 0x0040  # stack fault (with IE)
FSW_ES = 0x0080  # error summary: an unmasked exception is pending
FSW_C0 = 0x0100
FSW_C1 = 0x0200
FSW_C2 = 0x0400
FSW_TOP_SHIFT = 11
FSW_TOP_MASK = 0x3800
FSW_C3 = 0x4000
FSW_B = 0x8000  # busy: mirrors ES
FSW_CC3 = FSW_C0 | FSW_C2 | FSW_C3  # what a compare sets
EXC_UNDERFLOW = FSW_IE | FSW_SF  # stack underflow: IE + SF, C1 = 0 (Vol 1, 8.5.1.1)
EXC_OVERFLOW = FSW_IE | FSW_SF | FSW_C1  # stack overflow: C1 = 1
PRE_EXC = FSW_IE | FSW_DE | FSW_ZE  # unmasked, these leave the destination unchanged
STORE_EXC = FSW_IE | FSW_DE | FSW_ZE | FSW_OE | FSW_UE  # unmasked, these leave memory unchanged

# ---- FCW (Vol 1, 8.1.5) ----
FCW_INIT = 0x037F  # all exceptions masked, 64-bit precision, round to nearest (FNINIT)
FCW_RC_SHIFT = 10
RC_NEAREST, RC_DOWN, RC_UP, RC_CHOP = range(4)

# ---- tag word (Vol 1, 8.1.7) ----
TAG_VALID, TAG_ZERO, TAG_SPECIAL, TAG_EMPTY = range(4)
EXT_SIZE = 10  # bytes of an 80-bit extended value in memory
FTW_ALL_EMPTY = 0xFFFF

# ---- float64 / float32 / extended encodings (Vol 1, 4.2.2, 4.8.3.7 real indefinite) ----
F64_SIGN = -(1 << 63)  # bit 63 of an int64
F64_ABS = (1 << 63) - 1
F64_EXP = 0x7FF0_0000_0000_0000
F64_FRAC = 0x000F_FFFF_FFFF_FFFF
F64_QUIET = 1 << 51
F64_INDEFINITE = F64_SIGN | 0x7FF8_0000_0000_0000  # QNaN "real indefinite": FFF8 0000 0000 0000h
F64_MAX = 0x7FEF_FFFF_FFFF_FFFF
F64_ONE = 0x3FF0_0000_0000_0000
F64_MIN_NORMAL = 2.2250738585072014e-308
F32_EXP = 0x7F80_0000
F32_FRAC = 0x007F_FFFF
F32_QUIET = 1 << 22
F32_SIGN = 1 << 31
F32_MAX = 0x7F7F_FFFF
EXT_INT_BIT = F64_SIGN  # the explicit integer bit of the 64-bit extended significand
EXT_EXP_MAX = 0x7FFF
EXT_BIAS = 16383
F64_BIAS = 1023
BCD_MAX = 1e18  # 18 packed digits: |value| must stay below 10**18
BCD_INDEF_HI = 0xC000_0000  # packed BCD indefinite: FFFF C000 0000 0000 0000h (Vol 1, 4.7)
BCD_INDEF_TOP = 0xFFFF
TWO63 = 9.223372036854775808e18
TRIG_LIMIT = TWO63  # FSIN/FCOS/FPTAN/FSINCOS: |x| >= 2**63 is out of range (C2 = 1)
LN2 = 0.6931471805599453
PREM_MAX_EXP_DIFF = 64  # FPREM/FPREM1 reduce completely below this exponent difference

# FLD1, FLDL2T, FLDL2E, FLDPI, FLDLG2, FLDLN2, FLDZ, rounded to float64 (Vol 2, FLD1/FLDL2T/...).
CONSTANTS = np.array([1.0, 3.321928094887362, 1.4426950408889634, math.pi, 0.3010299956639812,
                      0.6931471805599453, 0.0])


# ------------------------------------------------------------------------------ bit casts
@intrinsic
def f64_from_bits(typingctx, bits):
    if not isinstance(bits, types.Integer):
        return None
    sig = types.float64(types.int64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return sig, codegen


@intrinsic
def f64_bits(typingctx, x):
    if not isinstance(x, types.Float):
        return None
    sig = types.int64(types.float64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return sig, codegen


@intrinsic
def f32_bits_to_f64(typingctx, bits):
    """The float32 whose bit pattern is the low 32 bits of `bits`, widened exactly."""
    if not isinstance(bits, types.Integer):
        return None
    sig = types.float64(types.int64)

    def codegen(context, builder, signature, args):
        f = builder.bitcast(builder.trunc(args[0], ir.IntType(32)), ir.FloatType())
        return builder.fpext(f, ir.DoubleType())

    return sig, codegen


@intrinsic
def f64_to_f32_bits(typingctx, x):
    """`x` rounded to float32 (to nearest), as a zero-extended bit pattern."""
    if not isinstance(x, types.Float):
        return None
    sig = types.int64(types.float64)

    def codegen(context, builder, signature, args):
        f = builder.fptrunc(args[0], ir.FloatType())
        return builder.zext(builder.bitcast(f, ir.IntType(32)), ir.IntType(64))

    return sig, codegen


@intrinsic
def fma(typingctx, a, b, c):
    """a*b + c with one rounding (LLVM's llvm.fma): gives the exact error of a product."""
    sig = types.float64(types.float64, types.float64, types.float64)

    def codegen(context, builder, signature, args):
        d = ir.DoubleType()
        fn = builder.module.declare_intrinsic("llvm.fma", [d], ir.FunctionType(d, [d, d, d]))
        return builder.call(fn, args)

    return sig, codegen


# ------------------------------------------------------------------------------ classification
@njit(cache=True)
def is_nan(bits):
    return (bits & F64_ABS) > F64_EXP


@njit(cache=True)
def is_snan(bits):
    return is_nan(bits) and (bits & F64_QUIET) == 0


@njit(cache=True)
def tag_of(bits):
    """The tag of a non-empty register (Vol 1, 8.1.7): zero, special (NaN, infinity) or valid."""
    if (bits & F64_ABS) == 0:
        return TAG_ZERO
    if (bits & F64_EXP) == F64_EXP:
        return TAG_SPECIAL
    return TAG_VALID


# ------------------------------------------------------------------------------ the register stack
@njit(cache=True)
def _top(sp):
    return (sget(sp, S.FPU_FSW) >> FSW_TOP_SHIFT) & 7


@njit(cache=True)
def _set_top(sp, top):
    sset(sp, S.FPU_FSW, (sget(sp, S.FPU_FSW) & ~FSW_TOP_MASK) | ((top & 7) << FSW_TOP_SHIFT))


@njit(cache=True)
def _tag(sp, phys):
    return (sget(sp, S.FPU_FTW) >> (2 * (phys & 7))) & 3


@njit(cache=True)
def _set_tag(sp, phys, tag):
    sh = 2 * (phys & 7)
    sset(sp, S.FPU_FTW, (sget(sp, S.FPU_FTW) & ~(3 << sh)) | (tag << sh))


@njit(cache=True)
def _bits(sp, phys):
    return sget(sp, S.FPU_R0 + (phys & 7))


@njit(cache=True)
def _put(sp, phys, bits):
    """Write physical register `phys` and tag it from its value."""
    sset(sp, S.FPU_R0 + (phys & 7), bits)
    _set_tag(sp, phys, tag_of(bits))


@njit(cache=True)
def _push(sp, bits):
    top = (_top(sp) - 1) & 7
    _set_top(sp, top)
    _put(sp, top, bits)


@njit(cache=True)
def _pop(sp):
    top = _top(sp)
    _set_tag(sp, top, TAG_EMPTY)
    _set_top(sp, top + 1)


@njit(cache=True)
def _full(sp):
    """A push would overflow: the register below TOP is not empty (Vol 1, 8.5.1.1)."""
    return _tag(sp, _top(sp) - 1) != TAG_EMPTY


@njit(cache=True)
def _operand(sp, phys):
    """(bits, exception) of a source register: an empty one is a stack underflow whose masked
    response reads the real indefinite."""
    if _tag(sp, phys) == TAG_EMPTY:
        return F64_INDEFINITE, EXC_UNDERFLOW
    return _bits(sp, phys), 0


@njit(cache=True)
def _rc(sp):
    return (sget(sp, S.FPU_FCW) >> FCW_RC_SHIFT) & 3


@njit(cache=True)
def _blocked(sp, exc, which):
    """True when one of the exceptions `which` in `exc` is unmasked."""
    return (exc & which & ~sget(sp, S.FPU_FCW)) != 0


@njit(cache=True)
def _finish(sp, exc):
    """Merge an instruction's exceptions into FSW (C1 from EXC_OVERFLOW, else cleared); ES and B
    when one is unmasked (Vol 1, 8.1.3.1, 8.7)."""
    fsw = (sget(sp, S.FPU_FSW) & ~FSW_C1) | (exc & (FSW_EXC | FSW_SF | FSW_C1))
    if exc & FSW_EXC & ~sget(sp, S.FPU_FCW):
        fsw |= FSW_ES | FSW_B
    sset(sp, S.FPU_FSW, fsw)


@njit(cache=True)
def _update_es(sp):
    """After FCW or FSW is loaded: ES and B say whether an unmasked exception flag is set."""
    fsw = sget(sp, S.FPU_FSW) & ~(FSW_ES | FSW_B)
    if fsw & FSW_EXC & ~sget(sp, S.FPU_FCW):
        fsw |= FSW_ES | FSW_B
    sset(sp, S.FPU_FSW, fsw)


@njit(cache=True)
def _set_cc(sp, mask, value):
    sset(sp, S.FPU_FSW, (sget(sp, S.FPU_FSW) & ~mask) | value)


@njit(cache=True)
def fpu_init(sp):
    """FNINIT (Vol 1, 8.1.10 / Vol 3, Table 9-1): FCW 037Fh, FSW 0, all tags empty, pointers 0."""
    sset(sp, S.FPU_FCW, FCW_INIT)
    sset(sp, S.FPU_FSW, 0)
    sset(sp, S.FPU_FTW, FTW_ALL_EMPTY)
    for k in (S.FPU_FIP, S.FPU_FCS, S.FPU_FOP, S.FPU_FDP, S.FPU_FDS):
        sset(sp, k, 0)


@njit(cache=True)
def fpu_wait(sp):
    """WAIT and every waiting x87 instruction: #MF for a pending unmasked exception when
    CR0.NE = 1 (Vol 1, 8.6; Vol 3, 6.15). With NE = 0 (FERR#/IRQ13) nothing happens here."""
    if (sget(sp, S.FPU_FSW) & FSW_ES) and (sget(sp, S.CR0) & CR0_NE):
        return raise_fault(sp, MF_VECTOR, -1)
    return 0


# ------------------------------------------------------------------------------ rounding helpers
@njit(cache=True)
def _step(bits, up):
    """The float64 next to `bits` towards +inf (up) or -inf."""
    if bits >= 0:
        if up:
            return bits + 1
        return bits - 1 if bits != 0 else F64_SIGN | 1
    if up:
        return bits - 1 if bits != F64_SIGN else 1
    return bits + 1


@njit(cache=True)
def _step32(bits, up):
    if (bits & F32_SIGN) == 0:
        if up:
            return bits + 1
        return bits - 1 if bits != 0 else F32_SIGN | 1
    if up:
        return bits - 1 if bits != F32_SIGN else 1
    return bits + 1


@njit(cache=True)
def _directed(rbits, err, rc):
    """Correct a round-to-nearest result to rounding mode `rc`, given the sign of the exact
    result minus it (`err`)."""
    if rc == RC_DOWN and err < 0:
        return _step(rbits, False)
    if rc == RC_UP and err > 0:
        return _step(rbits, True)
    if rc == RC_CHOP and rbits & F64_ABS:
        neg = rbits < 0
        if (err < 0 and not neg) or (err > 0 and neg):
            return _step(rbits, neg)
    return rbits


@njit(cache=True)
def _overflowed(neg, rc):
    """The masked overflow result (Vol 1, 4.9.1.4, Table 4-10): infinity or the largest finite."""
    big = rc == RC_CHOP or (rc == RC_DOWN and not neg) or (rc == RC_UP and neg)
    v = F64_MAX if big else F64_EXP
    return (F64_SIGN | v) if neg else v


@njit(cache=True)
def _post(r, err, finite_in, rc):
    """(bits, exceptions) of a rounded result `r` with exact error `err`: OE, PE and UE."""
    if math.isinf(r) and finite_in:
        return _overflowed(r < 0, rc), FSW_OE | FSW_PE
    bits = f64_bits(r)
    if err == 0.0:
        return bits, 0
    bits = _directed(bits, err, rc)
    exc = FSW_PE
    if abs(f64_from_bits(bits)) < F64_MIN_NORMAL:
        exc |= FSW_UE
    return bits, exc


@njit(cache=True)
def round_int(x, rc):
    """`x` rounded to an integral value by `rc` (FRNDINT, FIST, FBSTP)."""
    if rc == RC_NEAREST:
        f = np.floor(x)
        d = x - f
        if d > 0.5 or (d == 0.5 and np.fmod(f, 2.0) != 0.0):
            f += 1.0
    elif rc == RC_DOWN:
        f = np.floor(x)
    elif rc == RC_UP:
        f = np.ceil(x)
    else:
        f = np.trunc(x)
    if f == 0.0:
        f = math.copysign(0.0, x)
    return f


@njit(cache=True)
def _pick_nan(abits, bbits):
    """The NaN result of an operation with NaN operands (Vol 1, 4.8.3.5, Table 4-7, x87 rules):
    a QNaN beats an SNaN, else the larger significand (the positive one on a tie), quieted."""
    an = is_nan(abits)
    bn = is_nan(bbits)
    if an and bn:
        if is_snan(abits) and not is_snan(bbits):
            return bbits
        if is_snan(bbits) and not is_snan(abits):
            return abits | F64_QUIET
        qa = abits | F64_QUIET
        qb = bbits | F64_QUIET
        fa = qa & F64_FRAC
        fb = qb & F64_FRAC
        if fa > fb:
            return qa
        if fb > fa:
            return qb
        return qa if qa >= 0 else qb
    if an:
        return abits | F64_QUIET
    return bbits | F64_QUIET


@njit(cache=True)
def _nan_exc(abits, bbits):
    return FSW_IE if (is_snan(abits) or is_snan(bbits)) else 0


# ------------------------------------------------------------------------------ arithmetic
@njit(cache=True, error_model="numpy")  # IEEE results, never a Python ZeroDivisionError
def binop(op, abits, bbits, rc):
    """(bits, exceptions) of dst `op` src for OP_ADD..OP_DIVR (a = dst, b = src)."""
    if op == P.OP_SUBR or op == P.OP_DIVR:
        abits, bbits = bbits, abits
    if is_nan(abits) or is_nan(bbits):
        return _pick_nan(abits, bbits), _nan_exc(abits, bbits)
    a = f64_from_bits(abits)
    b = f64_from_bits(bbits)
    finite_in = not (math.isinf(a) or math.isinf(b))
    if op == P.OP_ADD or op == P.OP_SUB or op == P.OP_SUBR:
        if op != P.OP_ADD:
            b = -b
        r = a + b
        if r != r:
            return F64_INDEFINITE, FSW_IE  # inf - inf
        err = 0.0
        if not math.isinf(r):
            bp = r - a
            err = (a - (r - bp)) + (b - bp)
        if r == 0.0 and rc == RC_DOWN and (math.copysign(1.0, a) != math.copysign(1.0, b)):
            r = -0.0  # an exact x + (-x) is -0 when rounding down (IEEE 754, 6.3)
        return _post(r, err, finite_in, rc)
    if op == P.OP_MUL:
        r = a * b
        if r != r:
            return F64_INDEFINITE, FSW_IE  # 0 * inf
        err = fma(a, b, -r) if finite_in and not math.isinf(r) else 0.0
        return _post(r, err, finite_in, rc)
    # division
    if b == 0.0:
        if a == 0.0:
            return F64_INDEFINITE, FSW_IE  # 0 / 0
        r = math.copysign(math.inf, a) * math.copysign(1.0, b)  # x / 0: ZE unless x is infinite
        return f64_bits(r), (0 if math.isinf(a) else FSW_ZE)
    r = a / b
    if r != r:
        return F64_INDEFINITE, FSW_IE  # inf / inf
    err = 0.0
    if finite_in and not math.isinf(r):
        err = fma(-r, b, a)
        if b < 0.0:
            err = -err
    return _post(r, err, finite_in, rc)


@njit(cache=True)
def _compare(abits, bbits, quiet):
    """(C3 C2 C0, exceptions) of comparing a with b (Vol 2, FCOM: 000 >, 001 <, 100 =, 111
    unordered); an ordered compare raises IE on any NaN, FUCOM only on an SNaN."""
    if is_nan(abits) or is_nan(bbits):
        exc = FSW_IE if (not quiet or is_snan(abits) or is_snan(bbits)) else 0
        return FSW_CC3, exc
    a = f64_from_bits(abits)
    b = f64_from_bits(bbits)
    if a > b:
        return 0, 0
    if a < b:
        return FSW_C0, 0
    return FSW_C3, 0


# ------------------------------------------------------------------------------ memory formats
@njit(cache=True)
def arg_size(arg):
    if arg == P.ARG_M32FP or arg == P.ARG_M32INT:
        return 4
    if arg == P.ARG_M64FP or arg == P.ARG_M64INT:
        return 8
    if arg == P.ARG_M80FP or arg == P.ARG_M80BCD:
        return 10
    return 2


@njit(cache=True)
def ext_to_f64(mant, se):
    """float64 bits of an 80-bit extended value (64-bit significand with explicit integer bit,
    sign and 15-bit exponent in `se`), rounded to nearest (Vol 1, 4.2.2, Table 4-3)."""
    sign = F64_SIGN if se & 0x8000 else 0
    exp = se & EXT_EXP_MAX
    if exp == EXT_EXP_MAX:
        if mant >= 0:
            return F64_INDEFINITE  # pseudo-infinity / pseudo-NaN: unsupported
        frac = mant & F64_ABS
        if frac == 0:
            return sign | F64_EXP
        payload = (frac >> 11) & F64_FRAC
        if payload == 0:
            payload = 1
        return sign | F64_EXP | payload
    if exp == 0:
        return sign  # zero, or a (pseudo-)denormal far below float64's range
    if mant >= 0:
        return F64_INDEFINITE  # unnormal: unsupported
    m = (mant >> 11) & ((1 << 53) - 1)
    rem = mant & 0x7FF
    if rem > 0x400 or (rem == 0x400 and (m & 1)):
        m += 1
    e = exp - EXT_BIAS
    if m == (1 << 53):
        m >>= 1
        e += 1
    if e > F64_BIAS:
        return sign | F64_EXP
    if e >= 1 - F64_BIAS:
        return sign | ((e + F64_BIAS) << 52) | (m & F64_FRAC)
    return sign | f64_bits(math.ldexp(float(m), e - 52))


@njit(cache=True)
def f64_to_ext(bits):
    """(significand, sign|exponent) of the 80-bit extended value equal to float64 `bits`."""
    sign = 0x8000 if bits < 0 else 0
    e = (bits >> 52) & 0x7FF
    f = bits & F64_FRAC
    if e == 0x7FF:
        return EXT_INT_BIT | (f << 11), sign | EXT_EXP_MAX
    if e == 0:
        if f == 0:
            return 0, sign
        p = 51
        while not ((f >> p) & 1):
            p -= 1
        return f << (63 - p), sign | (p - 1074 + EXT_BIAS)
    return EXT_INT_BIT | (f << 11), sign | (e - F64_BIAS + EXT_BIAS)


@njit(cache=True)
def decode(arg, lo, hi, top):
    """(float64 bits, exceptions) of a memory operand read as lo (bytes 0-3), hi (4-7), top (8-9)."""
    if arg == P.ARG_M32FP:
        e = lo & F32_EXP
        f = lo & F32_FRAC
        if e == F32_EXP and f != 0 and not (lo & F32_QUIET):
            return f64_bits(f32_bits_to_f64(lo | F32_QUIET)), FSW_IE  # SNaN
        return f64_bits(f32_bits_to_f64(lo)), (FSW_DE if e == 0 and f != 0 else 0)
    if arg == P.ARG_M64FP:
        bits = lo | (hi << 32)
        if is_snan(bits):
            return bits | F64_QUIET, FSW_IE
        return bits, (FSW_DE if (bits & F64_EXP) == 0 and (bits & F64_FRAC) != 0 else 0)
    if arg == P.ARG_M80FP:
        return ext_to_f64(lo | (hi << 32), top), 0
    if arg == P.ARG_M16INT:
        v = lo & 0xFFFF
        return f64_bits(float(v - 0x10000 if v & 0x8000 else v)), 0
    if arg == P.ARG_M32INT:
        v = lo & 0xFFFF_FFFF
        return f64_bits(float(v - (1 << 32) if v & 0x8000_0000 else v)), 0
    if arg == P.ARG_M64INT:
        return f64_bits(float(lo | (hi << 32))), 0
    # packed BCD: 18 digits in bytes 0..8, the sign in bit 7 of byte 9 (Vol 1, 4.7)
    v = 0
    for k in range(8, -1, -1):
        if k < 4:
            b = (lo >> (8 * k)) & 0xFF
        elif k < 8:
            b = (hi >> (8 * (k - 4))) & 0xFF
        else:
            b = top & 0xFF
        v = v * 100 + (b >> 4) * 10 + (b & 0xF)
    x = float(v)
    return f64_bits(-x if top & 0x8000 else x), 0


@njit(cache=True)
def _encode_int(arg, bits, rc):
    """(exceptions, lo, hi, top) of FIST/FISTP/FISTTP/FBSTP: rounded by `rc`; NaN, infinity or out
    of range is IE with the integer (or BCD) indefinite as masked result (Vol 2, FIST)."""
    x = f64_from_bits(bits)
    if arg == P.ARG_M16INT:
        lim_lo, lim_hi = -32768.0, 32767.0
    elif arg == P.ARG_M32INT:
        lim_lo, lim_hi = -2147483648.0, 2147483647.0
    elif arg == P.ARG_M64INT:
        lim_lo, lim_hi = -TWO63, TWO63
    else:
        lim_lo, lim_hi = -BCD_MAX, BCD_MAX
    r = 0.0
    ok = not (math.isnan(x) or math.isinf(x))
    if ok:
        r = round_int(x, rc)
        if arg == P.ARG_M64INT or arg == P.ARG_M80BCD:
            ok = lim_lo <= r < lim_hi if arg == P.ARG_M64INT else -lim_hi < r < lim_hi
        else:
            ok = lim_lo <= r <= lim_hi
    if not ok:
        if arg == P.ARG_M16INT:
            return FSW_IE, 0x8000, 0, 0
        if arg == P.ARG_M32INT:
            return FSW_IE, 0x8000_0000, 0, 0
        if arg == P.ARG_M64INT:
            return FSW_IE, 0, 0x8000_0000, 0
        return FSW_IE, 0, BCD_INDEF_HI, BCD_INDEF_TOP
    exc = FSW_PE if r != x else 0
    if arg != P.ARG_M80BCD:
        v = int(r)
        return exc, v & 0xFFFF_FFFF, (v >> 32) & 0xFFFF_FFFF, 0
    v = int(abs(r))
    lo = 0
    hi = 0
    top = 0x8000 if bits < 0 else 0
    for k in range(9):
        d = v % 100
        v //= 100
        b = ((d // 10) << 4) | (d % 10)
        if k < 4:
            lo |= b << (8 * k)
        elif k < 8:
            hi |= b << (8 * (k - 4))
        else:
            top |= b
    return exc, lo, hi, top


@njit(cache=True)
def encode(arg, bits, rc):
    """(exceptions, lo, hi, top) of storing register value `bits` in memory format `arg`."""
    if arg == P.ARG_M64FP:
        exc = 0
        if is_snan(bits):
            bits |= F64_QUIET
            exc = FSW_IE
        return exc, bits & 0xFFFF_FFFF, (bits >> 32) & 0xFFFF_FFFF, 0
    if arg == P.ARG_M80FP:
        mant, se = f64_to_ext(bits)
        return 0, mant & 0xFFFF_FFFF, (mant >> 32) & 0xFFFF_FFFF, se
    if arg != P.ARG_M32FP:
        return _encode_int(arg, bits, rc)
    x = f64_from_bits(bits)
    r = f64_to_f32_bits(x)
    if math.isnan(x):
        return (FSW_IE if is_snan(bits) else 0), r, 0, 0
    back = f32_bits_to_f64(r)
    if back == x:
        return 0, r, 0, 0
    neg = x < 0.0
    if math.isinf(back) and not math.isinf(x):
        big = rc == RC_CHOP or (rc == RC_DOWN and not neg) or (rc == RC_UP and neg)
        r = (F32_MAX if big else F32_EXP) | (F32_SIGN if neg else 0)
        return FSW_OE | FSW_PE, r, 0, 0
    if rc == RC_DOWN and back > x:
        r = _step32(r, False)
    elif rc == RC_UP and back < x:
        r = _step32(r, True)
    elif rc == RC_CHOP and abs(back) > abs(x):
        r = _step32(r, neg)
    exc = FSW_PE
    if (r & F32_EXP) == 0:
        exc |= FSW_UE
    return exc, r, 0, 0


@njit(cache=True)
def _read_operand(sp, tp, mp, cp, user, arg, seg, ea):
    """(failure, bits, exceptions) of a memory source operand."""
    size = arg_size(arg)
    la = seg_la(sp, seg, ea, size, False)
    if la < 0:
        return la, 0, 0
    lo = vread(tp, mp, cp, la, 2 if size == 2 else 4, user)
    if lo < 0:
        return lo, 0, 0
    hi = 0
    top = 0
    if size >= 8:
        hi = vread(tp, mp, cp, (la + 4) & 0xFFFF_FFFF, 4, user)
        if hi < 0:
            return hi, 0, 0
    if size == 10:
        top = vread(tp, mp, cp, (la + 8) & 0xFFFF_FFFF, 2, user)
        if top < 0:
            return top, 0, 0
    bits, exc = decode(arg, lo, hi, top)
    return 0, bits, exc


@njit(cache=True)
def _probe(tp, mp, cp, la, size, user):
    """Check that `size` bytes at `la` can be written (first and last byte: at most two pages)."""
    r = vprobe_write(tp, mp, cp, la, 1, user)
    if r < 0:
        return r
    return vprobe_write(tp, mp, cp, (la + size - 1) & 0xFFFF_FFFF, 1, user)


@njit(cache=True)
def _readable(tp, mp, cp, la, size, user):
    """Check that `size` bytes at `la` can be read (first and last byte: at most two pages)."""
    r = vread(tp, mp, cp, la, 1, user)
    if r < 0:
        return r
    r = vread(tp, mp, cp, (la + size - 1) & 0xFFFF_FFFF, 1, user)
    return r if r < 0 else 0


@njit(cache=True)
def _write_ext(tp, mp, cp, user, a, bits):
    """Store float64 `bits` as the 80-bit extended value at linear `a` (already probed)."""
    mant, se = f64_to_ext(bits)
    vwrite(tp, mp, cp, a & 0xFFFF_FFFF, 4, mant & 0xFFFF_FFFF, user)
    vwrite(tp, mp, cp, (a + 4) & 0xFFFF_FFFF, 4, (mant >> 32) & 0xFFFF_FFFF, user)
    vwrite(tp, mp, cp, (a + 8) & 0xFFFF_FFFF, 2, se, user)


@njit(cache=True)
def _read_ext(tp, mp, cp, user, a):
    """(float64 bits, failure code or 0) of the 80-bit extended value at linear `a`."""
    lo = vread(tp, mp, cp, a & 0xFFFF_FFFF, 4, user)
    hi = vread(tp, mp, cp, (a + 4) & 0xFFFF_FFFF, 4, user)
    se = vread(tp, mp, cp, (a + 8) & 0xFFFF_FFFF, 2, user)
    if lo < 0 or hi < 0 or se < 0:
        return 0, min(lo, min(hi, se))
    return ext_to_f64(lo | (hi << 32), se), 0


@njit(cache=True)
def _retag(sp, empty):
    """Tags after a state load: physical register ph is empty when bit ph of `empty` is set,
    otherwise tagged from its contents (only "empty" is taken from an image)."""
    for ph in range(8):
        _set_tag(sp, ph, TAG_EMPTY if (empty >> ph) & 1 else tag_of(_bits(sp, ph)))


@njit(cache=True)
def _write_operand(sp, tp, mp, cp, user, size, seg, ea, lo, hi, top):
    la = seg_la(sp, seg, ea, size, True)
    if la < 0:
        return la
    if size <= 4:
        return vwrite(tp, mp, cp, la, size, lo, user)
    r = _probe(tp, mp, cp, la, size, user)
    if r < 0:
        return r
    r = vwrite(tp, mp, cp, la, 4, lo, user)
    if r >= 0:
        r = vwrite(tp, mp, cp, (la + 4) & 0xFFFF_FFFF, 4, hi, user)
    if r >= 0 and size == 10:
        r = vwrite(tp, mp, cp, (la + 8) & 0xFFFF_FFFF, 2, top, user)
    return r


# ------------------------------------------------------------------------------ instruction groups
@njit(cache=True)
def _arith(sp, tp, mp, cp, user, op, arg, pops, sti, seg, ea):
    """FADD FMUL FSUB FSUBR FDIV FDIVR in all forms (and their popping and integer forms)."""
    top = _top(sp)
    if arg >= P.FIRST_MEM_ARG:
        r, bbits, exc = _read_operand(sp, tp, mp, cp, user, arg, seg, ea)
        if r < 0:
            return r
        dphys = top
        abits, e2 = _operand(sp, top)
        exc |= e2
    else:
        other = (top + sti) & 7
        dphys = top if arg == P.ARG_STI else other
        sphys = other if arg == P.ARG_STI else top
        abits, exc = _operand(sp, dphys)
        bbits, e2 = _operand(sp, sphys)
        exc |= e2
    if exc & FSW_SF:
        res = F64_INDEFINITE
    else:
        res, e3 = binop(op, abits, bbits, _rc(sp))
        exc |= e3
    if not _blocked(sp, exc, PRE_EXC):
        _put(sp, dphys, res)
        if pops:
            _pop(sp)
    _finish(sp, exc)
    return 0


@njit(cache=True)
def _compare_insn(sp, tp, mp, cp, user, op, arg, pops, sti, seg, ea):
    """FCOM FCOMP FCOMPP FICOM FICOMP FUCOM* (C3 C2 C0), FCOMI* (ZF PF CF), FTST."""
    top = _top(sp)
    abits, exc = _operand(sp, top)
    if arg >= P.FIRST_MEM_ARG:
        r, bbits, e2 = _read_operand(sp, tp, mp, cp, user, arg, seg, ea)
        if r < 0:
            return r
        exc |= e2
    elif op == P.OP_TST:
        bbits = 0
    else:
        bbits, e2 = _operand(sp, top + sti)
        exc |= e2
    cc = FSW_CC3
    if not (exc & FSW_SF):
        quiet = op == P.OP_UCOM or op == P.OP_UCOMI
        cc, e3 = _compare(abits, bbits, quiet)
        exc |= e3
    if not _blocked(sp, exc, PRE_EXC):
        if op == P.OP_COMI or op == P.OP_UCOMI:
            # ZF PF CF = C3 C2 C0; OF SF AF cleared (Vol 2, FCOMI)
            f = 0
            if cc & FSW_C3:
                f |= F.ZF
            if cc & FSW_C2:
                f |= F.PF
            if cc & FSW_C0:
                f |= F.CF
            set_status(sp, f)
        else:
            _set_cc(sp, FSW_CC3, cc)
        for _ in range(pops):
            _pop(sp)
    _finish(sp, exc)
    return 0


@njit(cache=True)
def _xam(sp):
    """FXAM: C1 = sign, C3 C2 C0 = class (Vol 2, FXAM, Table 3-?): empty 101, NaN 001, infinity
    011, zero 100, normal 010. A float64 denormal is a normal number in extended precision."""
    top = _top(sp)
    bits = _bits(sp, top)
    c = FSW_C1 if bits < 0 else 0
    if _tag(sp, top) == TAG_EMPTY:
        c |= FSW_C3 | FSW_C0
    elif is_nan(bits):
        c |= FSW_C0
    elif (bits & F64_ABS) == F64_EXP:
        c |= FSW_C2 | FSW_C0
    elif (bits & F64_ABS) == 0:
        c |= FSW_C3
    else:
        c |= FSW_C2
    _set_cc(sp, FSW_CC3 | FSW_C1, c)
    return 0


@njit(cache=True)
def _load(sp, tp, mp, cp, user, op, arg, sub, sti, seg, ea):
    """FLD (m32/m64/m80/ST(i)), FILD, FBLD and the constants: push a value."""
    top = _top(sp)
    if op == P.OP_LDCONST:
        bits = f64_bits(CONSTANTS[sub % 7])
        exc = 0
    elif arg == P.ARG_STI:
        bits, exc = _operand(sp, top + sti)
    else:
        r, bits, exc = _read_operand(sp, tp, mp, cp, user, arg, seg, ea)
        if r < 0:
            return r
    if _full(sp):
        exc |= EXC_OVERFLOW
        bits = F64_INDEFINITE
    if not _blocked(sp, exc, PRE_EXC):
        _push(sp, bits)
    _finish(sp, exc)
    return 0


@njit(cache=True)
def _store(sp, tp, mp, cp, user, op, arg, pops, sti, seg, ea):
    """FST FSTP (m32/m64/m80/ST(i)), FIST FISTP FISTTP, FBSTP."""
    top = _top(sp)
    bits, exc = _operand(sp, top)
    if arg == P.ARG_STI:
        if not _blocked(sp, exc, PRE_EXC):
            _put(sp, top + sti, bits)
            if pops:
                _pop(sp)
        _finish(sp, exc)
        return 0
    rc = RC_CHOP if op == P.OP_ISTT else _rc(sp)
    e2, lo, hi, hi16 = encode(arg, bits, rc)
    exc |= e2
    if not _blocked(sp, exc, STORE_EXC):
        r = _write_operand(sp, tp, mp, cp, user, arg_size(arg), seg, ea, lo, hi, hi16)
        if r < 0:
            return r
        if pops:
            _pop(sp)
    _finish(sp, exc)
    return 0


@njit(cache=True, error_model="numpy")  # IEEE results, never a Python ZeroDivisionError
def _unary(op, bits, rc):
    """(bits, exceptions) of FCHS FABS FSQRT FRNDINT F2XM1 on ST(0)."""
    if op == P.OP_CHS:
        return bits ^ F64_SIGN, 0
    if op == P.OP_ABS:
        return bits & F64_ABS, 0
    if is_nan(bits):
        return bits | F64_QUIET, _nan_exc(bits, 0)
    x = f64_from_bits(bits)
    if op == P.OP_SQRT:
        if x < 0.0:
            return F64_INDEFINITE, FSW_IE
        if math.isinf(x):
            return bits, 0
        r = math.sqrt(x)
        return _post(r, fma(-r, r, x), True, rc)
    if math.isinf(x):
        if op == P.OP_F2XM1 and x < 0.0:
            return f64_bits(-1.0), 0
        return bits, 0
    if op == P.OP_RNDINT:
        r = round_int(x, rc)
        return f64_bits(r), (FSW_PE if r != x else 0)
    # F2XM1: 2**x - 1 (defined for -1 <= x <= 1)
    if x == 0.0:
        return bits, 0
    return f64_bits(math.expm1(x * LN2)), FSW_PE


@njit(cache=True, error_model="numpy")  # IEEE results, never a Python ZeroDivisionError
def _trig(sp, op):
    """FSIN FCOS FPTAN FSINCOS: C2 = 1 and ST(0) unchanged when |x| >= 2**63 (Vol 2, FSIN)."""
    top = _top(sp)
    bits, exc = _operand(sp, top)
    x = f64_from_bits(bits)
    pushes = op == P.OP_PTAN or op == P.OP_SINCOS
    if not (exc & FSW_SF) and not math.isnan(x) and not math.isinf(x) and abs(x) >= TRIG_LIMIT:
        _set_cc(sp, FSW_C2, FSW_C2)
        _finish(sp, 0)
        return 0
    second = F64_INDEFINITE
    if exc & FSW_SF:
        res = F64_INDEFINITE
    elif is_nan(bits):
        res = bits | F64_QUIET
        second = res
        exc |= _nan_exc(bits, 0)
    elif math.isinf(x):
        res = F64_INDEFINITE
        exc |= FSW_IE
    elif op == P.OP_SIN:
        res = f64_bits(math.sin(x))
    elif op == P.OP_COS:
        res = f64_bits(math.cos(x))
    elif op == P.OP_PTAN:
        res = f64_bits(math.tan(x))
        second = F64_ONE
    else:
        res = f64_bits(math.sin(x))
        second = f64_bits(math.cos(x))
    if not (exc & FSW_IE) and x != 0.0:
        exc |= FSW_PE
    if pushes and _full(sp):
        exc |= EXC_OVERFLOW
        res = F64_INDEFINITE
        second = F64_INDEFINITE
    if not _blocked(sp, exc, PRE_EXC):
        _put(sp, top, res)
        if pushes:
            _push(sp, second)
        _set_cc(sp, FSW_C2, 0)
    _finish(sp, exc)
    return 0


@njit(cache=True, error_model="numpy")  # IEEE results, never a Python ZeroDivisionError
def _prem(xbits, ybits, nearest):
    """(bits, exceptions, C0 C1 C2 C3) of FPREM (truncating) or FPREM1 (IEEE) of x by y (Vol 2,
    FPREM): exact; a complete reduction reports the quotient's low bits Q2 Q1 Q0 in C0 C3 C1,
    a partial one (exponent difference >= 64) sets C2 and reduces by y * 2**(D-N), N = 32..63."""
    if is_nan(xbits) or is_nan(ybits):
        return _pick_nan(xbits, ybits), _nan_exc(xbits, ybits), 0
    x = f64_from_bits(xbits)
    y = f64_from_bits(ybits)
    if math.isinf(x) or y == 0.0:
        return F64_INDEFINITE, FSW_IE, 0
    if math.isinf(y) or x == 0.0:
        return xbits, 0, 0
    ax = abs(x)
    ay = abs(y)
    d = math.frexp(ax)[1] - math.frexp(ay)[1]
    if d >= PREM_MAX_EXP_DIFF:
        n = 32 + d % 32
        r = np.fmod(ax, math.ldexp(ay, d - n))
        return f64_bits(math.copysign(r, x)), 0, FSW_C2
    r = np.fmod(ax, ay)
    ay8 = ay * 8.0
    if math.isinf(ay8):
        q = int(round((ax - r) / ay))
    else:
        q = int(round((np.fmod(ax, ay8) - r) / ay))
    if nearest and (r > ay - r or (r == ay - r and (q & 1))):
        r = r - ay
        q += 1
    res = -r if x < 0.0 else r
    if res == 0.0:
        res = math.copysign(0.0, x)
    cc = 0
    if q & 4:
        cc |= FSW_C0
    if q & 2:
        cc |= FSW_C3
    if q & 1:
        cc |= FSW_C1
    return f64_bits(res), 0, cc


@njit(cache=True, error_model="numpy")  # IEEE results, never a Python ZeroDivisionError
def _two(op, xbits, ybits, rc):
    """(bits, exceptions) of FYL2X FYL2XP1 FPATAN (the result replaces ST(1)) and FSCALE
    (replaces ST(0)); x = ST(0), y = ST(1)."""
    if is_nan(xbits) or is_nan(ybits):
        return _pick_nan(xbits, ybits), _nan_exc(xbits, ybits)
    x = f64_from_bits(xbits)
    y = f64_from_bits(ybits)
    if op == P.OP_PATAN:
        return f64_bits(math.atan2(y, x)), FSW_PE
    if op == P.OP_SCALE:
        if math.isinf(y):
            if (y > 0.0 and x == 0.0) or (y < 0.0 and math.isinf(x)):
                return F64_INDEFINITE, FSW_IE
            if y > 0.0:
                return f64_bits(x * math.inf) if x != 0.0 else xbits, 0
            return f64_bits(math.copysign(0.0, x)) if not math.isinf(x) else xbits, 0
        n = int(max(min(np.trunc(y), 70000.0), -70000.0))
        r = math.ldexp(x, n)
        if math.isinf(r) and not math.isinf(x):
            return _overflowed(r < 0.0, rc), FSW_OE | FSW_PE
        if x != 0.0 and not math.isinf(x) and math.ldexp(r, -n) != x:
            return f64_bits(r), FSW_UE | FSW_PE
        return f64_bits(r), 0
    if op == P.OP_YL2XP1:
        if math.isinf(x) or x < -1.0 or (x == 0.0 and math.isinf(y)):
            return F64_INDEFINITE, FSW_IE
        if x == -1.0:
            if y == 0.0:
                return F64_INDEFINITE, FSW_IE
            return f64_bits(-math.copysign(math.inf, y)), FSW_ZE
        return f64_bits(y * (math.log1p(x) / LN2)), (FSW_PE if x != 0.0 else 0)
    # FYL2X
    if x < 0.0 or (x == 1.0 and math.isinf(y)):
        return F64_INDEFINITE, FSW_IE
    if x == 0.0:
        if y == 0.0:
            return F64_INDEFINITE, FSW_IE
        return f64_bits(-math.copysign(math.inf, y)), FSW_ZE
    if math.isinf(x):
        if y == 0.0:
            return F64_INDEFINITE, FSW_IE
        return f64_bits(math.copysign(math.inf, y)), 0
    return f64_bits(y * math.log2(x)), FSW_PE


@njit(cache=True)
def _misc(sp, op, pops, sti, sub):
    """The register-only operations."""
    top = _top(sp)
    exc = 0
    if op == P.OP_NOP:
        pass
    elif op == P.OP_XCH:
        other = (top + sti) & 7
        a, e1 = _operand(sp, top)
        b, e2 = _operand(sp, other)
        exc = e1 | e2
        if not _blocked(sp, exc, PRE_EXC):
            _put(sp, top, b)
            _put(sp, other, a)
    elif op == P.OP_CMOV:
        b, exc = _operand(sp, top + sti)
        a, e2 = _operand(sp, top)
        exc |= e2
        cond = F.cond(sub, sget(sp, S.CC_OP), sget(sp, S.CC_DST), sget(sp, S.CC_SRC), sget(sp, S.CC_SRC2))
        if exc:
            if not _blocked(sp, exc, PRE_EXC):
                _put(sp, top, F64_INDEFINITE)
        elif cond:
            _put(sp, top, b)
    elif op == P.OP_FREE:
        _set_tag(sp, top + sti, TAG_EMPTY)
        if pops:
            _pop(sp)
    elif op == P.OP_INCSTP:
        _set_top(sp, top + 1)
    elif op == P.OP_DECSTP:
        _set_top(sp, top - 1)
    elif op == P.OP_CHS or op == P.OP_ABS or op == P.OP_SQRT or op == P.OP_RNDINT or op == P.OP_F2XM1:
        bits, exc = _operand(sp, top)
        if not (exc & FSW_SF):
            bits, exc = _unary(op, bits, _rc(sp))
        if not _blocked(sp, exc, PRE_EXC):
            _put(sp, top, bits)
    elif op == P.OP_SIN or op == P.OP_COS or op == P.OP_PTAN or op == P.OP_SINCOS:
        return _trig(sp, op)
    elif op == P.OP_XTRACT:
        bits, exc = _operand(sp, top)
        sig = bits
        if exc & FSW_SF:
            pass
        elif is_nan(bits):
            exc = _nan_exc(bits, 0)
            bits |= F64_QUIET
            sig = bits
        else:
            x = f64_from_bits(bits)
            if x == 0.0:
                bits = f64_bits(-math.inf)
                exc = FSW_ZE
            elif math.isinf(x):
                bits = F64_EXP
            else:
                m, e = math.frexp(x)
                bits = f64_bits(float(e - 1))
                sig = f64_bits(m * 2.0)
        if _full(sp):
            exc |= EXC_OVERFLOW
            bits = F64_INDEFINITE
            sig = F64_INDEFINITE
        if not _blocked(sp, exc, PRE_EXC):
            _put(sp, top, bits)
            _push(sp, sig)
    else:  # FPREM FPREM1 FYL2X FYL2XP1 FPATAN FSCALE: ST(0) and ST(1)
        xbits, exc = _operand(sp, top)
        ybits, e2 = _operand(sp, top + 1)
        exc |= e2
        cc = 0
        res = F64_INDEFINITE
        if not (exc & FSW_SF):
            if op == P.OP_PREM or op == P.OP_PREM1:
                res, e3, cc = _prem(xbits, ybits, op == P.OP_PREM1)
            else:
                res, e3 = _two(op, xbits, ybits, _rc(sp))
            exc |= e3
        if not _blocked(sp, exc, PRE_EXC):
            if op == P.OP_PREM or op == P.OP_PREM1:
                _put(sp, top, res)
                if cc & FSW_C2:  # partial: C0 C1 C3 keep their values
                    c1 = sget(sp, S.FPU_FSW) & FSW_C1
                    _set_cc(sp, FSW_C2, FSW_C2)
                else:
                    c1 = cc & FSW_C1
                    _set_cc(sp, FSW_CC3, cc & FSW_CC3)
                _finish(sp, exc | c1)
                return 0
            if op == P.OP_SCALE:
                _put(sp, top, res)
            else:
                _put(sp, top + 1, res)
                _pop(sp)
    _finish(sp, exc)
    return 0


# ------------------------------------------------------------------------------ control
@njit(cache=True)
def _fcs(sp, seg):
    return sget(sp, S.SEGSEL + seg * S.SEG_STRIDE)


@njit(cache=True)
def _protected(sp):
    """The environment image uses the protected-mode layout (CR0.PE = 1 and not virtual-8086)."""
    return (sget(sp, S.CR0) & 1) != 0 and (sget(sp, S.EFLAGS) & F.VM) == 0


@njit(cache=True)
def _env_word(sp, k, opsize, pm):
    """Slot k (0..6) of the FNSTENV image (Vol 1, Figures 8-9..8-12); reserved bits read as 1."""
    if k == 0:
        v = sget(sp, S.FPU_FCW)
    elif k == 1:
        v = sget(sp, S.FPU_FSW)
    elif k == 2:
        v = sget(sp, S.FPU_FTW)
    else:
        fip = sget(sp, S.FPU_FIP)
        fdp = sget(sp, S.FPU_FDP)
        fcs = sget(sp, S.FPU_FCS)
        fds = sget(sp, S.FPU_FDS)
        fop = sget(sp, S.FPU_FOP) & 0x7FF
        if pm:
            if k == 3:
                return fip & 0xFFFF_FFFF
            if k == 4:
                return fcs | (fop << 16) if opsize == 4 else fcs
            if k == 5:
                return fdp & 0xFFFF_FFFF
            v = fds
        else:  # real-address and virtual-8086 mode: linear pointers, FOP beside FIP's high bits
            lip = ((fcs << 4) + fip) & 0xFFFF_FFFF
            ldp = ((fds << 4) + fdp) & 0xFFFF_FFFF
            if k == 3:
                v = lip & 0xFFFF
            elif k == 4:
                return fop | (((lip >> 16) & (0xFFFF if opsize == 4 else 0xF)) << 12)
            elif k == 5:
                v = ldp & 0xFFFF
            else:
                return ((ldp >> 16) & (0xFFFF if opsize == 4 else 0xF)) << 12
    v &= 0xFFFF
    return (v | 0xFFFF_0000) if opsize == 4 else v


@njit(cache=True)
def _load_env_word(sp, k, w, opsize, pm):
    """Slot k of an FLDENV/FRSTOR image."""
    if k == 0:
        sset(sp, S.FPU_FCW, w & 0xFFFF)
    elif k == 1:
        sset(sp, S.FPU_FSW, w & 0xFFFF)
    elif k == 2:
        sset(sp, S.FPU_FTW, w & 0xFFFF)
    elif pm:
        if k == 3:
            sset(sp, S.FPU_FIP, w & (0xFFFF_FFFF if opsize == 4 else 0xFFFF))
        elif k == 4:
            sset(sp, S.FPU_FCS, w & 0xFFFF)
            sset(sp, S.FPU_FOP, (w >> 16) & 0x7FF if opsize == 4 else 0)
        elif k == 5:
            sset(sp, S.FPU_FDP, w & (0xFFFF_FFFF if opsize == 4 else 0xFFFF))
        else:
            sset(sp, S.FPU_FDS, w & 0xFFFF)
    else:
        high = 0xFFFF if opsize == 4 else 0xF
        if k == 3:
            sset(sp, S.FPU_FIP, (sget(sp, S.FPU_FIP) & ~0xFFFF) | (w & 0xFFFF))
            sset(sp, S.FPU_FCS, 0)
        elif k == 4:
            sset(sp, S.FPU_FIP, (sget(sp, S.FPU_FIP) & 0xFFFF) | (((w >> 12) & high) << 16))
            sset(sp, S.FPU_FOP, w & 0x7FF)
        elif k == 5:
            sset(sp, S.FPU_FDP, (sget(sp, S.FPU_FDP) & ~0xFFFF) | (w & 0xFFFF))
            sset(sp, S.FPU_FDS, 0)
        else:
            sset(sp, S.FPU_FDP, (sget(sp, S.FPU_FDP) & 0xFFFF) | (((w >> 12) & high) << 16))


@njit(cache=True)
def _env(sp, tp, mp, cp, user, op, opsize, seg, ea):
    """FNSTENV FLDENV FNSAVE FRSTOR: 14/28-byte environment, then (save/restore) ST(0)..ST(7) as
    80-bit values. The whole image is checked before anything changes."""
    unit = 4 if opsize == 4 else 2
    envsize = 7 * unit
    regs = op == P.OP_NSAVE or op == P.OP_RSTOR
    size = envsize + (80 if regs else 0)
    store = op == P.OP_NSTENV or op == P.OP_NSAVE
    la = seg_la(sp, seg, ea, size, store)
    if la < 0:
        return la
    pm = _protected(sp)
    if store:
        r = _probe(tp, mp, cp, la, size, user)
        if r < 0:
            return r
        for k in range(7):
            vwrite(tp, mp, cp, (la + k * unit) & 0xFFFF_FFFF, unit, _env_word(sp, k, opsize, pm), user)
        if regs:
            top = _top(sp)
            for i in range(8):
                _write_ext(tp, mp, cp, user, la + envsize + EXT_SIZE * i, _bits(sp, top + i))
            fpu_init(sp)
        else:
            sset(sp, S.FPU_FCW, sget(sp, S.FPU_FCW) | FSW_EXC)  # FNSTENV then masks all exceptions
        return 0
    r = _readable(tp, mp, cp, la, size, user)
    if r < 0:
        return r
    for k in range(7):
        w = vread(tp, mp, cp, (la + k * unit) & 0xFFFF_FFFF, unit, user)
        if w < 0:
            return w
        _load_env_word(sp, k, w, opsize, pm)
    ftw = sget(sp, S.FPU_FTW)
    if regs:
        top = _top(sp)
        for i in range(8):
            bits, r = _read_ext(tp, mp, cp, user, la + envsize + EXT_SIZE * i)
            if r < 0:
                return r
            sset(sp, S.FPU_R0 + ((top + i) & 7), bits)
    empty = 0
    for ph in range(8):
        if ((ftw >> (2 * ph)) & 3) == TAG_EMPTY:
            empty |= 1 << ph
    _retag(sp, empty)
    _update_es(sp)
    return 0


@njit(cache=True)
def _control(sp, tp, mp, cp, user, op, arg, opsize, seg, ea):
    if op == P.OP_NINIT:
        fpu_init(sp)
    elif op == P.OP_NCLEX:
        sset(sp, S.FPU_FSW, sget(sp, S.FPU_FSW) & ~(FSW_EXC | FSW_SF | FSW_ES | FSW_B))
    elif op == P.OP_NSTSW and arg == P.ARG_AX:
        rset(sp, 0, 2, sget(sp, S.FPU_FSW))
    elif op == P.OP_NSTSW or op == P.OP_NSTCW:
        v = sget(sp, S.FPU_FSW if op == P.OP_NSTSW else S.FPU_FCW)
        la = seg_la(sp, seg, ea, 2, True)
        if la < 0:
            return la
        return vwrite(tp, mp, cp, la, 2, v & 0xFFFF, user)
    elif op == P.OP_LDCW:
        la = seg_la(sp, seg, ea, 2, False)
        if la < 0:
            return la
        v = vread(tp, mp, cp, la, 2, user)
        if v < 0:
            return v
        sset(sp, S.FPU_FCW, v)
        _update_es(sp)
    elif op == P.OP_NSTENV or op == P.OP_LDENV or op == P.OP_NSAVE or op == P.OP_RSTOR:
        return _env(sp, tp, mp, cp, user, op, opsize, seg, ea)
    return 0


# ------------------------------------------------------------------------------ the entry
@njit(cache=True)
def fpu_insn(sp, tp, mp, cp, user, aux, imm, fop, has_mem, seg, ea, ieip):
    """Run one x87 instruction (R_AUX = `aux`, R_IMM = `imm`, R_IMM2 = `fop`, see fpuops.py) whose
    memory operand, if any, is `seg`:`ea`. 0, or a negative failure code with an exception
    recorded (the instruction then changed nothing). #NM is checked by the caller."""
    op = aux & P.AUX_OP_MASK
    arg = (aux >> P.AUX_ARG_SHIFT) & 0xF
    pops = (aux >> P.AUX_POPS_SHIFT) & 3
    sub = (aux >> P.AUX_SUB_SHIFT) & 0xF
    sti = imm & 7
    opsize = (imm >> 3) & 7
    if op < P.OP_FIRST_NOWAIT:
        r = fpu_wait(sp)
        if r < 0:
            return r
    if op >= P.OP_FIRST_CONTROL:
        return _control(sp, tp, mp, cp, user, op, arg, opsize, seg, ea)
    if op <= P.OP_DIVR:
        r = _arith(sp, tp, mp, cp, user, op, arg, pops, sti, seg, ea)
    elif op <= P.OP_TST:
        r = _compare_insn(sp, tp, mp, cp, user, op, arg, pops, sti, seg, ea)
    elif op == P.OP_XAM:
        r = _xam(sp)
    elif op == P.OP_LD or op == P.OP_LDCONST:
        r = _load(sp, tp, mp, cp, user, op, arg, sub, sti, seg, ea)
    elif op == P.OP_ST or op == P.OP_ISTT:
        r = _store(sp, tp, mp, cp, user, op, arg, pops, sti, seg, ea)
    else:
        r = _misc(sp, op, pops, sti, sub)
    if r >= 0:
        # The last instruction and data pointers (Vol 1, 8.1.8, 8.1.9).
        sset(sp, S.FPU_FIP, ieip)
        sset(sp, S.FPU_FCS, _fcs(sp, S.CS))
        sset(sp, S.FPU_FOP, fop & 0x7FF)
        if has_mem:
            sset(sp, S.FPU_FDP, ea)
            sset(sp, S.FPU_FDS, _fcs(sp, seg & 7))
    return r


# ------------------------------------------------------------------------------ FXSAVE / FXRSTOR
FXSAVE_SIZE = 512
FXSAVE_ALIGN = 16
FX_FCW, FX_FSW, FX_FTW, FX_FOP, FX_FIP, FX_FCS, FX_FDP, FX_FDS = 0, 2, 4, 6, 8, 12, 16, 20
FX_MXCSR, FX_MXCSR_MASK = 24, 28
FX_ST0 = 32  # ST(i) at 32 + 16*i: 10 bytes of the 80-bit value, 6 reserved
FX_ST_STRIDE = 16
MXCSR_DEFAULT = 0x1F80  # all SIMD exceptions masked, round to nearest (Vol 1, 10.2.3.1)
MXCSR_MASK = 0xFFBF  # the bits FXRSTOR accepts (Vol 1, 11.6.6): DAZ is not supported
CR0_EM_TS = 0xC
CR4_OSFXSR = 1 << 9
NM_VECTOR = 7


@njit(cache=True)
def fxsave_fxrstor(sp, tp, mp, cp, user, restore, seg, ea):
    """FXSAVE / FXRSTOR m512byte (Vol 2, FXSAVE, Table 10-2 "legacy" 32-bit layout): FCW, FSW,
    the abridged tag byte (bit i = physical register i not empty), FOP, FIP/FCS, FDP/FDS, MXCSR,
    then ST(0)..ST(7) as 80-bit values 16 bytes apart. There are no XMM registers, so their area
    is neither written nor read. #NM with CR0.EM or CR0.TS; #GP(0) unless 16-byte aligned."""
    if sget(sp, S.CR0) & CR0_EM_TS:
        return raise_fault(sp, NM_VECTOR, -1)
    la = seg_la(sp, seg, ea, FXSAVE_SIZE, not restore)
    if la < 0:
        return la
    if la & (FXSAVE_ALIGN - 1):
        return raise_fault(sp, GP_VECTOR, 0)
    top = _top(sp)
    if not restore:
        r = _probe(tp, mp, cp, la, FX_ST0 + 8 * FX_ST_STRIDE, user)
        if r < 0:
            return r
        abridged = 0
        for ph in range(8):
            if _tag(sp, ph) != TAG_EMPTY:
                abridged |= 1 << ph
        words = (sget(sp, S.FPU_FCW) | (sget(sp, S.FPU_FSW) << 16),
                 abridged | ((sget(sp, S.FPU_FOP) & 0x7FF) << 16),
                 sget(sp, S.FPU_FIP) & 0xFFFF_FFFF, sget(sp, S.FPU_FCS) & 0xFFFF,
                 sget(sp, S.FPU_FDP) & 0xFFFF_FFFF, sget(sp, S.FPU_FDS) & 0xFFFF,
                 sget(sp, S.MXCSR) & 0xFFFF_FFFF, MXCSR_MASK)
        for k in range(8):
            vwrite(tp, mp, cp, (la + 4 * k) & 0xFFFF_FFFF, 4, words[k], user)
        for i in range(8):
            a = la + FX_ST0 + FX_ST_STRIDE * i
            _write_ext(tp, mp, cp, user, a, _bits(sp, top + i))
            vwrite(tp, mp, cp, (a + EXT_SIZE) & 0xFFFF_FFFF, 2, 0, user)  # the 6 reserved bytes
            vwrite(tp, mp, cp, (a + EXT_SIZE + 2) & 0xFFFF_FFFF, 4, 0, user)
        return 0
    r = _readable(tp, mp, cp, la, FX_ST0 + 8 * FX_ST_STRIDE, user)
    if r < 0:
        return r
    w = np.zeros(8, dtype=np.int64)
    for k in range(8):
        w[k] = vread(tp, mp, cp, (la + 4 * k) & 0xFFFF_FFFF, 4, user)
        if w[k] < 0:
            return w[k]
    mxcsr = w[FX_MXCSR // 4]
    if (sget(sp, S.CR4) & CR4_OSFXSR) and (mxcsr & ~MXCSR_MASK):
        return raise_fault(sp, GP_VECTOR, 0)
    regs = np.zeros(8, dtype=np.int64)
    for i in range(8):
        bits, r = _read_ext(tp, mp, cp, user, la + FX_ST0 + FX_ST_STRIDE * i)
        if r < 0:
            return r
        regs[i] = bits
    sset(sp, S.FPU_FCW, w[0] & 0xFFFF)
    sset(sp, S.FPU_FSW, (w[0] >> 16) & 0xFFFF)
    sset(sp, S.FPU_FOP, (w[1] >> 16) & 0x7FF)
    sset(sp, S.FPU_FIP, w[2])
    sset(sp, S.FPU_FCS, w[3] & 0xFFFF)
    sset(sp, S.FPU_FDP, w[4])
    sset(sp, S.FPU_FDS, w[5] & 0xFFFF)
    if sget(sp, S.CR4) & CR4_OSFXSR:
        sset(sp, S.MXCSR, mxcsr)
    top = _top(sp)
    for i in range(8):
        sset(sp, S.FPU_R0 + ((top + i) & 7), regs[i])
    _retag(sp, ~w[1] & 0xFF)  # the abridged tag byte: bit set = in use
    _update_es(sp)
    return 0
