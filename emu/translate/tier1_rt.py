"""Tier-1 runtime: the interpreter's own semantic functions as C-callable entry points.

Compiled blocks (emu/translate/tier1.py) inline the common operations as LLVM IR. Everything else
they need calls the very functions the interpreter runs (emu/cpu/flags.py, emu/cpu/alu.py),
exported here as numba `cfunc`s whose addresses the generated IR calls directly. So both tiers
share one definition of every flag rule and every rare operation: a condition after an unknown
flag-setter, the carry-in of ADC/SBB, the rotate group.

All arguments are int64 scalars; a function that returns several values writes them through a
raw address (`ccp`: the four lazy-flag words CC_OP, CC_DST, CC_SRC, CC_SRC2, in and out).
"""

from __future__ import annotations

from numba import cfunc, types

from emu.cpu import alu as A
from emu.cpu import flags as F
from emu.cpu.scalar_dispatch import scalar_op
from emu.rawptr import load_i64, store_i64
from emu.translate.tier1_abi import SCALAR_FLAGS_SHIFT

_I = types.int64


@cfunc(_I(_I, _I, _I, _I, _I), cache=True)
def rt_cond(cc, cc_op, dst, src, src2):
    """Condition code `cc` (0..15) of a lazy flag state: 1 or 0."""
    return 1 if F.cond(cc, cc_op, dst, src, src2) else 0


@cfunc(_I(_I, _I, _I, _I), cache=True)
def rt_cf(cc_op, dst, src, src2):
    """CF (0/1) of a lazy flag state (the carry-in of ADC/SBB, the CF that INC/DEC keep)."""
    return F.compute_cf(cc_op, dst, src, src2)


@cfunc(_I(_I, _I, _I, _I), cache=True)
def rt_flags(cc_op, dst, src, src2):
    """The six status flags of a lazy flag state, at their EFLAGS positions."""
    return F.compute_flags(cc_op, dst, src, src2)


@cfunc(_I(_I, _I, _I, _I, _I), cache=True)
def rt_shift(op, val, count, size, ccp):
    """The shift/rotate group (`op` = ModRM.reg) with the flags in and out through `ccp`."""
    r, o, d, s, s2 = A.shift(op, val, count, size, load_i64(ccp), load_i64(ccp + 8), load_i64(ccp + 16),
                             load_i64(ccp + 24))
    store_i64(ccp, o)
    store_i64(ccp + 8, d)
    store_i64(ccp + 16, s)
    store_i64(ccp + 24, s2)
    return r


@cfunc(_I(_I, _I, _I, _I), cache=True)
def rt_scalar(aux, dst, src, size):
    """Semantic function number `aux` (emu/cpu/semantics.py, the H_SCALAR family):
    result | flags << SCALAR_FLAGS_SHIFT."""
    r, f = scalar_op(aux, dst, src, size)
    return (r & 0xFFFF_FFFF) | ((f & F.STATUS_MASK) << SCALAR_FLAGS_SHIFT)


ARITY = {"rt_cond": 5, "rt_cf": 4, "rt_flags": 4, "rt_shift": 5, "rt_scalar": 4}
# no side effects: LLVM may drop a call whose result is unused
PURE = ("rt_cond", "rt_cf", "rt_flags", "rt_scalar")


def addresses() -> dict[str, int]:
    """The entry points by name, for the code generator."""
    return {"rt_cond": rt_cond.address, "rt_cf": rt_cf.address, "rt_flags": rt_flags.address,
            "rt_shift": rt_shift.address, "rt_scalar": rt_scalar.address}
