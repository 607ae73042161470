"""Integer ALU semantics of the x86 as numba functions on scalars.

Conventions (all arguments and results are int64 scalars):

* ``sz`` is the operand size in bytes: 1, 2 or 4.  Operands are zero-extended values masked to
  ``sz`` bytes; every result is returned masked the same way.
* A flag-setting function returns ``(result..., cc_op, cc_dst, cc_src, cc_src2)``: the new lazy
  flag fields of :mod:`emu.cpu.flags`.  Functions that may leave the flags alone (shifts and
  rotates by a masked count of 0) take the current lazy fields and hand them back unchanged.
* ``cf`` arguments are the current carry flag as 0 or 1 (``flags.compute_cf``); ``eflags``
  arguments are the current status flags (``flags.compute_flags``); only the six status bits are
  read.
* Faults come back as a last ``fault`` element: 0, or 1 for #DE.

The choices made for flags the SDM leaves undefined are listed in :mod:`emu.cpu.flags`.

Inlining: none; each operation is an ordinary njit function, a ~1.5 ns call from the engine's loop.
Numba inlines at the IR level, once per call site, and that doubled the engine's cold compile
(emu/cpu/flags.py gives the figures).
DIV/IDIV leave the lazy flags unchanged, so they return no flag fields.
"""

from numba import njit

from emu.cpu.flags import (
    AF,
    CC_OP_EFLAGS,
    CF,
    K_ADC,
    K_ADD,
    K_DEC,
    K_IMUL,
    K_INC,
    K_LOGIC,
    K_MUL,
    K_SAR,
    K_SBB,
    K_SHL,
    K_SUB,
    OF,
    SF,
    STATUS_MASK,
    ZF,
    compute_flags,
    parity_flag,
)

# The /r numbers of the ALU group (opcodes 00-3F and 80-83) and of the shift group (C0 C1 D0-D3).
ALU_ADD, ALU_OR, ALU_ADC, ALU_SBB, ALU_AND, ALU_SUB, ALU_XOR, ALU_CMP = range(8)
SH_ROL, SH_ROR, SH_RCL, SH_RCR, SH_SHL, SH_SHR, SH_SAL, SH_SAR = range(8)
# Bit-test operations (0F A3 / AB / B3 / BB and the 0F BA group's /4../7 in this order).
BT_BT, BT_BTS, BT_BTR, BT_BTC = range(4)


@njit(cache=True)
def size_mask(sz):
    return (1 << (sz << 3)) - 1


@njit(cache=True)
def sign_extend(x, bits):
    """The signed value of the low ``bits`` bits of ``x``."""
    sign = 1 << (bits - 1)
    return ((x & ((sign << 1) - 1)) ^ sign) - sign


@njit(cache=True)
def _op(kind, sz):
    return kind * 4 + (sz >> 1)


# ---------------------------------------------------------------- add, sub, logic
@njit(cache=True)
def add(a, b, sz):
    r = (a + b) & size_mask(sz)
    return r, _op(K_ADD, sz), r, b, 0


@njit(cache=True)
def adc(a, b, sz, cf):
    r = (a + b + cf) & size_mask(sz)
    return r, _op(K_ADC, sz), r, b, cf


@njit(cache=True)
def sub(a, b, sz):
    """SUB, and CMP (do not write the result back)."""
    r = (a - b) & size_mask(sz)
    return r, _op(K_SUB, sz), r, b, 0


@njit(cache=True)
def sbb(a, b, sz, cf):
    r = (a - b - cf) & size_mask(sz)
    return r, _op(K_SBB, sz), r, b, cf


@njit(cache=True)
def and_(a, b, sz):
    """AND, and TEST (do not write the result back)."""
    r = a & b
    return r, _op(K_LOGIC, sz), r, 0, 0


@njit(cache=True)
def or_(a, b, sz):
    r = a | b
    return r, _op(K_LOGIC, sz), r, 0, 0


@njit(cache=True)
def xor(a, b, sz):
    r = a ^ b
    return r, _op(K_LOGIC, sz), r, 0, 0


@njit(cache=True)
def alu(op, a, b, sz, cf):
    """One of the eight ALU-group operations by its /r number.  For CMP the result is ``a``
    (the destination is unchanged; the caller should not write memory back)."""
    if op == ALU_ADD:
        return add(a, b, sz)
    if op == ALU_OR:
        return or_(a, b, sz)
    if op == ALU_ADC:
        return adc(a, b, sz, cf)
    if op == ALU_SBB:
        return sbb(a, b, sz, cf)
    if op == ALU_AND:
        return and_(a, b, sz)
    if op == ALU_SUB:
        return sub(a, b, sz)
    if op == ALU_XOR:
        return xor(a, b, sz)
    r, o, d, s, s2 = sub(a, b, sz)
    return a, o, d, s, s2


@njit(cache=True)
def neg(a, sz):
    """NEG: flags of SUB 0, a (CF = a != 0)."""
    r = (-a) & size_mask(sz)
    return r, _op(K_SUB, sz), r, a, 0


@njit(cache=True)
def not_(a, sz):
    """NOT: no flags."""
    return (~a) & size_mask(sz)


@njit(cache=True)
def inc(a, sz, cf):
    r = (a + 1) & size_mask(sz)
    return r, _op(K_INC, sz), r, 1, cf


@njit(cache=True)
def dec(a, sz, cf):
    r = (a - 1) & size_mask(sz)
    return r, _op(K_DEC, sz), r, 1, cf


# ---------------------------------------------------------------- shifts
@njit(cache=True)
def shl(val, count, sz, cc_op, cc_dst, cc_src, cc_src2):
    """SHL/SAL.  The count is masked to 5 bits; a masked count of 0 keeps value and flags."""
    count &= 31
    if count == 0:
        return val, cc_op, cc_dst, cc_src, cc_src2
    m = size_mask(sz)
    t = (val << (count - 1)) & m
    r = (t << 1) & m
    return r, _op(K_SHL, sz), r, t, 0


@njit(cache=True)
def shr(val, count, sz, cc_op, cc_dst, cc_src, cc_src2):
    count &= 31
    if count == 0:
        return val, cc_op, cc_dst, cc_src, cc_src2
    t = val >> (count - 1)
    r = t >> 1
    return r, _op(K_SAR, sz), r, t, 0


@njit(cache=True)
def sar(val, count, sz, cc_op, cc_dst, cc_src, cc_src2):
    count &= 31
    if count == 0:
        return val, cc_op, cc_dst, cc_src, cc_src2
    m = size_mask(sz)
    sv = sign_extend(val, sz << 3)
    t = (sv >> (count - 1)) & m
    r = (sv >> count) & m
    return r, _op(K_SAR, sz), r, t, 0


@njit(cache=True)
def _rotl(x, n, width):
    """Rotate the ``width``-bit value ``x`` left by ``n`` (0 <= n < width), without overflow."""
    if n == 0:
        return x
    return ((x & ((1 << (width - n)) - 1)) << n) | (x >> (width - n))


@njit(cache=True)
def rol(val, count, sz, cc_op, cc_dst, cc_src, cc_src2):
    """ROL: CF and OF change (when the masked count is nonzero), the other flags are kept."""
    count &= 31
    if count == 0:
        return val, cc_op, cc_dst, cc_src, cc_src2
    bits = sz << 3
    r = _rotl(val, count & (bits - 1), bits)
    cf = r & 1
    of = ((r >> (bits - 1)) ^ cf) & 1
    f = (compute_flags(cc_op, cc_dst, cc_src, cc_src2) & ~(CF | OF)) | cf | (of << 11)
    return r, CC_OP_EFLAGS, 0, f, 0


@njit(cache=True)
def ror(val, count, sz, cc_op, cc_dst, cc_src, cc_src2):
    count &= 31
    if count == 0:
        return val, cc_op, cc_dst, cc_src, cc_src2
    bits = sz << 3
    n = count & (bits - 1)
    r = _rotl(val, (bits - n) & (bits - 1), bits)
    cf = (r >> (bits - 1)) & 1
    of = (cf ^ (r >> (bits - 2))) & 1
    f = (compute_flags(cc_op, cc_dst, cc_src, cc_src2) & ~(CF | OF)) | cf | (of << 11)
    return r, CC_OP_EFLAGS, 0, f, 0


@njit(cache=True)
def _rc_count(count, sz):
    count &= 31
    if sz == 1:
        return count % 9
    if sz == 2:
        return count % 17
    return count


@njit(cache=True)
def rcl(val, count, sz, cc_op, cc_dst, cc_src, cc_src2):
    """RCL: rotate the (bits+1)-bit value CF:val.  8/16-bit counts are taken modulo 9/17."""
    n = _rc_count(count, sz)
    if n == 0:
        return val, cc_op, cc_dst, cc_src, cc_src2
    bits = sz << 3
    f = compute_flags(cc_op, cc_dst, cc_src, cc_src2)
    w = _rotl(((f & 1) << bits) | val, n, bits + 1)
    r = w & size_mask(sz)
    cf = w >> bits
    of = ((r ^ val) >> (bits - 1)) & 1
    f = (f & ~(CF | OF)) | cf | (of << 11)
    return r, CC_OP_EFLAGS, 0, f, 0


@njit(cache=True)
def rcr(val, count, sz, cc_op, cc_dst, cc_src, cc_src2):
    n = _rc_count(count, sz)
    if n == 0:
        return val, cc_op, cc_dst, cc_src, cc_src2
    bits = sz << 3
    f = compute_flags(cc_op, cc_dst, cc_src, cc_src2)
    w = _rotl(((f & 1) << bits) | val, bits + 1 - n, bits + 1)
    r = w & size_mask(sz)
    cf = w >> bits
    of = ((r ^ val) >> (bits - 1)) & 1
    f = (f & ~(CF | OF)) | cf | (of << 11)
    return r, CC_OP_EFLAGS, 0, f, 0


@njit(cache=True)
def shift(op, val, count, sz, cc_op, cc_dst, cc_src, cc_src2):
    """The shift group by its /r number (SH_ROL .. SH_SAR; /6 is SAL = SHL)."""
    if op == SH_SHL or op == SH_SAL:
        return shl(val, count, sz, cc_op, cc_dst, cc_src, cc_src2)
    if op == SH_SHR:
        return shr(val, count, sz, cc_op, cc_dst, cc_src, cc_src2)
    if op == SH_SAR:
        return sar(val, count, sz, cc_op, cc_dst, cc_src, cc_src2)
    if op == SH_ROL:
        return rol(val, count, sz, cc_op, cc_dst, cc_src, cc_src2)
    if op == SH_ROR:
        return ror(val, count, sz, cc_op, cc_dst, cc_src, cc_src2)
    if op == SH_RCL:
        return rcl(val, count, sz, cc_op, cc_dst, cc_src, cc_src2)
    return rcr(val, count, sz, cc_op, cc_dst, cc_src, cc_src2)


@njit(cache=True)
def shld(dst, src, count, sz, cc_op, cc_dst, cc_src, cc_src2):
    """SHLD dst, src, count for sz 2 or 4.  Count masked to 5 bits; 0 changes nothing.

    16-bit counts of 17..31 shift through dst:src:dst (undefined in the SDM; Intel behaviour)."""
    count &= 31
    if count == 0:
        return dst, cc_op, cc_dst, cc_src, cc_src2
    if sz == 2:
        wide = (dst << 32) | (src << 16) | dst
        r = (wide >> (32 - count)) & 0xFFFF
        t = (wide >> (33 - count)) & 0xFFFF
    else:
        m = 0xFFFFFFFF
        r = ((dst << count) | (src >> (32 - count))) & m
        t = ((dst << (count - 1)) | (src >> (33 - count))) & m
    return r, _op(K_SHL, sz), r, t, 0


@njit(cache=True)
def shrd(dst, src, count, sz, cc_op, cc_dst, cc_src, cc_src2):
    """SHRD dst, src, count for sz 2 or 4 (16-bit counts > 16: see shld)."""
    count &= 31
    if count == 0:
        return dst, cc_op, cc_dst, cc_src, cc_src2
    if sz == 2:
        wide = (dst << 32) | (src << 16) | dst
        r = (wide >> count) & 0xFFFF
        t = (wide >> (count - 1)) & 0xFFFF
    else:
        m = 0xFFFFFFFF
        r = ((dst >> count) | (src << (32 - count))) & m
        if count == 1:
            t = dst
        else:
            t = ((dst >> (count - 1)) | (src << (33 - count))) & m
    return r, _op(K_SAR, sz), r, t, 0


# ---------------------------------------------------------------- multiply and divide
@njit(cache=True)
def mul(a, b, sz):
    """Unsigned MUL: returns (low, high, cc...).  AX = high:low for sz 1, DX:AX, EDX:EAX."""
    bits = sz << 3
    m = size_mask(sz)
    if sz == 4:
        # 32x32 -> 64 without leaving int64: split b into 16-bit halves
        p_lo = a * (b & 0xFFFF)
        p_hi = a * (b >> 16)
        lo = (p_lo + ((p_hi & 0xFFFF) << 16)) & m
        hi = ((p_lo >> 16) + p_hi) >> 16
    else:
        p = a * b
        lo = p & m
        hi = p >> bits
    return lo, hi, _op(K_MUL, sz), lo, hi, 0


@njit(cache=True)
def imul(a, b, sz):
    """One-operand signed IMUL: returns (low, high, cc...); CF = OF = the product does not fit
    in ``sz`` bytes."""
    bits = sz << 3
    m = size_mask(sz)
    p = sign_extend(a, bits) * sign_extend(b, bits)
    lo = p & m
    hi = (p >> bits) & m
    ovf = 1 if p != sign_extend(lo, bits) else 0
    return lo, hi, _op(K_IMUL, sz), lo, ovf, 0


@njit(cache=True)
def imul_trunc(a, b, sz):
    """Two- and three-operand IMUL (``b`` already sign- or zero-extended to ``sz``): returns
    (result, cc...)."""
    lo, hi, o, d, s, s2 = imul(a, b, sz)
    return lo, o, d, s, s2


@njit(cache=True)
def div(hi, lo, divisor, sz):
    """Unsigned DIV of hi:lo (AH:AL, DX:AX, EDX:EAX) by ``divisor``: (quotient, remainder,
    fault).  fault = 1 (#DE) on a zero divisor or a quotient that does not fit."""
    if divisor == 0 or hi >= divisor:
        return 0, 0, 1
    bits = sz << 3
    if sz == 4:
        # hi < divisor < 2**32: two 16-bit long-division steps stay below 2**48
        x = (hi << 16) | (lo >> 16)
        q1 = x // divisor
        x = ((x % divisor) << 16) | (lo & 0xFFFF)
        return (q1 << 16) | (x // divisor), x % divisor, 0
    n = (hi << bits) | lo
    return n // divisor, n % divisor, 0


@njit(cache=True)
def idiv(hi, lo, divisor, sz):
    """Signed IDIV of hi:lo by ``divisor``: (quotient, remainder, fault), truncating toward 0;
    results are zero-extended to ``sz`` bytes.  #DE on a zero divisor or a quotient outside
    [-2**(bits-1), 2**(bits-1) - 1] (so -2**(bits-1) itself is allowed, as on the 286+)."""
    bits = sz << 3
    d = sign_extend(divisor, bits)
    if d == 0:
        return 0, 0, 1
    n = sign_extend(hi, bits) * (1 << bits) + lo  # fits int64 even for 64-bit dividends
    if n == -9223372036854775807 - 1:
        return 0, 0, 1  # |quotient| >= 2**32 for any 32-bit divisor
    an = -n if n < 0 else n
    ad = -d if d < 0 else d
    q = an // ad
    r = an % ad
    if (n < 0) != (d < 0):
        q = -q
    if n < 0:
        r = -r
    lim = 1 << (bits - 1)
    if q >= lim or q < -lim:
        return 0, 0, 1
    m = size_mask(sz)
    return q & m, r & m, 0


# ---------------------------------------------------------------- BCD
@njit(cache=True)
def daa(al, eflags):
    """DAA: returns (al, cc...).  OF (undefined) = 0."""
    cf = eflags & CF
    old = al
    f = 0
    if (al & 0xF) > 9 or (eflags & AF):
        al = (al + 6) & 0xFF
        f |= AF
    if old > 0x99 or cf:
        al = (al + 0x60) & 0xFF
        f |= CF
    f |= parity_flag(al) | (al & SF)
    if al == 0:
        f |= ZF
    return al, CC_OP_EFLAGS, 0, f, 0


@njit(cache=True)
def das(al, eflags):
    """DAS: returns (al, cc...).  OF (undefined) = 0."""
    cf = eflags & CF
    old = al
    f = 0
    if (al & 0xF) > 9 or (eflags & AF):
        f |= AF
        if al < 6 or cf:
            f |= CF
        al = (al - 6) & 0xFF
    if old > 0x99 or cf:
        al = (al - 0x60) & 0xFF
        f |= CF
    f |= parity_flag(al) | (al & SF)
    if al == 0:
        f |= ZF
    return al, CC_OP_EFLAGS, 0, f, 0


@njit(cache=True)
def aaa(ax, eflags):
    """AAA: returns (ax, cc...).  OF SF ZF PF (undefined) keep their values."""
    f = eflags & STATUS_MASK
    if (ax & 0xF) > 9 or (eflags & AF):
        ax = ((ax + 0x106) & 0xFF0F)
        f |= AF | CF
    else:
        ax &= 0xFF0F
        f &= ~(AF | CF)
    return ax, CC_OP_EFLAGS, 0, f, 0


@njit(cache=True)
def aas(ax, eflags):
    """AAS: returns (ax, cc...).  OF SF ZF PF (undefined) keep their values."""
    f = eflags & STATUS_MASK
    if (ax & 0xF) > 9 or (eflags & AF):
        ax = ((ax - 6) & 0xFFFF) - 0x100
        ax &= 0xFF0F
        f |= AF | CF
    else:
        ax &= 0xFF0F
        f &= ~(AF | CF)
    return ax, CC_OP_EFLAGS, 0, f, 0


@njit(cache=True)
def aam(al, base):
    """AAM imm8: returns (ax, cc..., fault); #DE when base is 0 (ax is then returned = al).
    SF ZF PF from AL; OF AF CF (undefined) = 0."""
    if base == 0:
        return al, 0, 0, 0, 0, 1
    r = al % base
    return ((al // base) << 8) | r, _op(K_LOGIC, 1), r, 0, 0, 0


@njit(cache=True)
def aad(ax, base):
    """AAD imm8 (any base): returns (ax, cc...), AH = 0.  SF ZF PF from AL; OF AF CF = 0."""
    al = ((ax & 0xFF) + (ax >> 8) * base) & 0xFF
    return al, _op(K_LOGIC, 1), al, 0, 0


# ---------------------------------------------------------------- bit scan and bit test
@njit(cache=True)
def bt_reg_offset(offset, sz):
    """The bit index of a register destination or of an immediate offset: offset mod width."""
    return offset & ((sz << 3) - 1)


@njit(cache=True)
def bt_mem_offset(offset, sz):
    """For BT* on memory with a register offset (``offset`` = the register, zero-extended to sz
    bytes, taken as signed): (byte displacement to add to the effective address, bit index) of
    the ``sz``-byte word to access.  The displacement may be negative."""
    bits = sz << 3
    so = sign_extend(offset, bits)
    return (so >> (3 + (sz >> 1))) * sz, so & (bits - 1)


@njit(cache=True)
def bt(op, val, bit, sz, eflags):
    """BT/BTS/BTR/BTC (op 0..3) of bit ``bit`` (already reduced, see bt_*_offset) of ``val``:
    returns (new value, cc...).  CF = the old bit; the other flags keep their values."""
    b = (val >> bit) & 1
    if op == BT_BTS:
        val |= 1 << bit
    elif op == BT_BTR:
        val &= ~(1 << bit)
    elif op == BT_BTC:
        val ^= 1 << bit
    return val, CC_OP_EFLAGS, 0, (eflags & (STATUS_MASK & ~CF)) | b, 0
