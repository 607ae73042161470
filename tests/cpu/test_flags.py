"""Exactness of the lazy flags against big-integer models, and of the conditions against the
flag formulas of SDM Vol 1 Appendix B."""

import numba
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emu.cpu import alu
from emu.cpu import flags as F

SIZES = [1, 2, 4]
SET = settings(max_examples=200, deadline=None)
u32 = st.integers(0, 0xFFFFFFFF)
edge = st.sampled_from([0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x7FFFFFFF, 0x80000000,
                        0xFFFFFFFF, 0xF, 0x10])
operand = st.one_of(u32, edge)
bit = st.integers(0, 1)


def parity(x):
    return F.PF if bin(x & 0xFF).count("1") % 2 == 0 else 0


def szp(r, bits):
    return parity(r) | (F.ZF if r == 0 else 0) | (F.SF if r >> (bits - 1) & 1 else 0)


def signed(x, bits):
    return x - (1 << bits) if x >> (bits - 1) & 1 else x


def model_add(a, b, c, bits):
    """Flags of a + b + c from exact integers."""
    m = (1 << bits) - 1
    r = (a + b + c) & m
    f = szp(r, bits)
    f |= F.CF if a + b + c > m else 0
    f |= F.AF if (a & 0xF) + (b & 0xF) + c > 0xF else 0
    s = signed(a, bits) + signed(b, bits) + c
    f |= F.OF if not -(1 << (bits - 1)) <= s < (1 << (bits - 1)) else 0
    return r, f


def model_sub(a, b, c, bits):
    """Flags of a - b - c from exact integers."""
    m = (1 << bits) - 1
    r = (a - b - c) & m
    f = szp(r, bits)
    f |= F.CF if a < b + c else 0
    f |= F.AF if (a & 0xF) < (b & 0xF) + c else 0
    s = signed(a, bits) - signed(b, bits) - c
    f |= F.OF if not -(1 << (bits - 1)) <= s < (1 << (bits - 1)) else 0
    return r, f


def flags_of(res):
    return F.compute_flags(*res[-4:])


@pytest.mark.parametrize("sz", SIZES)
@SET
@given(a=operand, b=operand, c=bit)
def test_add_adc_sub_sbb(sz, a, b, c):
    bits, m = 8 * sz, (1 << 8 * sz) - 1
    a, b = a & m, b & m
    for res, want in ((alu.add(a, b, sz), model_add(a, b, 0, bits)),
                      (alu.adc(a, b, sz, c), model_add(a, b, c, bits)),
                      (alu.sub(a, b, sz), model_sub(a, b, 0, bits)),
                      (alu.sbb(a, b, sz, c), model_sub(a, b, c, bits))):
        assert (res[0], flags_of(res)) == want
        assert F.compute_cf(*res[-4:]) == want[1] & F.CF


@pytest.mark.parametrize("sz", SIZES)
@SET
@given(a=operand, c=bit)
def test_inc_dec_neg_keep_cf(sz, a, c):
    bits, m = 8 * sz, (1 << 8 * sz) - 1
    a &= m
    r, f = model_add(a, 1, 0, bits)
    res = alu.inc(a, sz, c)
    assert (res[0], flags_of(res)) == (r, (f & ~F.CF) | c)
    r, f = model_sub(a, 1, 0, bits)
    res = alu.dec(a, sz, c)
    assert (res[0], flags_of(res)) == (r, (f & ~F.CF) | c)
    assert F.compute_cf(*res[-4:]) == c
    res = alu.neg(a, sz)
    assert (res[0], flags_of(res)) == model_sub(0, a, 0, bits)
    assert alu.not_(a, sz) == m ^ a


@pytest.mark.parametrize("sz", SIZES)
@SET
@given(a=operand, b=operand)
def test_logic(sz, a, b):
    bits, m = 8 * sz, (1 << 8 * sz) - 1
    a, b = a & m, b & m
    for fn, r in ((alu.and_, a & b), (alu.or_, a | b), (alu.xor, a ^ b)):
        res = fn(a, b, sz)
        assert (res[0], flags_of(res)) == (r, szp(r, bits))  # CF = OF = 0, AF = 0 (our choice)


@pytest.mark.parametrize("sz", SIZES)
@SET
@given(a=operand, count=st.integers(1, 31))
def test_shift_flags_model(sz, a, count):
    bits, m = 8 * sz, (1 << 8 * sz) - 1
    a &= m
    r = (a << count) & m
    res = alu.shl(a, count, sz, 0, 0, 0, 0)
    cf = (a << count) >> bits & 1
    assert (res[0], flags_of(res) & ~F.OF) == (r, szp(r, bits) | cf)
    if count == 1:
        assert bool(flags_of(res) & F.OF) == bool((r >> (bits - 1)) ^ cf)
    res = alu.shr(a, count, sz, 0, 0, 0, 0)
    cf = a >> (count - 1) & 1
    assert (res[0], flags_of(res) & ~F.OF) == (a >> count, szp(a >> count, bits) | cf)
    res = alu.sar(a, count, sz, 0, 0, 0, 0)
    r = (signed(a, bits) >> count) & m
    cf = signed(a, bits) >> (count - 1) & 1
    assert (res[0], flags_of(res)) == (r, szp(r, bits) | cf)  # OF = 0


@pytest.mark.parametrize("sz", SIZES)
@SET
@given(a=operand, b=operand)
def test_mul_model(sz, a, b):
    bits, m = 8 * sz, (1 << 8 * sz) - 1
    a, b = a & m, b & m
    lo, hi, *cc = alu.mul(a, b, sz)
    assert hi << bits | lo == a * b
    assert flags_of(cc) & (F.CF | F.OF) == (F.CF | F.OF if hi else 0)
    lo, hi, *cc = alu.imul(a, b, sz)
    p = signed(a, bits) * signed(b, bits)
    assert hi << bits | lo == p & ((1 << 2 * bits) - 1)
    assert flags_of(cc) & (F.CF | F.OF) == (0 if signed(lo, bits) == p else F.CF | F.OF)


@pytest.mark.parametrize("sz", SIZES)
@SET
@given(hi=operand, lo=operand, d=operand)
def test_div_model(sz, hi, lo, d):
    bits, m = 8 * sz, (1 << 8 * sz) - 1
    hi, lo, d = hi & m, lo & m, d & m
    n = hi << bits | lo
    q, r, fault = alu.div(hi, lo, d, sz)
    if d == 0 or n // d > m:
        assert fault == 1
    else:
        assert (q, r, fault) == (n // d, n % d, 0)
    sn, sd = signed(n, 2 * bits), signed(d, bits)
    q, r, fault = alu.idiv(hi, lo, d, sz)
    if sd == 0:
        assert fault == 1
        return
    tq = abs(sn) // abs(sd) * (1 if (sn < 0) == (sd < 0) else -1)
    tr = sn - tq * sd
    if not -(1 << (bits - 1)) <= tq < (1 << (bits - 1)):
        assert fault == 1
    else:
        assert (signed(q, bits), signed(r, bits), fault) == (tq, tr, 0)


@pytest.mark.parametrize("sz", SIZES)
def test_idiv_edges(sz):
    m = (1 << 8 * sz) - 1
    sign = (m >> 1) + 1
    assert alu.idiv(m, sign, m, sz)[2] == 1  # -2**(bits-1) / -1 = 2**(bits-1): #DE
    assert alu.idiv(m, sign, 1, sz) == (sign, 0, 0)  # the most negative quotient is allowed
    assert alu.idiv(0, sign, m, sz) == (sign, 0, 0)  # 2**(bits-1) / -1
    assert alu.idiv(0, sign, 1, sz)[2] == 1
    assert alu.idiv(sign, 0, m, sz)[2] == 1  # most negative double-width dividend
    assert alu.idiv(sign, 0, sign, sz)[2] == 1
    assert alu.idiv(0, 0, 0, sz)[2] == 1
    assert alu.idiv(m, (-7) & m, 2, sz) == ((-3) & m, (-1) & m, 0)  # truncation toward zero
    assert alu.idiv(0, 7, m - 1, sz) == ((-3) & m, 1, 0)


# ---------------------------------------------------------------- conditions
def appendix_b(cc, f):
    cf, zf, sf, of, pf = (bool(f & x) for x in (F.CF, F.ZF, F.SF, F.OF, F.PF))
    base = (of, cf, zf, cf or zf, sf, pf, sf != of, zf or sf != of)[cc >> 1]
    return base != bool(cc & 1)


def lazy_states():
    """Lazy states of every kind and size, made by the ALU functions."""
    sz = st.sampled_from(SIZES)
    m = {1: 0xFF, 2: 0xFFFF, 4: 0xFFFFFFFF}

    def build(args):
        kind, s, a, b, c, fl = args
        a, b = a & m[s], b & m[s]
        if kind == "alu":
            return alu.alu(b % 8, a, b, s, c)[1:]
        if kind == "incdec":
            return (alu.inc if b & 1 else alu.dec)(a, s, c)[1:]
        if kind == "neg":
            return alu.neg(a, s)[1:]
        if kind == "shift":
            return alu.shift(b % 8, a, 1 + (b >> 3) % 31, s, *F.eflags_to_lazy(fl))[1:]
        if kind == "mul":
            return alu.mul(a, b, s)[2:] if c else alu.imul(a, b, s)[2:]
        if kind == "bsf":
            return F.cc_op_of(F.K_ZF, s), a if c else 0, fl & F.STATUS_MASK, 0  # ZF from a, the rest kept
        if kind == "shd":
            s = max(s, 2)
            return (alu.shld if c else alu.shrd)(a & m[s], b & m[s], b >> 5, s, 0, 0, fl, 0)[1:]
        return F.eflags_to_lazy(fl)

    kinds = st.sampled_from(["alu", "incdec", "neg", "shift", "mul", "bsf", "shd", "eflags"])
    return st.tuples(kinds, sz, operand, operand, bit, st.integers(0, 0xFFF)).map(build)


@settings(max_examples=1000, deadline=None)
@given(state=lazy_states())
def test_cond_matches_appendix_b(state):
    f = F.compute_flags(*state)
    assert f & ~F.STATUS_MASK == 0
    assert F.compute_cf(*state) == f & F.CF
    for cc in range(16):
        assert F.cond(cc, *state) == appendix_b(cc, f), (F.CC_NAMES[cc], state, hex(f))


@settings(max_examples=300, deadline=None)
@given(a=operand, b=operand, sz=st.sampled_from(SIZES))
def test_cond_after_cmp_is_integer_comparison(a, b, sz):
    bits, m = 8 * sz, (1 << 8 * sz) - 1
    a, b = a & m, b & m
    st_ = alu.sub(a, b, sz)[1:]
    sa, sb = signed(a, bits), signed(b, bits)
    assert F.cond(F.CC_B, *st_) == (a < b)
    assert F.cond(F.CC_NBE, *st_) == (a > b)
    assert F.cond(F.CC_Z, *st_) == (a == b)
    assert F.cond(F.CC_L, *st_) == (sa < sb)
    assert F.cond(F.CC_LE, *st_) == (sa <= sb)
    assert F.cond(F.CC_NL, *st_) == (sa >= sb)


def test_encoding():
    ops = {F.cc_op_of(k, s) for k in range(F.N_KINDS) for s in SIZES}
    assert len(ops) == 3 * F.N_KINDS and max(ops) < F.CC_OP_MAX
    for k in range(F.N_KINDS):
        for s in SIZES:
            op = F.cc_op_of(k, s)
            assert F.cc_kind(op) == k and F.cc_size_bits(op) == 8 * s
    assert F.CC_OP_SUBL == F.cc_op_of(F.K_SUB, 4) == F.CC_OP_CMPL == F.CC_OP_NEGL
    assert F.CC_OP_SHRW == F.CC_OP_SARW and F.CC_OP_LOGICB == F.cc_op_of(F.K_LOGIC, 1)
    assert F.CC_OP_ZFL == F.cc_op_of(F.K_ZF, 4) and F.CC_OP_EFLAGS == 0
    assert F.STATUS_MASK == 0x8D5
    assert F.read_eflags(*F.eflags_to_lazy(0x8D5), 0x600) == 0x8D5 | 0x600 | 2
    assert (F.IOPL_MASK, F.ID, F.VM, F.DF) == (0x3000, 1 << 21, 1 << 17, 1 << 10)


def test_bt_offsets():
    assert alu.bt_reg_offset(35, 4) == 3 and alu.bt_reg_offset(17, 2) == 1
    assert alu.bt_mem_offset(35, 4) == (4, 3)
    assert alu.bt_mem_offset(0xFFFFFFFF, 4) == (-4, 31)
    assert alu.bt_mem_offset(0xFFF0, 2) == (-2, 0)
    assert alu.bt_mem_offset(0x7FFF, 2) == (0xFFE, 15)


@numba.njit
def _engine_like(n, a, b):
    """A toy loop shaped like the engine's: ALU ops feeding lazy flags, conditions reading them."""
    op, d, s, s2 = 0, 0, 0, 0
    taken = 0
    for _ in range(n):
        a, op, d, s, s2 = alu.add(a, b, 4)
        if F.cond(F.CC_B, op, d, s, s2):
            taken += 1
        cf = F.compute_cf(op, d, s, s2)
        a, op, d, s, s2 = alu.adc(a, 7, 4, cf)
        a, op, d, s, s2 = alu.shl(a, b, 4, op, d, s, s2)
        if F.cond(F.CC_LE, op, d, s, s2):
            taken += 1
    return a + taken


def test_usable_from_njit_without_refcounts():
    assert _engine_like(1000, 1, 0x9E3779B9) == _engine_like.py_func(1000, 1, 0x9E3779B9)
    ir = "".join(_engine_like.inspect_llvm().values())
    assert "NRT_incref" not in ir and "NRT_decref" not in ir
