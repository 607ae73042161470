"""Reading and writing the whole EFLAGS register from compiled code (SDM Vol 1, 3.4.3).

The status flags are lazy (emu/cpu/flags.py); `get_eflags` materialises them and `set_eflags`
turns an explicit value back into the lazy form (CC_OP_EFLAGS). `popf_mask` gives the bits that
POPF/IRET may change at the current privilege (SDM Vol 2, POPF, Table 4-? "Effect of POPF").
"""

from __future__ import annotations

from numba import njit

from emu.cpu import flags as F
from emu.cpu import state as S
from emu.cpu.access import sget, sset

# Bits a program can ever change through POPF/IRET/SAHF-like writes on this CPU (no VME/PVI yet).
WRITABLE = (F.CF | F.PF | F.AF | F.ZF | F.SF | F.TF | F.IF | F.DF | F.OF | F.IOPL_MASK | F.NT
            | F.RF | F.AC | F.ID)
RESERVED_ONES = F.FIXED1


@njit(cache=True)
def get_eflags(sp):
    return F.read_eflags(sget(sp, S.CC_OP), sget(sp, S.CC_DST), sget(sp, S.CC_SRC), sget(sp, S.CC_SRC2),
                         sget(sp, S.EFLAGS))


@njit(cache=True)
def get_cf(sp):
    return F.compute_cf(sget(sp, S.CC_OP), sget(sp, S.CC_DST), sget(sp, S.CC_SRC), sget(sp, S.CC_SRC2))


@njit(cache=True)
def set_eflags(sp, value):
    """Write EFLAGS outright (the caller has applied any privilege mask)."""
    sset(sp, S.EFLAGS, (value & 0xFFFF_FFFF & ~0x8028) | RESERVED_ONES)  # bits 3, 5, 15 read as 0
    sset(sp, S.CC_OP, F.CC_OP_EFLAGS)
    sset(sp, S.CC_SRC, value & F.STATUS_MASK)
    sset(sp, S.CC_DST, 0)
    sset(sp, S.CC_SRC2, 0)


@njit(cache=True)
def set_status(sp, status):
    """Replace only the six status flags."""
    sset(sp, S.CC_OP, F.CC_OP_EFLAGS)
    sset(sp, S.CC_SRC, status & F.STATUS_MASK)
    sset(sp, S.CC_DST, 0)
    sset(sp, S.CC_SRC2, 0)


@njit(cache=True)
def popf_mask(sp, size):
    """The EFLAGS bits POPF (operand size `size`) may change at the current privilege level."""
    mask = WRITABLE
    eflags = sget(sp, S.EFLAGS)
    if sget(sp, S.CR0) & 1:
        cpl = sget(sp, S.CPL)
        iopl = (eflags & F.IOPL_MASK) >> F.IOPL_SHIFT
        if eflags & F.VM:
            mask &= ~F.IOPL_MASK  # V86 with IOPL 3 (the caller raised #GP otherwise)
        elif cpl > 0:
            mask &= ~F.IOPL_MASK
            if cpl > iopl:
                mask &= ~F.IF
    mask &= ~F.RF  # POPF clears RF; VM, VIF and VIP are never changed by POPF
    if size == 2:
        mask &= 0xFFFF
    return mask
