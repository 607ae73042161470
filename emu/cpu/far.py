"""Far control transfers: JMP/CALL far, RET far, IRET (SDM Vol 2, JMP, CALL, RET, IRET).

Each function handles every mode: real mode and virtual-8086 mode load CS as base = selector * 16;
protected mode goes through the descriptor checks (code segments, conforming rules, call gates,
task gates and TSS descriptors, returns to outer privilege levels, IRET to V86).

The outgoing task's EIP that a task switch saves is `neip` for JMP/CALL; for IRET with NT=1 it is
the value of EIP when `iret` runs, so the caller must store the next instruction's address in EIP
before calling `iret` (a faulting IRET restores the instruction's own EIP as usual).

Calling convention (all compiled, raw pointers): return 0 when CS:EIP now hold the target (the
caller ends the translation block), or a negative code after recording the exception
(FAULT_VECTOR/FAULT_ERROR) or setting EXIT_REASON. Nothing architectural changes before every
check and every stack access that can fault has passed.
"""

from __future__ import annotations

from numba import njit

from emu.cpu import flags as F
from emu.cpu import state as S
from emu.cpu.access import pop_at, push_at, raise_fault, set_sp, sget, sset, stack_mask, vread, vwrite
from emu.cpu.eflags import WRITABLE, get_eflags, popf_mask, set_eflags
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
from emu.cpu.tasks import TASK_CALL, TASK_IRET, TASK_JMP, task_switch, tss_stack
from emu.mmu.softmmu import MEM_FAULT

GP_VECTOR = 13
SS_VECTOR = 12
NOT_BUILT = -2  # EXIT_UNIMPLEMENTED was set


@njit(cache=True)
def _real_or_v86(sp):
    return (sget(sp, S.CR0) & 1) == 0 or (sget(sp, S.EFLAGS) & F.VM) != 0


@njit(cache=True)
def _not_built(sp, what):
    sset(sp, S.EXIT_REASON, S.EXIT_UNIMPLEMENTED)
    sset(sp, S.EXIT_ARG0, what)
    return NOT_BUILT


# ============================================================================== protected mode
ATTR_CODE_SEG = S.ATTR_S | S.ATTR_CODE
IRET_BASE_MASK = (F.CF | F.PF | F.AF | F.ZF | F.SF | F.TF | F.DF | F.OF | F.NT | F.RF | F.AC | F.ID)


@njit(cache=True)
def _get_desc(sp, tp, mp, cp, sel):
    """(linear address, low, high) of descriptor `sel`; the address is -1 when the selector lies
    beyond its table's limit (nothing recorded) and MEM_FAULT when reading it faulted."""
    la = desc_addr(sp, sel)
    if la < 0:
        return -1, 0, 0
    lo, hi = read_desc(sp, tp, mp, cp, la)
    if lo < 0:
        return MEM_FAULT - 1, 0, 0
    return la, lo, hi


@njit(cache=True)
def _dpl(attr):
    return (attr >> S.ATTR_DPL_SHIFT) & 3


@njit(cache=True)
def _gp_sel(sp, sel):
    return raise_fault(sp, GP_VECTOR, sel & 0xFFFC)


@njit(cache=True)
def _commit_cs(sp, sel, lo, hi, cpl, eip):
    """Load CS (RPL forced to the new CPL), CPL and EIP; the checks have all passed."""
    sset(sp, S.CPL, cpl)
    set_seg_cache(sp, S.CS, (sel & 0xFFFC) | cpl, desc_base(lo, hi), desc_limit(lo, hi), desc_attr(hi) | 1)
    sset(sp, S.EIP, eip)
    update_hflags(sp)


@njit(cache=True)
def _stack_slot(base, limit, attr, off, size):
    """Linear address of `size` bytes at offset `off` of a stack segment described by base/limit/
    attr (not loaded yet), or -1 when they lie outside it."""
    if attr & S.ATTR_EXPAND_DOWN:
        upper = 0xFFFF_FFFF if (attr & S.ATTR_DB) else 0xFFFF
        if off <= limit or off + size - 1 > upper:
            return -1
    elif off + size - 1 > limit:
        return -1
    return (base + off) & 0xFFFF_FFFF


@njit(cache=True)
def _check_outer_ss(sp, tp, mp, cp, nss, rpl):
    """RET/IRET to an outer level: the stack segment selector's checks (SDM Vol 2, RET, IRET).
    Returns (la, lo, hi), or (negative, 0, 0) with the fault recorded."""
    if (nss & 0xFFFC) == 0:
        return raise_fault(sp, GP_VECTOR, 0), 0, 0
    la, lo, hi = _get_desc(sp, tp, mp, cp, nss)
    if la == -1:
        return _gp_sel(sp, nss), 0, 0
    if la < 0:
        return MEM_FAULT, 0, 0
    a = desc_attr(hi)
    if ((nss & 3) != rpl or _dpl(a) != rpl
            or (a & (S.ATTR_S | S.ATTR_CODE | S.ATTR_WRITABLE)) != (S.ATTR_S | S.ATTR_WRITABLE)):
        return _gp_sel(sp, nss), 0, 0
    if not (a & S.ATTR_P):
        return raise_fault(sp, SS_VECTOR, nss & 0xFFFC), 0, 0
    return la, lo, hi


@njit(cache=True)
def _null_data_segs(sp, cpl):
    """After a return to an outer level, data segment registers (and non-conforming code ones) the
    new CPL may not use become null (SDM Vol 2, RET and IRET: RETURN-TO-OUTER-PRIVILEGE-LEVEL)."""
    for seg in (S.ES, S.DS, S.FS, S.GS):
        o = S.SEG_BASE_SLOT + seg * S.SEG_STRIDE
        a = sget(sp, o + S.SEG_ATTR)
        conforming_code = (a & S.ATTR_CODE) != 0 and (a & S.ATTR_EXPAND_DOWN) != 0
        if (sget(sp, o + S.SEG_SEL) & 0xFFFC) != 0 and not conforming_code and _dpl(a) < cpl:
            set_seg_cache(sp, seg, 0, 0, 0, 0)


@njit(cache=True)
def _check_return_cs(sp, tp, mp, cp, sel, cpl):
    """The code segment checks of RET far / IRET: (la, lo, hi) or (negative, 0, 0)."""
    if (sel & 0xFFFC) == 0:
        return raise_fault(sp, GP_VECTOR, 0), 0, 0
    la, lo, hi = _get_desc(sp, tp, mp, cp, sel)
    if la == -1:
        return _gp_sel(sp, sel), 0, 0
    if la < 0:
        return MEM_FAULT, 0, 0
    a = desc_attr(hi)
    rpl = sel & 3
    if (a & ATTR_CODE_SEG) != ATTR_CODE_SEG or rpl < cpl:
        return _gp_sel(sp, sel), 0, 0
    if a & S.ATTR_EXPAND_DOWN:
        if _dpl(a) > rpl:
            return _gp_sel(sp, sel), 0, 0
    elif _dpl(a) != rpl:
        return _gp_sel(sp, sel), 0, 0
    if not (a & S.ATTR_P):
        return raise_fault(sp, NP_VECTOR, sel & 0xFFFC), 0, 0
    return la, lo, hi


@njit(cache=True)
def _to_task(sp, tp, mp, cp, tsel, reason, neip):
    """JMP/CALL to a TSS selector named by a task gate or directly: the TSS checks, the switch,
    then the new EIP against the new CS limit (SDM Vol 2, JMP/CALL TASK-GATE and TASK-STATE-SEGMENT)."""
    if tsel & 4:
        return _gp_sel(sp, tsel)
    la, lo, hi = _get_desc(sp, tp, mp, cp, tsel)
    if la == -1:
        return _gp_sel(sp, tsel)
    if la < 0:
        return MEM_FAULT
    a = desc_attr(hi)
    t = a & (S.ATTR_S | S.ATTR_TYPE_MASK)
    if t != 0x1 and t != 0x9:  # an available TSS (a busy one: #GP too)
        return _gp_sel(sp, tsel)
    if not (a & S.ATTR_P):
        return raise_fault(sp, NP_VECTOR, tsel & 0xFFFC)
    r = task_switch(sp, tp, mp, cp, tsel, la, lo, hi, reason, neip, 0)
    if r < 0:
        return r
    if sget(sp, S.EIP) > sget(sp, S.SEGLIMIT + S.CS * S.SEG_STRIDE):
        return raise_fault(sp, GP_VECTOR, 0)
    return 0


@njit(cache=True)
def _call_gate_inner(sp, tp, mp, cp, csel, clo, chi, cla, goff, gate32, pcount, neip):
    """CALL through a call gate to a more privileged non-conforming code segment: the new stack
    from the TSS, parameters copied (SDM Vol 2, CALL, MORE-PRIVILEGE)."""
    cattr = desc_attr(chi)
    cdpl = _dpl(cattr)
    nss, nesp = tss_stack(sp, tp, mp, cp, cdpl)
    if nss < 0:
        return nss
    if (nss & 0xFFFC) == 0:
        return raise_fault(sp, TS_VECTOR, 0)
    sla, slo, shi = _get_desc(sp, tp, mp, cp, nss)
    if sla == -1:
        return raise_fault(sp, TS_VECTOR, nss & 0xFFFC)
    if sla < 0:
        return MEM_FAULT
    sattr = desc_attr(shi)
    if ((nss & 3) != cdpl or _dpl(sattr) != cdpl
            or (sattr & (S.ATTR_S | S.ATTR_CODE | S.ATTR_WRITABLE)) != (S.ATTR_S | S.ATTR_WRITABLE)):
        return raise_fault(sp, TS_VECTOR, nss & 0xFFFC)
    if not (sattr & S.ATTR_P):
        return raise_fault(sp, SS_VECTOR, nss & 0xFFFC)
    size = 4 if gate32 else 2
    sbase = desc_base(slo, shi)
    slimit = desc_limit(slo, shi)
    nmask = 0xFFFF_FFFF if (sattr & S.ATTR_DB) else 0xFFFF
    # room for SS, ESP, the parameters, CS and EIP, or #SS(new SS)
    need = (4 + pcount) * size
    lowest = (nesp - need) & nmask
    if _stack_slot(sbase, slimit, sattr, lowest, need) < 0:
        return raise_fault(sp, SS_VECTOR, nss & 0xFFFC)
    if goff > desc_limit(clo, chi):
        return raise_fault(sp, GP_VECTOR, 0)
    cpl = sget(sp, S.CPL)
    user = 1 if cpl == 3 else 0
    old_ss = sget(sp, S.SEGSEL + S.SS * S.SEG_STRIDE)
    old_esp = sget(sp, S.ESP)
    omask = stack_mask(sp)
    esp = nesp & nmask
    for k in range(4 + pcount):
        if k == 0:
            v = old_ss
        elif k == 1:
            v = old_esp
        elif k < 2 + pcount:
            i = pcount - 1 - (k - 2)  # parameter[i], highest first
            v = pop_at(sp, tp, mp, cp, user, (old_esp + i * size) & omask, size)
            if v < 0:
                return v
        elif k == 2 + pcount:
            v = sget(sp, S.SEGSEL + S.CS * S.SEG_STRIDE)
        else:
            v = neip
        esp = (esp - size) & nmask
        r = vwrite(tp, mp, cp, (sbase + esp) & 0xFFFF_FFFF, size, v & (0xFFFF_FFFF if size == 4 else 0xFFFF), 0)
        if r < 0:
            return r
    r = set_accessed(sp, tp, mp, cp, sla, shi)
    if r < 0:
        return r
    r = set_accessed(sp, tp, mp, cp, cla, chi)
    if r < 0:
        return r
    set_seg_cache(sp, S.SS, nss, sbase, slimit, sattr | 1)
    if nmask == 0xFFFF:
        sset(sp, S.ESP, (nesp & 0xFFFF_0000) | esp)
    else:
        sset(sp, S.ESP, esp)
    _commit_cs(sp, csel, clo, chi, cdpl, goff)
    return 0


@njit(cache=True)
def _pm_jmp_call(sp, tp, mp, cp, sel, offset, opsize, neip, is_call):
    """Protected-mode JMP/CALL far (SDM Vol 2, JMP and CALL, PROTECTED MODE)."""
    cpl = sget(sp, S.CPL)
    sel &= 0xFFFF
    if (sel & 0xFFFC) == 0:
        return raise_fault(sp, GP_VECTOR, 0)
    la, lo, hi = _get_desc(sp, tp, mp, cp, sel)
    if la == -1:
        return _gp_sel(sp, sel)
    if la < 0:
        return MEM_FAULT
    a = desc_attr(hi)
    dpl = _dpl(a)
    rpl = sel & 3
    user = 1 if cpl == 3 else 0
    if a & S.ATTR_S:
        if not (a & S.ATTR_CODE):
            return _gp_sel(sp, sel)
        if a & S.ATTR_EXPAND_DOWN:  # conforming
            if dpl > cpl:
                return _gp_sel(sp, sel)
        elif rpl > cpl or dpl != cpl:
            return _gp_sel(sp, sel)
        if not (a & S.ATTR_P):
            return raise_fault(sp, NP_VECTOR, sel & 0xFFFC)
        offset &= 0xFFFF if opsize == 2 else 0xFFFF_FFFF
        smask = stack_mask(sp)
        esp = sget(sp, S.ESP)
        if is_call:
            esp = push_at(sp, tp, mp, cp, user, esp, smask, opsize, sget(sp, S.SEGSEL + S.CS * S.SEG_STRIDE))
            if esp < 0:
                return esp
            esp = push_at(sp, tp, mp, cp, user, esp, smask, opsize, neip)
            if esp < 0:
                return esp
        if offset > desc_limit(lo, hi):
            return raise_fault(sp, GP_VECTOR, 0)
        r = set_accessed(sp, tp, mp, cp, la, hi)
        if r < 0:
            return r
        if is_call:
            set_sp(sp, esp, smask)
        _commit_cs(sp, sel, lo, hi, cpl, offset)
        return 0
    t = a & S.ATTR_TYPE_MASK
    if t == 0x4 or t == 0xC:  # call gate
        if dpl < cpl or rpl > dpl:
            return _gp_sel(sp, sel)
        if not (a & S.ATTR_P):
            return raise_fault(sp, NP_VECTOR, sel & 0xFFFC)
        gate32 = t == 0xC
        csel = (lo >> 16) & 0xFFFF
        goff = (lo & 0xFFFF) | ((hi & 0xFFFF_0000) if gate32 else 0)
        pcount = hi & 0x1F
        if (csel & 0xFFFC) == 0:
            return raise_fault(sp, GP_VECTOR, 0)
        cla, clo, chi = _get_desc(sp, tp, mp, cp, csel)
        if cla == -1:
            return _gp_sel(sp, csel)
        if cla < 0:
            return MEM_FAULT
        ca = desc_attr(chi)
        cdpl = _dpl(ca)
        conforming = (ca & S.ATTR_EXPAND_DOWN) != 0
        if (ca & ATTR_CODE_SEG) != ATTR_CODE_SEG:
            return _gp_sel(sp, csel)
        if is_call:
            if cdpl > cpl:
                return _gp_sel(sp, csel)
        elif (conforming and cdpl > cpl) or (not conforming and cdpl != cpl):
            return _gp_sel(sp, csel)
        if not (ca & S.ATTR_P):
            return raise_fault(sp, NP_VECTOR, csel & 0xFFFC)
        if is_call and not conforming and cdpl < cpl:
            return _call_gate_inner(sp, tp, mp, cp, csel, clo, chi, cla, goff, gate32, pcount, neip)
        size = 4 if gate32 else 2
        smask = stack_mask(sp)
        esp = sget(sp, S.ESP)
        if is_call:
            esp = push_at(sp, tp, mp, cp, user, esp, smask, size, sget(sp, S.SEGSEL + S.CS * S.SEG_STRIDE))
            if esp < 0:
                return esp
            esp = push_at(sp, tp, mp, cp, user, esp, smask, size, neip & (0xFFFF_FFFF if size == 4 else 0xFFFF))
            if esp < 0:
                return esp
        if goff > desc_limit(clo, chi):
            return raise_fault(sp, GP_VECTOR, 0)
        r = set_accessed(sp, tp, mp, cp, cla, chi)
        if r < 0:
            return r
        if is_call:
            set_sp(sp, esp, smask)
        _commit_cs(sp, csel, clo, chi, cpl, goff)
        return 0
    reason = TASK_CALL if is_call else TASK_JMP
    if t == 0x5:  # task gate
        if dpl < cpl or rpl > dpl:
            return _gp_sel(sp, sel)
        if not (a & S.ATTR_P):
            return raise_fault(sp, NP_VECTOR, sel & 0xFFFC)
        return _to_task(sp, tp, mp, cp, (lo >> 16) & 0xFFFF, reason, neip)
    if t == 0x1 or t == 0x9:  # an available TSS
        if dpl < cpl or rpl > dpl:
            return _gp_sel(sp, sel)
        if not (a & S.ATTR_P):
            return raise_fault(sp, NP_VECTOR, sel & 0xFFFC)
        return _to_task(sp, tp, mp, cp, sel, reason, neip)
    return _gp_sel(sp, sel)  # busy TSS, LDT, interrupt/trap gate, reserved types


@njit(cache=True)
def _pm_ret(sp, tp, mp, cp, opsize, imm):
    """Protected-mode RET far (SDM Vol 2, RET: RETURN-TO-SAME/OUTER-PRIVILEGE-LEVEL)."""
    cpl = sget(sp, S.CPL)
    user = 1 if cpl == 3 else 0
    smask = stack_mask(sp)
    esp = sget(sp, S.ESP)
    off = pop_at(sp, tp, mp, cp, user, esp & smask, opsize)
    if off < 0:
        return off
    sel = pop_at(sp, tp, mp, cp, user, (esp + opsize) & smask, opsize)
    if sel < 0:
        return sel
    sel &= 0xFFFF
    cla, clo, chi = _check_return_cs(sp, tp, mp, cp, sel, cpl)
    if cla < 0:
        return cla
    rpl = sel & 3
    if rpl == cpl:
        if off > desc_limit(clo, chi):
            return raise_fault(sp, GP_VECTOR, 0)
        r = set_accessed(sp, tp, mp, cp, cla, chi)
        if r < 0:
            return r
        set_sp(sp, esp + 2 * opsize + imm, smask)
        _commit_cs(sp, sel, clo, chi, cpl, off)
        return 0
    nesp = pop_at(sp, tp, mp, cp, user, (esp + 2 * opsize + imm) & smask, opsize)
    if nesp < 0:
        return nesp
    nss = pop_at(sp, tp, mp, cp, user, (esp + 3 * opsize + imm) & smask, opsize)
    if nss < 0:
        return nss
    nss &= 0xFFFF
    return _outer_return(sp, tp, mp, cp, sel, cla, clo, chi, off, nss, nesp + imm, 0, False)


@njit(cache=True)
def _outer_return(sp, tp, mp, cp, sel, cla, clo, chi, off, nss, nesp, new_flags, set_flags):
    """The common tail of RET far and IRET to an outer privilege level."""
    rpl = sel & 3
    sla, slo, shi = _check_outer_ss(sp, tp, mp, cp, nss, rpl)
    if sla < 0:
        return sla
    if off > desc_limit(clo, chi):
        return raise_fault(sp, GP_VECTOR, 0)
    r = set_accessed(sp, tp, mp, cp, cla, chi)
    if r < 0:
        return r
    r = set_accessed(sp, tp, mp, cp, sla, shi)
    if r < 0:
        return r
    if set_flags:
        set_eflags(sp, new_flags)
    sattr = desc_attr(shi)
    set_seg_cache(sp, S.SS, nss, desc_base(slo, shi), desc_limit(slo, shi), sattr | 1)
    if sattr & S.ATTR_DB:
        sset(sp, S.ESP, nesp & 0xFFFF_FFFF)
    else:
        sset(sp, S.ESP, (nesp & 0xFFFF) | (sget(sp, S.ESP) & 0xFFFF_0000))
    _commit_cs(sp, sel, clo, chi, rpl, off)
    _null_data_segs(sp, rpl)
    return 0


@njit(cache=True)
def _iret_to_v86(sp, tp, mp, cp, esp, smask, off, fl, sel):
    """IRETD with VM=1 in the popped EFLAGS at CPL 0 (SDM Vol 2, IRET: RETURN-TO-VIRTUAL-8086-MODE):
    pop ESP, SS, ES, DS, FS, GS as well, then run at CPL 3 with 8086-style segments."""
    vals = [0] * 6  # ESP, SS, ES, DS, FS, GS
    for i in range(6):
        v = pop_at(sp, tp, mp, cp, 0, (esp + 12 + 4 * i) & smask, 4)
        if v < 0:
            return v
        vals[i] = v
    set_eflags(sp, (fl & (WRITABLE | F.VM)) | F.VM)
    sset(sp, S.CPL, 3)
    load_seg_real(sp, S.CS, sel)
    load_seg_real(sp, S.SS, vals[1] & 0xFFFF)
    load_seg_real(sp, S.ES, vals[2] & 0xFFFF)
    load_seg_real(sp, S.DS, vals[3] & 0xFFFF)
    load_seg_real(sp, S.FS, vals[4] & 0xFFFF)
    load_seg_real(sp, S.GS, vals[5] & 0xFFFF)
    sset(sp, S.ESP, vals[0] & 0xFFFF_FFFF)
    sset(sp, S.EIP, off & 0xFFFF)
    update_hflags(sp)
    return 0


@njit(cache=True)
def _pm_iret(sp, tp, mp, cp, opsize):
    """Protected-mode IRET (SDM Vol 2, IRET): task return (NT=1), return to V86, return to the
    same or an outer privilege level."""
    eflags = get_eflags(sp)
    cpl = sget(sp, S.CPL)
    if eflags & F.NT:
        tr_base = sget(sp, S.SEGBASE + S.TR_SEG * S.SEG_STRIDE)
        link = vread(tp, mp, cp, tr_base, 2, 0)
        if link < 0:
            return link
        if link & 4:
            return raise_fault(sp, TS_VECTOR, link & 0xFFFC)
        la, lo, hi = _get_desc(sp, tp, mp, cp, link)
        if la == -1:
            return raise_fault(sp, TS_VECTOR, link & 0xFFFC)
        if la < 0:
            return MEM_FAULT
        a = desc_attr(hi)
        t = a & (S.ATTR_S | S.ATTR_TYPE_MASK)
        if t != 0x3 and t != 0xB:  # must be a busy TSS
            return raise_fault(sp, TS_VECTOR, link & 0xFFFC)
        if not (a & S.ATTR_P):
            return raise_fault(sp, NP_VECTOR, link & 0xFFFC)
        # EIP holds the address of the instruction after IRET (see the module docstring)
        r = task_switch(sp, tp, mp, cp, link, la, lo, hi, TASK_IRET, sget(sp, S.EIP), 0)
        if r < 0:
            return r
        if sget(sp, S.EIP) > sget(sp, S.SEGLIMIT + S.CS * S.SEG_STRIDE):
            return raise_fault(sp, GP_VECTOR, 0)
        return 0
    user = 1 if cpl == 3 else 0
    smask = stack_mask(sp)
    esp = sget(sp, S.ESP)
    off = pop_at(sp, tp, mp, cp, user, esp & smask, opsize)
    if off < 0:
        return off
    sel = pop_at(sp, tp, mp, cp, user, (esp + opsize) & smask, opsize)
    if sel < 0:
        return sel
    fl = pop_at(sp, tp, mp, cp, user, (esp + 2 * opsize) & smask, opsize)
    if fl < 0:
        return fl
    sel &= 0xFFFF
    if opsize == 4 and (fl & F.VM) and cpl == 0:
        return _iret_to_v86(sp, tp, mp, cp, esp, smask, off, fl, sel)
    cla, clo, chi = _check_return_cs(sp, tp, mp, cp, sel, cpl)
    if cla < 0:
        return cla
    mask = IRET_BASE_MASK
    iopl = (eflags & F.IOPL_MASK) >> F.IOPL_SHIFT
    if cpl <= iopl:
        mask |= F.IF
    if cpl == 0:
        mask |= F.IOPL_MASK
    if opsize == 2:
        mask &= 0xFFFF
    new_flags = (eflags & ~mask) | (fl & mask)
    rpl = sel & 3
    if rpl == cpl:
        if off > desc_limit(clo, chi):
            return raise_fault(sp, GP_VECTOR, 0)
        r = set_accessed(sp, tp, mp, cp, cla, chi)
        if r < 0:
            return r
        set_sp(sp, esp + 3 * opsize, smask)
        set_eflags(sp, new_flags)
        _commit_cs(sp, sel, clo, chi, cpl, off)
        return 0
    nesp = pop_at(sp, tp, mp, cp, user, (esp + 3 * opsize) & smask, opsize)
    if nesp < 0:
        return nesp
    nss = pop_at(sp, tp, mp, cp, user, (esp + 4 * opsize) & smask, opsize)
    if nss < 0:
        return nss
    return _outer_return(sp, tp, mp, cp, sel, cla, clo, chi, off, nss & 0xFFFF, nesp, new_flags, True)


@njit(cache=True)
def far_jmp(sp, tp, mp, cp, sel, offset, opsize, neip):
    """JMP ptr16:16/32 or JMP m16:16/32."""
    if _real_or_v86(sp):
        if offset > sget(sp, S.SEGLIMIT + S.CS * S.SEG_STRIDE) and (sget(sp, S.EFLAGS) & F.VM) == 0:
            return raise_fault(sp, GP_VECTOR, 0)
        load_seg_real(sp, S.CS, sel)
        sset(sp, S.EIP, offset & (0xFFFF if opsize == 2 else 0xFFFF_FFFF))
        return 0
    return _pm_jmp_call(sp, tp, mp, cp, sel, offset, opsize, neip, False)


@njit(cache=True)
def far_call(sp, tp, mp, cp, sel, offset, opsize, neip):
    """CALL ptr16:16/32 or CALL m16:16/32: push CS and the return offset, then jump."""
    if _real_or_v86(sp):
        user = 1 if sget(sp, S.CPL) == 3 else 0
        smask = stack_mask(sp)
        esp = sget(sp, S.ESP)
        esp = push_at(sp, tp, mp, cp, user, esp, smask, opsize, sget(sp, S.SEGSEL + S.CS * S.SEG_STRIDE))
        if esp < 0:
            return esp
        esp = push_at(sp, tp, mp, cp, user, esp, smask, opsize, neip)
        if esp < 0:
            return esp
        if offset > sget(sp, S.SEGLIMIT + S.CS * S.SEG_STRIDE) and (sget(sp, S.EFLAGS) & F.VM) == 0:
            return raise_fault(sp, GP_VECTOR, 0)
        set_sp(sp, esp, smask)
        load_seg_real(sp, S.CS, sel)
        sset(sp, S.EIP, offset & (0xFFFF if opsize == 2 else 0xFFFF_FFFF))
        return 0
    return _pm_jmp_call(sp, tp, mp, cp, sel, offset, opsize, neip, True)


@njit(cache=True)
def far_ret(sp, tp, mp, cp, opsize, imm):
    """RETF [imm16]: pop the return offset and CS, then release imm bytes of parameters."""
    if _real_or_v86(sp):
        user = 1 if sget(sp, S.CPL) == 3 else 0
        smask = stack_mask(sp)
        esp = sget(sp, S.ESP)
        off = pop_at(sp, tp, mp, cp, user, esp & smask, opsize)
        if off < 0:
            return off
        sel = pop_at(sp, tp, mp, cp, user, (esp + opsize) & smask, opsize)
        if sel < 0:
            return sel
        if off > sget(sp, S.SEGLIMIT + S.CS * S.SEG_STRIDE) and (sget(sp, S.EFLAGS) & F.VM) == 0:
            return raise_fault(sp, GP_VECTOR, 0)
        set_sp(sp, esp + 2 * opsize + imm, smask)
        load_seg_real(sp, S.CS, sel & 0xFFFF)
        sset(sp, S.EIP, off)
        return 0
    return _pm_ret(sp, tp, mp, cp, opsize, imm)


@njit(cache=True)
def iret(sp, tp, mp, cp, opsize):
    """IRET/IRETD. Real mode: pop IP, CS, FLAGS. V86 with IOPL 3: the same (IOPL kept).
    V86 with IOPL < 3: #GP(0). Protected mode: see the SDM's IRET pseudo-code."""
    eflags_now = sget(sp, S.EFLAGS)
    if (sget(sp, S.CR0) & 1) == 0 or (eflags_now & F.VM):
        if (eflags_now & F.VM) and ((eflags_now & F.IOPL_MASK) >> F.IOPL_SHIFT) != 3:
            return raise_fault(sp, GP_VECTOR, 0)
        user = 1 if sget(sp, S.CPL) == 3 else 0
        smask = stack_mask(sp)
        esp = sget(sp, S.ESP)
        off = pop_at(sp, tp, mp, cp, user, esp & smask, opsize)
        if off < 0:
            return off
        sel = pop_at(sp, tp, mp, cp, user, (esp + opsize) & smask, opsize)
        if sel < 0:
            return sel
        fl = pop_at(sp, tp, mp, cp, user, (esp + 2 * opsize) & smask, opsize)
        if fl < 0:
            return fl
        if off > sget(sp, S.SEGLIMIT + S.CS * S.SEG_STRIDE) and (eflags_now & F.VM) == 0:
            return raise_fault(sp, GP_VECTOR, 0)
        set_sp(sp, esp + 3 * opsize, smask)
        mask = popf_mask(sp, opsize)
        if eflags_now & F.VM:
            mask &= ~F.IOPL_MASK
        old = get_eflags(sp)
        set_eflags(sp, (old & ~mask) | (fl & mask))
        load_seg_real(sp, S.CS, sel & 0xFFFF)
        sset(sp, S.EIP, off)
        return 0
    return _pm_iret(sp, tp, mp, cp, opsize)
