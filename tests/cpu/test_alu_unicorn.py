"""Differential tests: emu.cpu.alu + emu.cpu.flags against the real instructions run in unicorn.

Each example runs one instruction with random operands and random incoming status flags, then
compares the destination registers and the flags the SDM defines for that instruction.  Where our
documented choice for an undefined flag is QEMU's, the whole flag word is compared too
(``QEMU_SAME`` cases), so a drift from unicorn shows up.
"""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emu.cpu import alu
from emu.cpu import flags as F
from emu.cpu import semantics as SEM
from tests.cpu.unicorn_oracle import run_unicorn

ALL = F.STATUS_MASK
N = 80  # examples per test (about 30 s for the file on 2 busy cores)
SET = settings(max_examples=N, deadline=None, suppress_health_check=[HealthCheck.too_slow])

u32 = st.integers(0, 0xFFFFFFFF)
# operands biased towards the edges where carries, overflows and signs change
edge = st.sampled_from([0, 1, 2, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x7FFFFFFF, 0x80000000,
                        0xFFFFFFFF, 0x0F, 0x10, 0x99, 0x9A])
operand = st.one_of(u32, edge, st.integers(0, 0x1FF))
status = st.integers(0, 0xFFF).map(lambda x: x & ALL)
SIZES = [1, 2, 4]


def mask(sz):
    return (1 << (8 * sz)) - 1


def prefix(sz, bits=32):
    return b"\x66" if sz != 1 and (sz == 2) != (bits == 16) else b""


def lazy_flags(cc):
    """Status flags of the lazy fields at the end of an alu result tuple."""
    return F.compute_flags(*cc[-4:])


def merge(full, value, sz):
    return (full & ~mask(sz)) | value


def check_flags(got, want, defined, label=""):
    assert got & defined == want & defined, (
        f"{label}: flags {got:#05x} vs unicorn {want & ALL:#05x} (compared {defined:#05x}, "
        f"differing {(got ^ want) & defined:#05x})")


# ---------------------------------------------------------------- the ALU group
@pytest.mark.parametrize("sz", SIZES)
@pytest.mark.parametrize("op", range(8))
@SET
@given(a=operand, b=operand, fl=status)
def test_alu_group(op, sz, a, b, fl):
    code = prefix(sz) + bytes([op * 8 + (0 if sz == 1 else 1), 0xD8])  # op al/ax/eax, bl/bx/ebx
    r = run_unicorn(code, 32, {"eax": a, "ebx": b}, fl)
    res = alu.alu(op, a & mask(sz), b & mask(sz), sz, fl & 1)
    assert r.regs["eax"] == merge(a, res[0], sz)
    logic = op in (alu.ALU_OR, alu.ALU_AND, alu.ALU_XOR)
    defined = ALL & ~F.AF if logic else ALL
    check_flags(lazy_flags(res), r.eflags, defined, f"op{op}/{sz}")
    check_flags(lazy_flags(res), r.eflags, ALL, "QEMU_SAME")
    assert F.compute_cf(*res[-4:]) == r.eflags & 1


@pytest.mark.parametrize("sz", SIZES)
@pytest.mark.parametrize("which", ["inc", "dec", "neg", "not"])
@SET
@given(a=operand, fl=status)
def test_unary(which, sz, a, fl):
    reg = {"inc": 0, "dec": 1, "not": 2, "neg": 3}[which]
    if which in ("inc", "dec"):
        code = prefix(sz) + bytes([0xFE if sz == 1 else 0xFF, 0xC0 | reg << 3])
    else:
        code = prefix(sz) + bytes([0xF6 if sz == 1 else 0xF7, 0xC0 | reg << 3])
    r = run_unicorn(code, 32, {"eax": a}, fl)
    v = a & mask(sz)
    if which == "not":
        assert r.regs["eax"] == merge(a, alu.not_(v, sz), sz)
        assert r.eflags & ALL == fl
        return
    fn = {"inc": alu.inc, "dec": alu.dec}.get(which)
    res = fn(v, sz, fl & 1) if fn else alu.neg(v, sz)
    assert r.regs["eax"] == merge(a, res[0], sz)
    check_flags(lazy_flags(res), r.eflags, ALL, which)


# ---------------------------------------------------------------- shifts and rotates
count_st = st.one_of(st.integers(0, 33), st.integers(0, 255))


def shift_defined(op, count, sz):
    """Status flags the SDM defines after a shift-group instruction with this count."""
    c = count & 31
    if c == 0:
        return ALL  # unchanged
    if op in (alu.SH_ROL, alu.SH_ROR, alu.SH_RCL, alu.SH_RCR):
        d = ALL & ~F.OF  # CF set, SF ZF AF PF unchanged
        if op in (alu.SH_RCL, alu.SH_RCR) and c % (sz * 8 + 1) == 0 and sz != 4:
            d = ALL
    else:
        d = F.CF | F.SF | F.ZF | F.PF
        if c >= sz * 8 and op != alu.SH_SAR:
            d &= ~F.CF
    if c == 1:
        d |= F.OF
    return d


@pytest.mark.parametrize("sz", SIZES)
@pytest.mark.parametrize("op", range(8))
@SET
@given(a=operand, count=count_st, fl=status, lazy_in=st.booleans())
def test_shift_group(op, sz, a, count, fl, lazy_in):
    code = prefix(sz) + bytes([0xD2 if sz == 1 else 0xD3, 0xC0 | op << 3])  # op eax, cl
    r = run_unicorn(code, 32, {"eax": a, "ecx": count}, fl)
    if lazy_in:  # the incoming flags as a lazy state of another kind: after SUB (fl is ignored)
        res0 = alu.sub(a & 0xFF, count & 0xFF, 1)
        cc = res0[1:]
        r = run_unicorn(bytes([0x38, 0xC8]) + code, 32, {"eax": a, "ecx": count}, fl, count=2)
    else:
        cc = F.eflags_to_lazy(fl)
    res = alu.shift(op, a & mask(sz), count, sz, *cc)
    assert r.regs["eax"] == merge(a, res[0], sz), f"{alu.SH_ROL}{op}"
    got = lazy_flags(res)
    check_flags(got, r.eflags, shift_defined(op, count, sz), f"shift{op}/{sz} count {count}")
    check_flags(got, r.eflags, ALL & ~F.AF if count & 31 else ALL, "QEMU_SAME")
    if count & 31 == 0:
        assert res[-4:] == tuple(cc)


@pytest.mark.parametrize("sz", SIZES)
@pytest.mark.parametrize("op", [alu.SH_ROL, alu.SH_SHL, alu.SH_SAR, alu.SH_RCR])
@settings(max_examples=40, deadline=None)
@given(a=operand, fl=status)
def test_shift_by_one_forms(op, sz, a, fl):
    """D0/D1 (count 1) and C0/C1 ib encode the same operation as the CL form."""
    code = prefix(sz) + bytes([0xD0 if sz == 1 else 0xD1, 0xC0 | op << 3])
    r = run_unicorn(code, 32, {"eax": a}, fl)
    res = alu.shift(op, a & mask(sz), 1, sz, *F.eflags_to_lazy(fl))
    assert r.regs["eax"] == merge(a, res[0], sz)
    check_flags(lazy_flags(res), r.eflags, ALL & ~F.AF, "by one")


@pytest.mark.parametrize("sz", [2, 4])
@pytest.mark.parametrize("right", [False, True])
@SET
@given(a=operand, b=operand, count=count_st, fl=status)
def test_shld_shrd(right, sz, a, b, count, fl):
    code = prefix(sz) + bytes([0x0F, 0xAD if right else 0xA5, 0xD8])  # sh?d eax, ebx, cl
    r = run_unicorn(code, 32, {"eax": a, "ebx": b, "ecx": count}, fl)
    fn = alu.shrd if right else alu.shld
    res = fn(a & mask(sz), b & mask(sz), count, sz, *F.eflags_to_lazy(fl))
    c = count & 31
    got = lazy_flags(res)
    if c == 0:
        assert r.regs["eax"] == a and r.eflags & ALL == fl and got == fl
        return
    # 16-bit counts > 16: result and flags undefined; we claim QEMU's (Intel) behaviour
    assert r.regs["eax"] == merge(a, res[0], sz)
    defined = 0 if sz == 2 and c > 16 else F.CF | F.SF | F.ZF | F.PF | (F.OF if c == 1 else 0)
    check_flags(got, r.eflags, defined, f"sh{'r' if right else 'l'}d/{sz} {c}")
    check_flags(got, r.eflags, ALL & ~F.AF, "QEMU_SAME")


# ---------------------------------------------------------------- multiply and divide
@pytest.mark.parametrize("sz", SIZES)
@pytest.mark.parametrize("signed", [False, True])
@SET
@given(a=operand, b=operand, fl=status)
def test_mul_one_operand(signed, sz, a, b, fl):
    code = prefix(sz) + bytes([0xF6 if sz == 1 else 0xF7, 0xEB if signed else 0xE3])
    r = run_unicorn(code, 32, {"eax": a, "ebx": b, "edx": 0x5A5A5A5A}, fl)
    res = (alu.imul if signed else alu.mul)(a & mask(sz), b & mask(sz), sz)
    lo, hi = res[0], res[1]
    if sz == 1:
        assert r.regs["eax"] == merge(a, hi << 8 | lo, 2)
    else:
        assert r.regs["eax"] == merge(a, lo, sz)
        assert r.regs["edx"] == merge(0x5A5A5A5A, hi, sz)
    check_flags(lazy_flags(res), r.eflags, F.CF | F.OF, "mul")
    check_flags(lazy_flags(res), r.eflags, ALL & ~F.AF, "QEMU_SAME")


@pytest.mark.parametrize("sz", [2, 4])
@pytest.mark.parametrize("form", ["0FAF", "69", "6B"])
@SET
@given(a=operand, b=operand, imm=operand, fl=status)
def test_imul_multi_operand(form, sz, a, b, imm, fl):
    if form == "0FAF":
        code = prefix(sz) + b"\x0f\xaf\xc3"  # imul eax, ebx
        other = b & mask(sz)
    elif form == "69":
        code = prefix(sz) + b"\x69\xc3" + (imm & mask(sz)).to_bytes(sz, "little")
        other = imm & mask(sz)
    else:
        code = prefix(sz) + b"\x6b\xc3" + bytes([imm & 0xFF])
        other = alu.sign_extend(imm & 0xFF, 8) & mask(sz)
    r = run_unicorn(code, 32, {"eax": a, "ebx": b}, fl)
    res = alu.imul_trunc(b & mask(sz) if form != "0FAF" else a & mask(sz), other, sz)
    assert r.regs["eax"] == merge(a, res[0], sz)
    check_flags(lazy_flags(res), r.eflags, F.CF | F.OF, "imul")


def dividend_and_divisor(sz, signed):
    m = mask(sz)
    small = st.integers(0, m).flatmap(
        lambda d: st.tuples(st.integers(0, max(d - 1, 0)), st.integers(0, m), st.just(d)))
    anything = st.tuples(st.integers(0, m), st.integers(0, m), st.integers(0, m))
    cases = [small, anything,
             st.tuples(st.sampled_from([0, m]), st.integers(0, m), st.sampled_from([0, 1, m, m >> 1]))]
    if signed:  # most-negative dividends and divisors: quotients at and beyond the limits
        sign = 1 << (8 * sz - 1)
        cases.append(st.tuples(st.sampled_from([m, m >> 1, 0, sign >> 1 | sign, sign - 1 >> 1]),
                               st.sampled_from([0, sign, m, sign - 1]),
                               st.sampled_from([m, sign, 1, 2, m - 1, sign + 1])))
        cases.append(st.tuples(st.sampled_from([m]), st.integers(0, m),
                               st.integers(0, m)))
    return st.one_of(*cases)


@pytest.mark.parametrize("sz", SIZES)
@pytest.mark.parametrize("signed", [False, True])
@settings(max_examples=N, deadline=None)
@given(data=st.data(), fl=status)
def test_div(signed, sz, data, fl):
    hi, lo, d = data.draw(dividend_and_divisor(sz, signed))
    code = prefix(sz) + bytes([0xF6 if sz == 1 else 0xF7, 0xFB if signed else 0xF3])
    if sz == 1:
        regs = {"eax": 0x12340000 | hi << 8 | lo, "ebx": 0x55667700 | d, "edx": 0x99}
    else:
        regs = {"eax": 0x12340000 * (sz == 2) | lo, "edx": 0x56780000 * (sz == 2) | hi, "ebx": d}
    r = run_unicorn(code, 32, regs, fl)
    q, rem, fault = (alu.idiv if signed else alu.div)(hi, lo, d, sz)
    assert fault == (1 if r.exception == 0 else 0), (hi, lo, d, r.exception)
    if fault:
        return
    assert r.exception is None
    if sz == 1:
        assert r.regs["eax"] == (regs["eax"] & ~0xFFFF) | rem << 8 | q
    else:
        assert r.regs["eax"] == merge(regs["eax"], q, sz)
        assert r.regs["edx"] == merge(regs["edx"], rem, sz)
    assert r.eflags & ALL == fl  # QEMU_SAME: flags unchanged (our choice: lazy state untouched)


# ---------------------------------------------------------------- BCD
byte = st.one_of(st.integers(0, 0xFF), st.sampled_from([0x99, 0x9A, 0x9F, 0xF9, 0xFA, 0x00, 0x06, 0x05]))


@pytest.mark.parametrize("which", ["daa", "das", "aaa", "aas"])
@SET
@given(al=byte, ah=byte, fl=status)
def test_bcd_adjust(which, al, ah, fl):
    code = {"daa": b"\x27", "das": b"\x2f", "aaa": b"\x37", "aas": b"\x3f"}[which]
    eax = 0xABCD0000 | ah << 8 | al
    r = run_unicorn(code, 32, {"eax": eax}, fl)
    if which in ("daa", "das"):
        res = getattr(alu, which)(al, fl)
        assert r.regs["eax"] == merge(eax, res[0], 1)
        defined = ALL & ~F.OF
    else:
        res = getattr(alu, which)(eax & 0xFFFF, fl)
        assert r.regs["eax"] == merge(eax, res[0], 2)
        defined = F.CF | F.AF
    check_flags(lazy_flags(res), r.eflags, defined, which)
    check_flags(lazy_flags(res), r.eflags, ALL, "QEMU_SAME")


@pytest.mark.parametrize("which", ["aam", "aad"])
@SET
@given(al=byte, ah=byte, base=st.one_of(st.integers(0, 255), st.sampled_from([0, 10, 16, 1])),
       fl=status)
def test_aam_aad(which, al, ah, base, fl):
    code = bytes([0xD4 if which == "aam" else 0xD5, base])
    eax = 0xABCD0000 | ah << 8 | al
    r = run_unicorn(code, 32, {"eax": eax}, fl)
    if which == "aam":
        res = alu.aam(al, base)
        assert res[-1] == (1 if r.exception == 0 else 0)
        if res[-1]:
            return
    else:
        res = alu.aad(eax & 0xFFFF, base)
    assert r.regs["eax"] == merge(eax, res[0], 2)
    cc = res[1:5]
    check_flags(F.compute_flags(*cc), r.eflags, F.SF | F.ZF | F.PF, which)


# ---------------------------------------------------------------- bit scan and bit test
@pytest.mark.parametrize("sz", [2, 4])
@pytest.mark.parametrize("reverse", [False, True])
@SET
@given(a=operand, b=st.one_of(operand, st.just(0), st.integers(0, 31).map(lambda i: 1 << i)),
       fl=status)
def test_bsf_bsr(reverse, sz, a, b, fl):
    code = prefix(sz) + bytes([0x0F, 0xBD if reverse else 0xBC, 0xC3])  # bs? eax, ebx
    r = run_unicorn(code, 32, {"eax": a, "ebx": b}, fl)
    value, flags = (SEM.bsr if reverse else SEM.bsf)(a & mask(sz), b & mask(sz), sz)
    assert r.regs["eax"] == merge(a, value, sz)
    assert (flags ^ r.eflags) & F.ZF == 0, "bsf/bsr: ZF"


@pytest.mark.parametrize("sz", [2, 4])
@pytest.mark.parametrize("op", range(4))
@SET
@given(a=operand, b=operand, imm=st.booleans(), fl=status)
def test_bt_register(op, sz, a, b, imm, fl):
    if imm:
        code = prefix(sz) + bytes([0x0F, 0xBA, 0xE0 | op << 3, b & 0xFF])  # bt* eax, imm8
        bit = alu.bt_reg_offset(b & 0xFF, sz)
    else:
        code = prefix(sz) + bytes([0x0F, 0xA3 | op << 3, 0xD8])  # bt* eax, ebx
        bit = alu.bt_reg_offset(b & mask(sz), sz)
    r = run_unicorn(code, 32, {"eax": a, "ebx": b}, fl)
    res = alu.bt(op, a & mask(sz), bit, sz, fl)
    assert r.regs["eax"] == merge(a, res[0], sz)
    check_flags(lazy_flags(res), r.eflags, F.CF | F.ZF, "bt")


BT_BASE = 0x8000


@pytest.mark.parametrize("sz", [2, 4])
@pytest.mark.parametrize("op", range(4))
@settings(max_examples=60, deadline=None)
@given(off=st.integers(-1000, 1000), data=st.binary(min_size=272, max_size=272), fl=status)
def test_bt_memory(op, sz, off, data, fl):
    """bt* [esi], ebx with a signed bit offset reaching 125 bytes either side of esi."""
    start = BT_BASE - 136
    code = prefix(sz) + bytes([0x0F, 0xA3 | op << 3, 0x1E])
    r = run_unicorn(code, 32, {"esi": BT_BASE, "ebx": off & mask(sz)}, fl, mem={start: data})
    disp, bit = alu.bt_mem_offset(off & mask(sz), sz)
    addr = BT_BASE + disp
    word = int.from_bytes(data[addr - start:addr - start + sz], "little")
    res = alu.bt(op, word, bit, sz, fl)
    assert r.read(addr, sz) == res[0].to_bytes(sz, "little")
    check_flags(lazy_flags(res), r.eflags, F.CF | F.ZF, "bt mem")


# ---------------------------------------------------------------- conditions end to end
@pytest.mark.parametrize("producer", ["alu", "inc", "shl", "sar", "imul"])
@settings(max_examples=2 * N, deadline=None)
@given(op=st.integers(0, 7), sz=st.sampled_from(SIZES), a=operand, b=operand, cc=st.integers(0, 15),
       fl=status)
def test_setcc_after(producer, op, sz, a, b, cc, fl):
    """`cond` on the lazy state after an op agrees with SETcc run after the same op."""
    m = mask(sz)
    if producer == "alu":
        first = prefix(sz) + bytes([op * 8 + (0 if sz == 1 else 1), 0xD8])
        res = alu.alu(op, a & m, b & m, sz, fl & 1)
    elif producer == "inc":
        first = prefix(sz) + bytes([0xFE if sz == 1 else 0xFF, 0xC0 | (op & 1) << 3])
        res = (alu.dec if op & 1 else alu.inc)(a & m, sz, fl & 1)
    elif producer == "imul":
        sz = max(sz, 2)
        first = prefix(sz) + b"\x0f\xaf\xc3"
        res = alu.imul_trunc(a & mask(sz), b & mask(sz), sz)
    else:
        b = 1 + (b & 7)
        sh = alu.SH_SHL if producer == "shl" else alu.SH_SAR
        first = prefix(sz) + bytes([0xD2 if sz == 1 else 0xD3, 0xC0 | sh << 3])
        res = alu.shift(sh, a & m, b, sz, *F.eflags_to_lazy(fl))
    setcc = bytes([0x0F, 0x90 | cc, 0xC1])  # setcc cl
    r = run_unicorn(first + setcc, 32, {"eax": a, "ebx": b, "ecx": b}, fl, count=2)
    undefined_of = producer in ("shl", "sar") and b != 1 and cc in (0, 1, 12, 13, 14, 15)
    undefined_af = False
    if not undefined_of and not undefined_af:
        assert F.cond(cc, *res[-4:]) == bool(r.regs["ecx"] & 0xFF), (F.CC_NAMES[cc], res)


# ---------------------------------------------------------------- 16-bit mode sample
@pytest.mark.parametrize("sz", [1, 2, 4])
@settings(max_examples=N, deadline=None)
@given(op=st.integers(0, 7), sh=st.integers(0, 7), a=operand, b=operand, count=count_st, fl=status)
def test_real_mode_sample(sz, op, sh, a, b, count, fl):
    """The same operations decoded in 16-bit mode (operand size from the 66 prefix reversed)."""
    m = mask(sz)
    code = prefix(sz, 16) + bytes([op * 8 + (0 if sz == 1 else 1), 0xD8])
    r = run_unicorn(code, 16, {"eax": a, "ebx": b}, fl)
    res = alu.alu(op, a & m, b & m, sz, fl & 1)
    assert r.regs["eax"] == merge(a, res[0], sz)
    defined = ALL & ~F.AF if op in (1, 4, 6) else ALL
    check_flags(lazy_flags(res), r.eflags, defined, "16-bit alu")
    code = prefix(sz, 16) + bytes([0xD2 if sz == 1 else 0xD3, 0xC0 | sh << 3])
    r = run_unicorn(code, 16, {"eax": a, "ecx": count}, fl)
    res = alu.shift(sh, a & m, count, sz, *F.eflags_to_lazy(fl))
    assert r.regs["eax"] == merge(a, res[0], sz)
    check_flags(lazy_flags(res), r.eflags, shift_defined(sh, count, sz), "16-bit shift")


# ---------------------------------------------------------------- exhaustive 8-bit (slow)
@pytest.mark.slow
@pytest.mark.parametrize("op", range(8))
def test_alu_group_exhaustive_8bit(op):
    code = bytes([op * 8, 0xD8])
    for cf in (0, 1):
        for a in range(256):
            for b in range(256):
                r = run_unicorn(code, 32, {"eax": a, "ebx": b}, cf)
                res = alu.alu(op, a, b, 1, cf)
                assert r.regs["eax"] == res[0]
                assert lazy_flags(res) == r.eflags & ALL, (op, a, b, cf)


@pytest.mark.slow
@pytest.mark.parametrize("op", range(8))
def test_shift_group_exhaustive_8bit(op):
    code = bytes([0xD2, 0xC0 | op << 3])
    for fl in (0, ALL):
        for a in range(256):
            for count in range(33):
                r = run_unicorn(code, 32, {"eax": a, "ecx": count}, fl)
                res = alu.shift(op, a, count, 1, *F.eflags_to_lazy(fl))
                assert r.regs["eax"] == res[0]
                check_flags(lazy_flags(res), r.eflags, ALL & ~F.AF if count & 31 else ALL,
                            f"shift{op} {a:#x} by {count}")
