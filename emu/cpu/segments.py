"""Segment registers, descriptors and the mode bits derived from them (SDM Vol 3, chapters 3 and 5).

Segment caches hold selector, base, limit and attributes (descriptor bytes 5-6 plus the SEGF_*
summary bits of emu/cpu/access.py). Loading a segment register:
- in real mode and virtual-8086 mode: base = selector * 16, limit and attributes kept as loaded
  (a real-mode load keeps the old limit: that is how "unreal mode" works, SDM Vol 3, 9.9.2);
- in protected mode: the descriptor is read from the GDT or LDT and checked with the exact fault of
  the MOV/POP/LxS pseudo-code (Vol 2, MOV: #GP(selector), #SS(selector), #NP(selector)), and its
  accessed bit is set in memory.

HFLAGS (the translation blocks' mode key) and CPL are recomputed after any change here.
"""

from __future__ import annotations

from numba import njit

from emu.cpu import state as S
from emu.cpu.access import (
    GP_VECTOR,
    SEGF_MASK,
    SS_VECTOR,
    raise_fault,
    seg_summary,
    sget,
    sset,
    vread,
    vwrite,
)
from emu.cpu.flags import VM as EFLAGS_VM
from emu.mmu.softmmu import MEM_FAULT

NP_VECTOR = 11
TS_VECTOR = 10
SEL_TI = 0x4  # selector bit 2: the descriptor is in the LDT
SEL_RPL = 0x3


@njit(cache=True)
def update_hflags(sp):
    """Recompute HFLAGS from CR0.PE, EFLAGS.VM, CPL, CS.D and SS.B."""
    h = sget(sp, S.CPL) & 3
    if sget(sp, S.SEGATTR + S.CS * S.SEG_STRIDE) & S.ATTR_DB:
        h |= S.HF_CS32
    if sget(sp, S.SEGATTR + S.SS * S.SEG_STRIDE) & S.ATTR_DB:
        h |= S.HF_SS32
    if sget(sp, S.CR0) & 1:
        h |= S.HF_PE
    if sget(sp, S.EFLAGS) & EFLAGS_VM:
        h |= S.HF_VM
    sset(sp, S.HFLAGS, h)


@njit(cache=True)
def set_seg_cache(sp, seg, sel, base, limit, attr):
    o = S.SEG_BASE_SLOT + seg * S.SEG_STRIDE
    pe = (sget(sp, S.CR0) & 1) != 0
    vm = (sget(sp, S.EFLAGS) & EFLAGS_VM) != 0
    null = pe and not vm and (sel & 0xFFFC) == 0 and seg != S.CS
    sset(sp, o + S.SEG_SEL, sel & 0xFFFF)
    sset(sp, o + S.SEG_BASE, base & 0xFFFF_FFFF)
    sset(sp, o + S.SEG_LIMIT, limit & 0xFFFF_FFFF)
    sset(sp, o + S.SEG_ATTR, seg_summary(attr & ~SEGF_MASK, pe, vm, null))


@njit(cache=True)
def load_seg_real(sp, seg, sel):
    """Real/V86-mode load: base = selector << 4; limit and attributes stay (unreal mode)."""
    o = S.SEG_BASE_SLOT + seg * S.SEG_STRIDE
    attr = sget(sp, o + S.SEG_ATTR)
    limit = sget(sp, o + S.SEG_LIMIT)
    if sget(sp, S.EFLAGS) & EFLAGS_VM:
        # V86: every segment is a 64 KiB writable data segment at privilege 3 (SDM Vol 3, 20.1.1)
        attr = S.ATTR_P | S.ATTR_S | S.ATTR_WRITABLE | S.ATTR_ACCESSED | (3 << S.ATTR_DPL_SHIFT)
        if seg == S.CS:
            attr |= S.ATTR_CODE
        limit = 0xFFFF
    set_seg_cache(sp, seg, sel, (sel & 0xFFFF) << 4, limit, attr)
    if seg == S.CS or seg == S.SS:
        update_hflags(sp)


# ------------------------------------------------------------------------------ descriptors
@njit(cache=True)
def desc_addr(sp, sel):
    """Linear address of the descriptor `sel` names, or -1 when it lies beyond the table limit."""
    index = sel & 0xFFF8
    if sel & SEL_TI:
        ldt = S.SEG_BASE_SLOT + S.LDTR_SEG * S.SEG_STRIDE
        if (sget(sp, ldt + S.SEG_SEL) & 0xFFFC) == 0:
            return -1
        base = sget(sp, ldt + S.SEG_BASE)
        limit = sget(sp, ldt + S.SEG_LIMIT)
    else:
        base = sget(sp, S.GDTR_BASE)
        limit = sget(sp, S.GDTR_LIMIT)
    if index + 7 > limit:
        return -1
    return (base + index) & 0xFFFF_FFFF


@njit(cache=True)
def read_desc(sp, tp, mp, cp, la):
    """The 8-byte descriptor at linear `la` as (low, high), read with supervisor rights, or
    (MEM_FAULT, 0) when the read faulted."""
    lo = vread(tp, mp, cp, la, 4, 0)
    if lo < 0:
        return MEM_FAULT, 0
    hi = vread(tp, mp, cp, (la + 4) & 0xFFFF_FFFF, 4, 0)
    if hi < 0:
        return MEM_FAULT, 0
    return lo, hi


@njit(cache=True)
def desc_base(lo, hi):
    return ((lo >> 16) & 0xFFFF) | ((hi & 0xFF) << 16) | (hi & 0xFF00_0000)


@njit(cache=True)
def desc_limit(lo, hi):
    limit = (lo & 0xFFFF) | (hi & 0xF_0000)
    if hi & (1 << 23):  # G: 4 KiB granularity
        limit = (limit << 12) | 0xFFF
    return limit


@njit(cache=True)
def desc_attr(hi):
    """Descriptor bytes 5 and 6 in the segment cache's attribute layout."""
    return (hi >> 8) & 0xF0FF


@njit(cache=True)
def set_accessed(sp, tp, mp, cp, la, hi):
    """Set the descriptor's accessed bit in memory if it is clear (SDM Vol 3, 3.4.5.1)."""
    if not (hi & 0x100):
        r = vwrite(tp, mp, cp, (la + 4) & 0xFFFF_FFFF, 4, hi | 0x100, 0)
        if r < 0:
            return r
    return 0


@njit(cache=True)
def load_seg_prot(sp, tp, mp, cp, seg, sel):
    """MOV/POP/LxS to a data or stack segment register in protected mode, with its checks.
    Returns 0, or MEM_FAULT with the exception recorded."""
    cpl = sget(sp, S.CPL)
    rpl = sel & SEL_RPL
    if (sel & 0xFFFC) == 0:
        if seg == S.SS:
            return raise_fault(sp, GP_VECTOR, 0)
        set_seg_cache(sp, seg, sel, 0, 0, 0)
        return 0
    la = desc_addr(sp, sel)
    if la < 0:
        return raise_fault(sp, GP_VECTOR, sel & 0xFFFC)
    lo, hi = read_desc(sp, tp, mp, cp, la)
    if lo < 0:
        return MEM_FAULT
    attr = desc_attr(hi)
    dpl = (attr >> S.ATTR_DPL_SHIFT) & 3
    code = (attr & S.ATTR_CODE) != 0
    if not (attr & S.ATTR_S):
        return raise_fault(sp, GP_VECTOR, sel & 0xFFFC)
    if seg == S.SS:
        if rpl != cpl or dpl != cpl or code or not (attr & S.ATTR_WRITABLE):
            return raise_fault(sp, GP_VECTOR, sel & 0xFFFC)
        if not (attr & S.ATTR_P):
            return raise_fault(sp, SS_VECTOR, sel & 0xFFFC)
    else:
        if code and not (attr & S.ATTR_WRITABLE):  # execute-only code
            return raise_fault(sp, GP_VECTOR, sel & 0xFFFC)
        conforming_code = code and (attr & S.ATTR_EXPAND_DOWN)
        if not conforming_code and (rpl > dpl or cpl > dpl):
            return raise_fault(sp, GP_VECTOR, sel & 0xFFFC)
        if not (attr & S.ATTR_P):
            return raise_fault(sp, NP_VECTOR, sel & 0xFFFC)
    r = set_accessed(sp, tp, mp, cp, la, hi)
    if r < 0:
        return r
    set_seg_cache(sp, seg, sel, desc_base(lo, hi), desc_limit(lo, hi), attr | 1)
    if seg == S.SS:
        update_hflags(sp)
    return 0


@njit(cache=True)
def load_seg(sp, tp, mp, cp, seg, sel):
    """Load a data/stack segment register in the current mode."""
    if (sget(sp, S.CR0) & 1) == 0 or (sget(sp, S.EFLAGS) & EFLAGS_VM):
        load_seg_real(sp, seg, sel)
        return 0
    return load_seg_prot(sp, tp, mp, cp, seg, sel)


@njit(cache=True)
def load_cs_checked(sp, tp, mp, cp, sel, new_cpl):
    """Load CS for a far transfer that the caller has already checked, at privilege new_cpl.
    Returns 0, or MEM_FAULT."""
    la = desc_addr(sp, sel)
    if la < 0:
        return raise_fault(sp, GP_VECTOR, sel & 0xFFFC)
    lo, hi = read_desc(sp, tp, mp, cp, la)
    if lo < 0:
        return MEM_FAULT
    r = set_accessed(sp, tp, mp, cp, la, hi)
    if r < 0:
        return r
    sset(sp, S.CPL, new_cpl)
    set_seg_cache(sp, S.CS, (sel & 0xFFFC) | new_cpl, desc_base(lo, hi), desc_limit(lo, hi),
                  desc_attr(hi) | 1)
    update_hflags(sp)
    return 0


@njit(cache=True)
def check_code_desc(sp, tp, mp, cp, sel, for_call_or_jmp, cpl):
    """Checks on a far JMP/CALL target code descriptor (SDM Vol 2, JMP/CALL, protected mode):
    returns (0, lo, hi) or (MEM_FAULT, 0, 0) with the exception recorded."""
    if (sel & 0xFFFC) == 0:
        return raise_fault(sp, GP_VECTOR, 0), 0, 0
    la = desc_addr(sp, sel)
    if la < 0:
        return raise_fault(sp, GP_VECTOR, sel & 0xFFFC), 0, 0
    lo, hi = read_desc(sp, tp, mp, cp, la)
    if lo < 0:
        return MEM_FAULT, 0, 0
    return 0, lo, hi


@njit(cache=True)
def invalid_tss_or_np(sp, vector, sel):
    return raise_fault(sp, vector, sel & 0xFFFC)


__all__ = ["TS_VECTOR", "NP_VECTOR", "load_seg", "load_seg_real", "load_seg_prot", "update_hflags",
           "set_seg_cache", "desc_addr", "read_desc", "desc_base", "desc_limit", "desc_attr",
           "load_cs_checked", "check_code_desc"]
