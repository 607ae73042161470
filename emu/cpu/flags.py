"""Lazy EFLAGS, in the manner of QEMU's cc_op / cc_src / cc_dst.

A flag-setting instruction does not compute EFLAGS.  It records four int64 scalars:

``cc_op``
    which operation and operand size produced the flags (see the encoding below);
``cc_dst``
    the result of the operation, zero-extended to 64 bits and masked to the operand size;
``cc_src``
    the second operand, or another value the kind needs (see the table);
``cc_src2``
    a third value: the carry-in of ADC/SBB, the CF preserved by INC/DEC.

A flag is computed only when something reads it (Jcc, SETcc, CMOVcc, ADC, PUSHF, ...).  All
functions here take and return scalars only, so they can be called from the engine's njit loop
without touching numpy arrays.

Every function here is an ordinary njit function: no engine function is ``inline='always'``.
Numba's IR-level inlining copies the callee's IR into every call site, and across the engine that
was 15,888 copies and about half of the cold compile (185 s with it, 74 s without; numbaload.py).
In a toy loop (SUB + cond + ADD + compute_cf + compute_flags per iteration) inlining ``cond`` and
``compute_cf`` saved 2 ns (6.4 -> 4.3 ns); the hot guest code runs in tier 1, which generates these
in LLVM IR itself, and the interpreter measured 101 against 111 MIPS (bench_engine --tier 0).

Encoding
--------
``cc_op = kind * 4 + size_index`` with ``size_index`` 0, 1, 2 for 8-, 16-, 32-bit operands
(``cc_op_of(kind, size_bytes)`` builds it; 3 is unused).  ``cc_op >> 2`` is the kind and
``cc_op & 3`` the size index.  ``CC_OP_EFLAGS`` is 0 (kind 0, size ignored).

======== =============================== ======================== ==========================
kind     used by                         cc_src                   cc_src2
======== =============================== ======================== ==========================
EFLAGS   POPF, SAHF, rotates, BCD, BT,   the flags themselves     --
         anything computed eagerly
ADD      ADD, XADD                       second operand           --
ADC      ADC                             second operand           carry-in (0/1)
SUB      SUB, CMP, NEG (as 0 - x),       second operand           --
         CMPXCHG, SCAS, CMPS
SBB      SBB                             second operand           borrow-in (0/1)
LOGIC    AND, OR, XOR, TEST, AAM, AAD    --                       --
INC      INC (operand is 1)              --                       old CF (0/1)
DEC      DEC (operand is 1)              --                       old CF (0/1)
SHL      SHL/SAL, SHLD                   value shifted by count-1 --
SAR      SHR, SAR, SHRD (``SHR`` alias)  value shifted by count-1 --
MUL      MUL                             high half of the product --
IMUL     IMUL (all forms)                nonzero iff the signed   --
                                         result overflowed
ZF       BSF, BSR, and any op that sets  previous EFLAGS (all     --
         only ZF (LAR, LSL, VERR, ...)   but ZF are kept)
======== =============================== ======================== ==========================

For the ADD-like kinds the first operand is recovered from the result (``dst - src`` for ADD,
``dst + src`` for SUB), which is how the carry, auxiliary carry and overflow are derived.

Undefined flags: choices made
-----------------------------
Where the SDM leaves a flag undefined, this module does what QEMU (and so unicorn) does, so that
differential tests can compare against unicorn; those choices are listed here.

* Logic ops (AND/OR/XOR/TEST): AF = 0 (SDM: undefined).  CF = OF = 0 as defined.
* SHL/SHR/SAR/SHLD/SHRD: AF = 0 (undefined).  OF is defined only for a count of 1; for any
  nonzero count we apply the count-1 formula to the last single-bit step: SHL/SHLD
  OF = MSB(result) XOR CF, SHR/SHRD OF = MSB(value before the last step) XOR MSB(result), which
  is 0 for SHR with count > 1 and always 0 for SAR.  CF for SHL/SHR counts >= the operand width
  (8- and 16-bit operands; undefined in the SDM) is the last bit shifted out of the operand
  extended with zeros (sign bits for SAR), i.e. 0 for SHL/SHR and the sign for SAR.
* ROL/ROR/RCL/RCR: OF for counts > 1 uses the count-1 formula on the final result
  (ROL: MSB(res) XOR CF; ROR: MSB(res) XOR bit below MSB; RCL/RCR: MSB(res) XOR MSB(original)).
  SF/ZF/AF/PF are preserved (defined).  A masked count of 0 changes no flags; RCL/RCR of 8/16-bit
  operands whose count is a nonzero multiple of 9/17 also leave every flag unchanged.
* SHLD/SHRD of 16-bit operands with a count of 17..31 (result and flags undefined): the Intel
  behaviour QEMU implements: the 48-bit value dest:src:dest is shifted (left for SHLD, keeping
  its top 16 bits; right for SHRD, keeping its low 16 bits) and CF is the last bit shifted out.
* MUL/IMUL: SF, ZF, PF from the low half of the result, AF = 0 (all undefined in the SDM).
* DIV/IDIV: all six flags undefined; the lazy flag state is left unchanged.
* BSF/BSR: CF, OF, SF, AF, PF undefined: they keep their previous values (kind ZF).  When the
  source is 0 the destination is unchanged (what P6 and later and unicorn do; SDM: undefined).
* BT/BTS/BTR/BTC: OF, SF, AF, PF undefined: they keep their previous values; ZF kept (defined).
* AAM/AAD: OF, AF, CF undefined: set to 0 (LOGIC kind on AL).
* DAA/DAS: OF undefined: set to 0.
* AAA/AAS: OF, SF, ZF, PF undefined: kept from before.
"""

from numba import njit

# ---------------------------------------------------------------- EFLAGS bits
CF = 1 << 0
FIXED1 = 1 << 1  # reserved bit 1, always reads as 1
PF = 1 << 2
AF = 1 << 4
ZF = 1 << 6
SF = 1 << 7
TF = 1 << 8
IF = 1 << 9
DF = 1 << 10
OF = 1 << 11
IOPL_SHIFT = 12
IOPL_MASK = 3 << 12
NT = 1 << 14
RF = 1 << 16
VM = 1 << 17
AC = 1 << 18
VIF = 1 << 19
VIP = 1 << 20
ID = 1 << 21

#: the six arithmetic status flags
STATUS_MASK = CF | PF | AF | ZF | SF | OF

# ---------------------------------------------------------------- CC_OP kinds
K_EFLAGS = 0
K_ADD = 1
K_ADC = 2
K_SUB = 3
K_SBB = 4
K_LOGIC = 5
K_INC = 6
K_DEC = 7
K_SHL = 8
K_SAR = 9
K_SHR = K_SAR  # SHR and SAR share one kind: CF is bit 0 of the value shifted by count - 1
K_MUL = 10
K_IMUL = 11
K_ZF = 12
N_KINDS = 13

KIND_NAMES = ("EFLAGS", "ADD", "ADC", "SUB", "SBB", "LOGIC", "INC", "DEC", "SHL", "SAR", "MUL",
              "IMUL", "ZF")

CC_OP_EFLAGS = 0


# Per-size constants, B/W/L = 8/16/32-bit operands (kind * 4 + size index).
CC_OP_ADDB, CC_OP_ADDW, CC_OP_ADDL = 4, 5, 6
CC_OP_ADCB, CC_OP_ADCW, CC_OP_ADCL = 8, 9, 10
CC_OP_SUBB, CC_OP_SUBW, CC_OP_SUBL = 12, 13, 14
CC_OP_SBBB, CC_OP_SBBW, CC_OP_SBBL = 16, 17, 18
CC_OP_LOGICB, CC_OP_LOGICW, CC_OP_LOGICL = 20, 21, 22
CC_OP_INCB, CC_OP_INCW, CC_OP_INCL = 24, 25, 26
CC_OP_DECB, CC_OP_DECW, CC_OP_DECL = 28, 29, 30
CC_OP_SHLB, CC_OP_SHLW, CC_OP_SHLL = 32, 33, 34
CC_OP_SARB, CC_OP_SARW, CC_OP_SARL = 36, 37, 38
CC_OP_MULB, CC_OP_MULW, CC_OP_MULL = 40, 41, 42
CC_OP_IMULB, CC_OP_IMULW, CC_OP_IMULL = 44, 45, 46
CC_OP_ZFB, CC_OP_ZFW, CC_OP_ZFL = 48, 49, 50
CC_OP_SHRB, CC_OP_SHRW, CC_OP_SHRL = K_SHR * 4, K_SHR * 4 + 1, K_SHR * 4 + 2
CC_OP_NEGB, CC_OP_NEGW, CC_OP_NEGL = K_SUB * 4, K_SUB * 4 + 1, K_SUB * 4 + 2  # NEG x == SUB 0, x
CC_OP_CMPB, CC_OP_CMPW, CC_OP_CMPL = K_SUB * 4, K_SUB * 4 + 1, K_SUB * 4 + 2
CC_OP_MAX = N_KINDS * 4


@njit(cache=True)
def cc_op_of(kind, size_bytes):
    """The cc_op of a flag-setting kind at an operand size of 1, 2 or 4 bytes."""
    return kind * 4 + (size_bytes >> 1)


@njit(cache=True)
def cc_kind(cc_op):
    return cc_op >> 2


@njit(cache=True)
def cc_size_bits(cc_op):
    return 8 << (cc_op & 3)


# ---------------------------------------------------------------- condition codes
# The low nibble of Jcc/SETcc/CMOVcc; odd codes are the negation of the even code below them.
CC_O, CC_NO, CC_B, CC_NB, CC_Z, CC_NZ, CC_BE, CC_NBE = 0, 1, 2, 3, 4, 5, 6, 7
CC_S, CC_NS, CC_P, CC_NP, CC_L, CC_NL, CC_LE, CC_NLE = 8, 9, 10, 11, 12, 13, 14, 15
CC_NAMES = ("O", "NO", "B", "NB", "Z", "NZ", "BE", "NBE", "S", "NS", "P", "NP", "L", "NL", "LE", "NLE")


# ---------------------------------------------------------------- flag computation
@njit(cache=True)
def parity_flag(x):
    """PF (bit 2) for a result: set when its low byte has an even number of ones."""
    n = (x ^ (x >> 4)) & 0xF
    return ((0x9669 >> n) & 1) << 2


@njit(cache=True)
def _szp(dst, sign):
    r = parity_flag(dst & 0xFF)
    if dst == 0:
        r |= ZF
    if dst & sign:
        r |= SF
    return r


@njit(cache=True)
def compute_flags(cc_op, dst, src, src2):
    """The six status flags (CF PF AF ZF SF OF, at their EFLAGS positions) of a lazy state."""
    kind = cc_op >> 2
    if kind == K_EFLAGS:
        return src & STATUS_MASK
    bits = 8 << (cc_op & 3)
    mask = (1 << bits) - 1
    sign = 1 << (bits - 1)
    if kind == K_LOGIC:
        return _szp(dst, sign)
    if kind == K_SUB or kind == K_SBB or kind == K_DEC:
        if kind == K_SUB:
            s1 = (dst + src) & mask
            cf = 1 if s1 < src else 0
        elif kind == K_SBB:
            s1 = (dst + src + src2) & mask
            if src2:
                cf = 1 if s1 <= src else 0
            else:
                cf = 1 if s1 < src else 0
        else:
            src = 1
            s1 = (dst + 1) & mask
            cf = src2 & 1
        r = cf | _szp(dst, sign) | ((dst ^ src ^ s1) & AF)
        if (s1 ^ src) & (s1 ^ dst) & sign:
            r |= OF
        return r
    if kind == K_ADD or kind == K_ADC or kind == K_INC:
        if kind == K_ADD:
            s1 = (dst - src) & mask
            cf = 1 if dst < s1 else 0
        elif kind == K_ADC:
            s1 = (dst - src - src2) & mask
            if src2:
                cf = 1 if dst <= s1 else 0
            else:
                cf = 1 if dst < s1 else 0
        else:
            src = 1
            s1 = (dst - 1) & mask
            cf = src2 & 1
        r = cf | _szp(dst, sign) | ((dst ^ src ^ s1) & AF)
        if (s1 ^ dst) & (src ^ dst) & sign:
            r |= OF
        return r
    if kind == K_SHL or kind == K_SAR:
        r = _szp(dst, sign)
        if kind == K_SHL:
            if src & sign:
                r |= CF
        else:
            r |= src & 1
        if (src ^ dst) & sign:
            r |= OF
        return r
    if kind == K_MUL or kind == K_IMUL:
        r = _szp(dst, sign)
        if src != 0:
            r |= CF | OF
        return r
    # K_ZF
    r = src & (STATUS_MASK & ~ZF)
    if dst == 0:
        r |= ZF
    return r


@njit(cache=True)
def compute_cf(cc_op, dst, src, src2):
    """CF (0 or 1) of a lazy state, without computing the other flags."""
    kind = cc_op >> 2
    if kind == K_SUB:
        mask = (1 << (8 << (cc_op & 3))) - 1
        return 1 if ((dst + src) & mask) < src else 0
    if kind == K_LOGIC:
        return 0
    if kind == K_ADD:
        mask = (1 << (8 << (cc_op & 3))) - 1
        return 1 if dst < ((dst - src) & mask) else 0
    if kind == K_INC or kind == K_DEC:
        return src2 & 1
    if kind == K_EFLAGS or kind == K_ZF:
        return src & 1
    if kind == K_ADC:
        mask = (1 << (8 << (cc_op & 3))) - 1
        s1 = (dst - src - src2) & mask
        if src2:
            return 1 if dst <= s1 else 0
        return 1 if dst < s1 else 0
    if kind == K_SBB:
        mask = (1 << (8 << (cc_op & 3))) - 1
        s1 = (dst + src + src2) & mask
        if src2:
            return 1 if s1 <= src else 0
        return 1 if s1 < src else 0
    if kind == K_SHL:
        return (src >> ((8 << (cc_op & 3)) - 1)) & 1
    if kind == K_SAR:
        return src & 1
    # MUL / IMUL
    return 1 if src != 0 else 0


@njit(cache=True)
def flags_cond(cc, f):
    """Evaluate condition code ``cc`` (0..15) on explicit status flags ``f`` (SDM Vol 1 App. B)."""
    c = cc >> 1
    if c == 0:
        r = (f & OF) != 0
    elif c == 1:
        r = (f & CF) != 0
    elif c == 2:
        r = (f & ZF) != 0
    elif c == 3:
        r = (f & (CF | ZF)) != 0
    elif c == 4:
        r = (f & SF) != 0
    elif c == 5:
        r = (f & PF) != 0
    elif c == 6:
        r = ((f & SF) != 0) != ((f & OF) != 0)
    else:
        r = ((f & ZF) != 0) or (((f & SF) != 0) != ((f & OF) != 0))
    return r != ((cc & 1) != 0)


@njit(cache=True)
def cond(cc, cc_op, dst, src, src2):
    """Whether condition code ``cc`` (0..15, the low nibble of Jcc) holds for a lazy state.

    After SUB/CMP the unsigned and signed comparisons come straight from the operands; after
    LOGIC ops and for Z/S after any arithmetic kind no flag word is built.
    """
    kind = cc_op >> 2
    c = cc >> 1
    neg = (cc & 1) != 0
    if kind == K_SUB:
        bits = 8 << (cc_op & 3)
        mask = (1 << bits) - 1
        sign = 1 << (bits - 1)
        s1 = (dst + src) & mask
        if c == 1:
            return (s1 < src) != neg
        if c == 2:
            return (dst == 0) != neg
        if c == 3:
            return (s1 <= src) != neg
        if c == 4:
            return ((dst & sign) != 0) != neg
        if c == 6:
            return (((s1 ^ sign) - sign) < ((src ^ sign) - sign)) != neg
        if c == 7:
            return (((s1 ^ sign) - sign) <= ((src ^ sign) - sign)) != neg
    elif kind == K_LOGIC:
        sign = 1 << ((8 << (cc_op & 3)) - 1)
        if c == 2 or c == 3:
            return (dst == 0) != neg
        if c == 4 or c == 6:
            return ((dst & sign) != 0) != neg
        if c == 7:
            return (dst == 0 or (dst & sign) != 0) != neg
        if c == 0 or c == 1:
            return neg
    elif kind != K_EFLAGS and kind != K_ZF:
        if c == 2:
            return (dst == 0) != neg
        if c == 4:
            sign = 1 << ((8 << (cc_op & 3)) - 1)
            return ((dst & sign) != 0) != neg
        if c == 1:
            return (compute_cf(cc_op, dst, src, src2) != 0) != neg
    return flags_cond(cc, compute_flags(cc_op, dst, src, src2))


@njit(cache=True)
def eflags_to_lazy(eflags):
    """The lazy fields (cc_op, cc_dst, cc_src, cc_src2) that represent explicit flags."""
    return CC_OP_EFLAGS, 0, eflags & STATUS_MASK, 0


@njit(cache=True)
def read_eflags(cc_op, dst, src, src2, other):
    """The full EFLAGS value: the status flags of the lazy state merged into ``other`` (the
    non-status bits the engine keeps: DF, IF, TF, IOPL, ...); bit 1 is forced on."""
    return (other & ~STATUS_MASK) | compute_flags(cc_op, dst, src, src2) | FIXED1
