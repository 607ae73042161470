"""Hardware task switching (SDM Vol 3, chapter 7, 7.3 "Task Switching"), inside compiled code.

`task_switch` runs steps 4-14 of 7.3 for a switch caused by JMP, CALL, IRET or an interrupt/exception
through a task gate. The caller has already checked the privilege rules of its own instruction and
that the new TSS descriptor is present and of the right busy-ness (available for JMP/CALL/INT,
busy for IRET). Here:

1. the new TSS limit (>= 67h for a 32-bit TSS, >= 2Bh for a 16-bit one) → #TS(new TSS selector);
2. the new task's whole state is read first, so a page fault on the new TSS leaves the old task
   intact; then the outgoing state is saved in the current TSS (EIP = the return address);
3. busy bits: JMP and IRET clear the old TSS's, JMP/CALL/INT set the new one's; IRET clears NT in
   the saved EFLAGS image; CALL/INT write the back-link and set NT in the new EFLAGS;
4. TR, CR0.TS, CR3 (32-bit TSS with paging on: TLB flush and PAE PDPTEs), the LDTR, EFLAGS, the
   GPRs, EIP and the segment selectors of the new task are loaded (commit point), then the LDTR and
   segment descriptors are checked (Table 7-1): #TS(selector), #NP(selector) or #SS(selector),
   delivered in the context of the new task.

Layout of the TSS (Figures 7-2 and 7-11) in the TSS32_* / TSS16_* offsets below.
"""

from __future__ import annotations

from numba import njit

from emu.cpu import flags as F
from emu.cpu import state as S
from emu.cpu.access import raise_fault, sget, sset, vread, vwrite
from emu.cpu.eflags import get_eflags, set_eflags
from emu.cpu.segments import (
    NP_VECTOR,
    TS_VECTOR,
    desc_addr,
    desc_attr,
    desc_base,
    desc_limit,
    load_seg_real,
    read_desc,
    set_accessed,
    set_seg_cache,
    update_hflags,
)
from emu.cpu.system import CR0_TS, load_pdptes, resummarize_segments
from emu.mmu.paging import CR0_PG, CR4_PAE, CR4_PGE
from emu.mmu.softmmu import MEM_FAULT
from emu.mmu.tlb import tlb_flush_all

SS_VECTOR = 12

TASK_JMP = 0
TASK_CALL = 1
TASK_IRET = 2
TASK_INT = 3  # an interrupt or exception through a task gate

TSS_LINK = 0
TSS32_ESP0 = 4  # ESPn at 4 + 8n, SSn at 8 + 8n
TSS32_CR3 = 0x1C
TSS32_EIP = 0x20
TSS32_EFLAGS = 0x24
TSS32_GPR = 0x28  # EAX..EDI, 4 bytes each
TSS32_SEG = 0x48  # ES CS SS DS FS GS, 4 bytes each
TSS32_LDT = 0x60
TSS32_MIN_LIMIT = 0x67
TSS16_SP0 = 2  # SPn at 2 + 4n, SSn at 4 + 4n
TSS16_IP = 0x0E
TSS16_FLAGS = 0x10
TSS16_GPR = 0x12  # AX..DI, 2 bytes each
TSS16_SEG = 0x22  # ES CS SS DS, 2 bytes each
TSS16_LDT = 0x2A
TSS16_MIN_LIMIT = 0x2B
TYPE_BUSY = 0x2  # the busy bit in a TSS descriptor's type
DESC_BUSY_BIT = 0x200  # the same bit in the descriptor's high dword


@njit(cache=True)
def is_tss32(attr):
    return (attr & 0x8) != 0


@njit(cache=True)
def tss_stack(sp, tp, mp, cp, dpl):
    """SSn:ESPn for privilege `dpl` from the current TSS: (ss, esp), or (MEM_FAULT, 0) after
    recording #TS(current TSS selector) for a TSS too short, or a page fault."""
    base = sget(sp, S.SEGBASE + S.TR_SEG * S.SEG_STRIDE)
    limit = sget(sp, S.SEGLIMIT + S.TR_SEG * S.SEG_STRIDE)
    tr = sget(sp, S.SEGSEL + S.TR_SEG * S.SEG_STRIDE) & 0xFFFC
    if is_tss32(sget(sp, S.SEGATTR + S.TR_SEG * S.SEG_STRIDE)):
        off = TSS32_ESP0 + 8 * dpl
        if off + 5 > limit:
            return raise_fault(sp, TS_VECTOR, tr), 0
        esp = vread(tp, mp, cp, (base + off) & 0xFFFF_FFFF, 4, 0)
        ss = vread(tp, mp, cp, (base + off + 4) & 0xFFFF_FFFF, 2, 0)
    else:
        off = TSS16_SP0 + 4 * dpl
        if off + 3 > limit:
            return raise_fault(sp, TS_VECTOR, tr), 0
        esp = vread(tp, mp, cp, (base + off) & 0xFFFF_FFFF, 2, 0)
        ss = vread(tp, mp, cp, (base + off + 2) & 0xFFFF_FFFF, 2, 0)
    if esp < 0 or ss < 0:
        return MEM_FAULT, 0
    return ss, esp


@njit(cache=True)
def _load_task_seg(sp, tp, mp, cp, seg, sel, ext, cpl):
    """Check and load one segment register of the new task (Vol 3, Table 7-1). 0 or < 0."""
    err = (sel & 0xFFFC) | ext
    if (sel & 0xFFFC) == 0:
        if seg == S.CS or seg == S.SS:
            return raise_fault(sp, TS_VECTOR, err)
        set_seg_cache(sp, seg, sel, 0, 0, 0)
        return 0
    la = desc_addr(sp, sel)
    if la < 0:
        return raise_fault(sp, TS_VECTOR, err)
    lo, hi = read_desc(sp, tp, mp, cp, la)
    if lo < 0:
        return MEM_FAULT
    attr = desc_attr(hi)
    dpl = (attr >> S.ATTR_DPL_SHIFT) & 3
    rpl = sel & 3
    code = (attr & S.ATTR_CODE) != 0
    if not (attr & S.ATTR_S):
        return raise_fault(sp, TS_VECTOR, err)
    if seg == S.CS:
        if not code:
            return raise_fault(sp, TS_VECTOR, err)
        if attr & S.ATTR_EXPAND_DOWN:
            if dpl > rpl:
                return raise_fault(sp, TS_VECTOR, err)
        elif dpl != rpl:
            return raise_fault(sp, TS_VECTOR, err)
        if not (attr & S.ATTR_P):
            return raise_fault(sp, NP_VECTOR, err)
    elif seg == S.SS:
        if code or not (attr & S.ATTR_WRITABLE) or dpl != cpl or rpl != cpl:
            return raise_fault(sp, TS_VECTOR, err)
        if not (attr & S.ATTR_P):
            return raise_fault(sp, SS_VECTOR, err)
    else:
        if code and not (attr & S.ATTR_WRITABLE):
            return raise_fault(sp, TS_VECTOR, err)
        if not (code and (attr & S.ATTR_EXPAND_DOWN)) and (dpl < cpl or dpl < rpl):
            return raise_fault(sp, TS_VECTOR, err)
        if not (attr & S.ATTR_P):
            return raise_fault(sp, NP_VECTOR, err)
    r = set_accessed(sp, tp, mp, cp, la, hi)
    if r < 0:
        return r
    set_seg_cache(sp, seg, sel, desc_base(lo, hi), desc_limit(lo, hi), attr | 1)
    return 0


@njit(cache=True)
def _load_task_ldt(sp, tp, mp, cp, sel, ext):
    err = (sel & 0xFFFC) | ext
    if (sel & 0xFFFC) == 0:
        set_seg_cache(sp, S.LDTR_SEG, sel, 0, 0, 0)
        return 0
    if sel & 4:
        return raise_fault(sp, TS_VECTOR, err)
    la = desc_addr(sp, sel)
    if la < 0:
        return raise_fault(sp, TS_VECTOR, err)
    lo, hi = read_desc(sp, tp, mp, cp, la)
    if lo < 0:
        return MEM_FAULT
    attr = desc_attr(hi)
    if (attr & (S.ATTR_S | S.ATTR_TYPE_MASK)) != 0x2 or not (attr & S.ATTR_P):
        return raise_fault(sp, TS_VECTOR, err)
    set_seg_cache(sp, S.LDTR_SEG, sel, desc_base(lo, hi), desc_limit(lo, hi), attr)
    return 0


@njit(cache=True)
def _rd(tp, mp, cp, base, off, size):
    return vread(tp, mp, cp, (base + off) & 0xFFFF_FFFF, size, 0)


@njit(cache=True)
def _wr(tp, mp, cp, base, off, size, v):
    return vwrite(tp, mp, cp, (base + off) & 0xFFFF_FFFF, size, v & ((1 << (8 * size)) - 1), 0)


@njit(cache=True)
def task_switch(sp, tp, mp, cp, sel, desc_la, lo, hi, reason, ret_eip, ext):
    """Switch to the task whose TSS descriptor (`lo`, `hi`, at linear `desc_la`) `sel` names.

    `ret_eip` is saved as the outgoing task's EIP. Returns 0 (CS:EIP and everything else now belong
    to the new task) or a negative code with the exception recorded."""
    attr = desc_attr(hi)
    nbase = desc_base(lo, hi)
    nlimit = desc_limit(lo, hi)
    n32 = is_tss32(attr)
    if nlimit < (TSS32_MIN_LIMIT if n32 else TSS16_MIN_LIMIT):
        return raise_fault(sp, TS_VECTOR, (sel & 0xFFFC) | ext)
    # ---- read the incoming state first (faults here leave the old task untouched)
    gpr = [0] * 8
    segs = [0] * 6
    if n32:
        ncr3 = _rd(tp, mp, cp, nbase, TSS32_CR3, 4)
        neip = _rd(tp, mp, cp, nbase, TSS32_EIP, 4)
        nfl = _rd(tp, mp, cp, nbase, TSS32_EFLAGS, 4)
        nldt = _rd(tp, mp, cp, nbase, TSS32_LDT, 2)
        if ncr3 < 0 or neip < 0 or nfl < 0 or nldt < 0:
            return MEM_FAULT
        for i in range(8):
            v = _rd(tp, mp, cp, nbase, TSS32_GPR + 4 * i, 4)
            if v < 0:
                return MEM_FAULT
            gpr[i] = v
        for i in range(6):
            v = _rd(tp, mp, cp, nbase, TSS32_SEG + 4 * i, 2)
            if v < 0:
                return MEM_FAULT
            segs[i] = v
    else:
        ncr3 = 0
        neip = _rd(tp, mp, cp, nbase, TSS16_IP, 2)
        nfl = _rd(tp, mp, cp, nbase, TSS16_FLAGS, 2)
        nldt = _rd(tp, mp, cp, nbase, TSS16_LDT, 2)
        if neip < 0 or nfl < 0 or nldt < 0:
            return MEM_FAULT
        for i in range(8):
            v = _rd(tp, mp, cp, nbase, TSS16_GPR + 2 * i, 2)
            if v < 0:
                return MEM_FAULT
            gpr[i] = v | 0xFFFF_0000  # the upper halves of a 16-bit task's registers read as 1s
        for i in range(4):
            v = _rd(tp, mp, cp, nbase, TSS16_SEG + 2 * i, 2)
            if v < 0:
                return MEM_FAULT
            segs[i] = v
    # ---- save the outgoing state in the current TSS
    obase = sget(sp, S.SEGBASE + S.TR_SEG * S.SEG_STRIDE)
    osel = sget(sp, S.SEGSEL + S.TR_SEG * S.SEG_STRIDE)
    oattr = sget(sp, S.SEGATTR + S.TR_SEG * S.SEG_STRIDE)
    ofl = get_eflags(sp)
    if reason == TASK_IRET:
        ofl &= ~F.NT
    if is_tss32(oattr):
        r = _wr(tp, mp, cp, obase, TSS32_EIP, 4, ret_eip)
        if r < 0:
            return r
        r = _wr(tp, mp, cp, obase, TSS32_EFLAGS, 4, ofl)
        if r < 0:
            return r
        for i in range(8):
            r = _wr(tp, mp, cp, obase, TSS32_GPR + 4 * i, 4, sget(sp, i))
            if r < 0:
                return r
        for i in range(6):
            r = _wr(tp, mp, cp, obase, TSS32_SEG + 4 * i, 2, sget(sp, S.SEGSEL + i * S.SEG_STRIDE))
            if r < 0:
                return r
    else:
        r = _wr(tp, mp, cp, obase, TSS16_IP, 2, ret_eip)
        if r < 0:
            return r
        r = _wr(tp, mp, cp, obase, TSS16_FLAGS, 2, ofl)
        if r < 0:
            return r
        for i in range(8):
            r = _wr(tp, mp, cp, obase, TSS16_GPR + 2 * i, 2, sget(sp, i))
            if r < 0:
                return r
        for i in range(4):
            r = _wr(tp, mp, cp, obase, TSS16_SEG + 2 * i, 2, sget(sp, S.SEGSEL + i * S.SEG_STRIDE))
            if r < 0:
                return r
    # ---- busy bits and the back-link
    if reason == TASK_JMP or reason == TASK_IRET:
        ola = desc_addr(sp, osel)
        if ola >= 0:
            ohi = vread(tp, mp, cp, (ola + 4) & 0xFFFF_FFFF, 4, 0)
            if ohi < 0:
                return MEM_FAULT
            r = vwrite(tp, mp, cp, (ola + 4) & 0xFFFF_FFFF, 4, ohi & ~DESC_BUSY_BIT, 0)
            if r < 0:
                return r
    if reason != TASK_IRET:
        r = vwrite(tp, mp, cp, (desc_la + 4) & 0xFFFF_FFFF, 4, hi | DESC_BUSY_BIT, 0)
        if r < 0:
            return r
    if reason == TASK_CALL or reason == TASK_INT:
        r = _wr(tp, mp, cp, nbase, TSS_LINK, 2, osel)
        if r < 0:
            return r
        nfl |= F.NT
    # ---- commit: the new task's state
    set_seg_cache(sp, S.TR_SEG, sel, nbase, nlimit, attr | TYPE_BUSY)
    sset(sp, S.CR0, sget(sp, S.CR0) | CR0_TS)
    if n32 and (sget(sp, S.CR0) & CR0_PG):
        if sget(sp, S.CR4) & CR4_PAE:
            r = load_pdptes(sp, cp, ncr3)
            if r < 0:
                return r
        sset(sp, S.CR3, ncr3 & 0xFFFF_FFFF)
        tlb_flush_all(tp, (sget(sp, S.CR4) & CR4_PGE) != 0)
    for i in range(8):
        sset(sp, i, gpr[i] & 0xFFFF_FFFF)
    if not n32:
        nfl = (nfl & 0xFFFF) | (get_eflags(sp) & 0xFFFF_0000 & ~F.VM)
    set_eflags(sp, nfl | F.FIXED1)
    sset(sp, S.EIP, neip)
    v86 = (nfl & F.VM) != 0
    cpl = 3 if v86 else segs[S.CS] & 3
    sset(sp, S.CPL, cpl)
    # selectors first (a fault below is delivered with them in place), then the descriptors
    for i in range(6):
        sset(sp, S.SEGSEL + i * S.SEG_STRIDE, segs[i])
    sset(sp, S.SEGSEL + S.LDTR_SEG * S.SEG_STRIDE, nldt)
    resummarize_segments(sp)
    r = _load_task_ldt(sp, tp, mp, cp, nldt, ext)
    if r < 0:
        update_hflags(sp)
        return r
    if v86:
        for i in range(6):
            load_seg_real(sp, i, segs[i])
    else:
        for i in (S.CS, S.SS, S.DS, S.ES, S.FS, S.GS):
            r = _load_task_seg(sp, tp, mp, cp, i, segs[i], ext, cpl)
            if r < 0:
                update_hflags(sp)
                return r
    update_hflags(sp)
    return 0


__all__ = ["task_switch", "tss_stack", "TASK_JMP", "TASK_CALL", "TASK_IRET", "TASK_INT"]
