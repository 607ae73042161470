"""Exception and interrupt delivery, inside compiled code (SDM Vol 3, chapter 6).

- Real mode (6.? / Vol 3 20.1.4): push FLAGS, CS, IP; clear IF, TF and AC; jump through the
  4-byte vector at IDTR.base + 4 * vector.
- Protected mode (6.12): read the IDT gate (interrupt, trap or task gate: emu/cpu/tasks.py), check it (#GP with the
  IDT error code (vector * 8 + 2 + EXT), #NP), check the target code segment, switch to the inner
  stack from the TSS when the privilege rises (6.12.1, Figure 6-4), push the frame (with the
  error code for vectors 8, 10-14 and 17), clear TF, NT, RF and VM (and IF for an interrupt gate).
  From virtual-8086 mode the frame also holds GS, FS, DS and ES, which are then zeroed.

A fault while delivering becomes #DF; a fault while delivering #DF is a triple fault, which leaves
the loop with EXIT_TRIPLE_FAULT (the machine resets, or exits with -no-reboot).
"""

from __future__ import annotations

from numba import njit

from emu.cpu import flags as F
from emu.cpu import state as S
from emu.cpu.access import GP_VECTOR, push_at, raise_fault, seg_la, set_sp, sget, sset, stack_mask, vread, vwrite
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
from emu.cpu.tasks import TASK_INT, task_switch
from emu.cpu.tracelog import CTX_LOG, EV_INT, log_event
from emu.mmu.softmmu import MEM_FAULT
from emu.rawptr import load_i64

DF_VECTOR = 8
HAS_ERROR_CODE = (1 << 8) | (1 << 10) | (1 << 11) | (1 << 12) | (1 << 13) | (1 << 14) | (1 << 17)
DELIVER_OK = 0
DELIVER_TRIPLE = -3


@njit(cache=True)
def _real_mode(sp, tp, mp, cp, vector, ret_eip):
    ivt = sget(sp, S.IDTR_BASE)
    if vector * 4 + 3 > sget(sp, S.IDTR_LIMIT):
        return raise_fault(sp, GP_VECTOR, vector * 8 + 2)
    target = vread(tp, mp, cp, (ivt + vector * 4) & 0xFFFF_FFFF, 4, 0)
    if target < 0:
        return target
    flags = get_eflags(sp)
    esp = sget(sp, S.ESP)
    ss_base = sget(sp, S.SEGBASE + S.SS * S.SEG_STRIDE)
    cs = sget(sp, S.SEGSEL + S.CS * S.SEG_STRIDE)
    for i in range(3):
        v = flags & 0xFFFF if i == 0 else (cs if i == 1 else ret_eip & 0xFFFF)
        esp = (esp - 2) & 0xFFFF
        r = vwrite(tp, mp, cp, (ss_base + esp) & 0xFFFF_FFFF, 2, v, 0)
        if r < 0:
            return r
    sset(sp, S.ESP, (sget(sp, S.ESP) & 0xFFFF_0000) | esp)
    set_eflags(sp, flags & ~(F.IF | F.TF | F.AC | F.RF))
    load_seg_real(sp, S.CS, (target >> 16) & 0xFFFF)
    sset(sp, S.EIP, target & 0xFFFF)
    return DELIVER_OK


@njit(cache=True)
def _push_frame(sp, tp, mp, cp, ss_base, ss_mask, esp, size, values, n, user):
    """Push values[0..n) at ss_base:esp; returns the new esp or a failure code."""
    for i in range(n):
        esp = (esp - size) & ss_mask
        r = vwrite(tp, mp, cp, (ss_base + esp) & 0xFFFF_FFFF, size, values[i], user)
        if r < 0:
            return r
    return esp


@njit(cache=True)
def _task_gate(sp, tp, mp, cp, tsel, error, ret_eip, ext):
    """An interrupt or exception through a task gate (SDM Vol 2, INT n: TASK-GATE; Vol 3, 6.12.2):
    switch tasks with nesting, then push the error code, if any, on the new task's stack."""
    if tsel & 4:
        return raise_fault(sp, GP_VECTOR, (tsel & 0xFFFC) + ext)
    dla = desc_addr(sp, tsel)
    if dla < 0:
        return raise_fault(sp, GP_VECTOR, (tsel & 0xFFFC) + ext)
    lo, hi = read_desc(sp, tp, mp, cp, dla)
    if lo < 0:
        return MEM_FAULT
    t = desc_attr(hi) & (S.ATTR_S | S.ATTR_TYPE_MASK)
    if t != 0x1 and t != 0x9:  # busy (or not a TSS at all)
        return raise_fault(sp, GP_VECTOR, (tsel & 0xFFFC) + ext)
    if not (hi & 0x8000):
        return raise_fault(sp, NP_VECTOR, (tsel & 0xFFFC) + ext)
    r = task_switch(sp, tp, mp, cp, tsel, dla, lo, hi, TASK_INT, ret_eip, ext)
    if r < 0:
        return r
    if error >= 0:
        size = 4 if (t & 0x8) else 2
        smask = stack_mask(sp)
        user = 1 if sget(sp, S.CPL) == 3 else 0
        nsp = push_at(sp, tp, mp, cp, user, sget(sp, S.ESP), smask, size, error & 0xFFFF_FFFF)
        if nsp < 0:
            if sget(sp, S.FAULT_VECTOR) == 12:
                return raise_fault(sp, 12, ext)
            return nsp
        set_sp(sp, nsp, smask)
    if sget(sp, S.EIP) > sget(sp, S.SEGLIMIT + S.CS * S.SEG_STRIDE):
        return raise_fault(sp, GP_VECTOR, ext)
    return DELIVER_OK


@njit(cache=True)
def _protected_mode(sp, tp, mp, cp, vector, error, ret_eip, soft, ext):
    idt_off = vector * 8
    idt_err = idt_off + 2 + ext
    if idt_off + 7 > sget(sp, S.IDTR_LIMIT):
        return raise_fault(sp, GP_VECTOR, idt_err)
    lo = vread(tp, mp, cp, (sget(sp, S.IDTR_BASE) + idt_off) & 0xFFFF_FFFF, 4, 0)
    if lo < 0:
        return lo
    hi = vread(tp, mp, cp, (sget(sp, S.IDTR_BASE) + idt_off + 4) & 0xFFFF_FFFF, 4, 0)
    if hi < 0:
        return hi
    gtype = (hi >> 8) & 0x1F
    gdpl = (hi >> 13) & 3
    cpl = sget(sp, S.CPL)
    if gtype not in (0x05, 0x06, 0x07, 0x0E, 0x0F):
        return raise_fault(sp, GP_VECTOR, idt_err)
    if soft and gdpl < cpl:
        return raise_fault(sp, GP_VECTOR, idt_err)
    if not (hi & 0x8000):
        return raise_fault(sp, NP_VECTOR, idt_err)
    if gtype == 0x05:
        return _task_gate(sp, tp, mp, cp, (lo >> 16) & 0xFFFF, error, ret_eip, ext)
    gate32 = (gtype & 0x08) != 0
    trap_gate = (gtype & 1) != 0
    sel = (lo >> 16) & 0xFFFF
    offset = (lo & 0xFFFF) | ((hi & 0xFFFF_0000) if gate32 else 0)
    if (sel & 0xFFFC) == 0:
        return raise_fault(sp, GP_VECTOR, ext)
    dla = desc_addr(sp, sel)
    if dla < 0:
        return raise_fault(sp, GP_VECTOR, (sel & 0xFFFC) + ext)
    clo, chi = read_desc(sp, tp, mp, cp, dla)
    if clo < 0:
        return MEM_FAULT
    cattr = desc_attr(chi)
    cdpl = (cattr >> S.ATTR_DPL_SHIFT) & 3
    if (cattr & (S.ATTR_S | S.ATTR_CODE)) != (S.ATTR_S | S.ATTR_CODE) or cdpl > cpl:
        return raise_fault(sp, GP_VECTOR, (sel & 0xFFFC) + ext)
    if not (cattr & S.ATTR_P):
        return raise_fault(sp, NP_VECTOR, (sel & 0xFFFC) + ext)
    conforming = (cattr & S.ATTR_EXPAND_DOWN) != 0
    eflags = get_eflags(sp)
    from_vm = (eflags & F.VM) != 0
    size = 4 if gate32 else 2
    values = [0] * 10
    n = 0
    new_cpl = cpl
    if not conforming and cdpl < cpl:
        # Inner privilege: the new stack comes from the TSS (SDM Vol 3, 7.2.1, Figure 7-2).
        new_cpl = cdpl
        tr_base = sget(sp, S.SEGBASE + S.TR_SEG * S.SEG_STRIDE)
        tr_attr = sget(sp, S.SEGATTR + S.TR_SEG * S.SEG_STRIDE)
        if tr_attr & 0x8:  # 32-bit TSS
            nesp = vread(tp, mp, cp, (tr_base + 4 + 8 * cdpl) & 0xFFFF_FFFF, 4, 0)
            nss = vread(tp, mp, cp, (tr_base + 8 + 8 * cdpl) & 0xFFFF_FFFF, 2, 0)
        else:
            nesp = vread(tp, mp, cp, (tr_base + 2 + 4 * cdpl) & 0xFFFF_FFFF, 2, 0)
            nss = vread(tp, mp, cp, (tr_base + 4 + 4 * cdpl) & 0xFFFF_FFFF, 2, 0)
        if nesp < 0 or nss < 0:
            return MEM_FAULT
        if (nss & 0xFFFC) == 0:
            return raise_fault(sp, TS_VECTOR, ext)
        sla = desc_addr(sp, nss)
        if sla < 0:
            return raise_fault(sp, TS_VECTOR, (nss & 0xFFFC) + ext)
        slo, shi = read_desc(sp, tp, mp, cp, sla)
        if slo < 0:
            return MEM_FAULT
        sattr = desc_attr(shi)
        if ((nss & 3) != cdpl or ((sattr >> S.ATTR_DPL_SHIFT) & 3) != cdpl
                or (sattr & (S.ATTR_S | S.ATTR_CODE | S.ATTR_WRITABLE)) != (S.ATTR_S | S.ATTR_WRITABLE)):
            return raise_fault(sp, TS_VECTOR, (nss & 0xFFFC) + ext)
        if not (sattr & S.ATTR_P):
            return raise_fault(sp, 12, (nss & 0xFFFC) + ext)
        if from_vm:
            if cdpl != 0:
                return raise_fault(sp, GP_VECTOR, (sel & 0xFFFC) + ext)
            for seg in (S.GS, S.FS, S.DS, S.ES):
                values[n] = sget(sp, S.SEGSEL + seg * S.SEG_STRIDE)
                n += 1
        values[n] = sget(sp, S.SEGSEL + S.SS * S.SEG_STRIDE)
        values[n + 1] = sget(sp, S.ESP)
        n += 2
        ss_base = desc_base(slo, shi)
        ss_mask = 0xFFFF_FFFF if (sattr & S.ATTR_DB) else 0xFFFF
        esp = nesp
    else:
        if from_vm:
            return raise_fault(sp, GP_VECTOR, (sel & 0xFFFC) + ext)
        ss_base = sget(sp, S.SEGBASE + S.SS * S.SEG_STRIDE)
        ss_mask = 0xFFFF_FFFF if (sget(sp, S.SEGATTR + S.SS * S.SEG_STRIDE) & S.ATTR_DB) else 0xFFFF
        esp = sget(sp, S.ESP)
        sattr = 0
        slo = 0
        shi = 0
        nss = 0
    values[n] = eflags
    values[n + 1] = sget(sp, S.SEGSEL + S.CS * S.SEG_STRIDE)
    values[n + 2] = ret_eip
    n += 3
    if error >= 0:
        values[n] = error
        n += 1
    if size == 2:
        for i in range(n):
            values[i] &= 0xFFFF
    nesp = _push_frame(sp, tp, mp, cp, ss_base, ss_mask, esp, size, values, n, 0)
    if nesp < 0:
        return nesp
    r = set_accessed(sp, tp, mp, cp, dla, chi)
    if r < 0:
        return r
    # Commit: nothing above changed the architectural state.
    if new_cpl != cpl:
        if from_vm:
            for seg in (S.ES, S.DS, S.FS, S.GS):
                set_seg_cache(sp, seg, 0, 0, 0, 0)
        sset(sp, S.CPL, new_cpl)
        set_eflags(sp, eflags & ~F.VM)
        set_seg_cache(sp, S.SS, nss, desc_base(slo, shi), desc_limit(slo, shi), sattr | 1)
    if ss_mask == 0xFFFF:
        sset(sp, S.ESP, (sget(sp, S.ESP) & 0xFFFF_0000) | (nesp & 0xFFFF) if new_cpl == cpl else nesp)
    else:
        sset(sp, S.ESP, nesp)
    set_seg_cache(sp, S.CS, (sel & 0xFFFC) | new_cpl, desc_base(clo, chi), desc_limit(clo, chi), cattr | 1)
    clear = F.TF | F.NT | F.RF | F.VM
    if not trap_gate:
        clear |= F.IF
    set_eflags(sp, eflags & ~clear)
    sset(sp, S.EIP, offset)
    update_hflags(sp)
    return DELIVER_OK


@njit(cache=True)
def deliver(sp, tp, mp, cp, vector, error, ret_eip, soft):
    """Deliver `vector` (error code `error`, or -1 for none), returning to `ret_eip`.

    soft: INT n / INT3 / INTO (privilege-checked against the gate's DPL, no error code).
    Escalates to #DF and then a triple fault as the SDM's Table 6-5 says.
    Returns DELIVER_OK, DELIVER_TRIPLE, or -2 when the loop must exit (unimplemented path).
    """
    ext = 0 if soft else 1
    depth = 0
    if sget(sp, S.LOG_MASK) & S.LOG_INT:
        cs = sget(sp, S.SEGSEL + S.CS * S.SEG_STRIDE)
        if log_event(load_i64(cp + CTX_LOG * 8), sp, EV_INT, vector | (256 if soft else 0), error, ret_eip, cs):
            sset(sp, S.EXIT_REASON, S.EXIT_LOG)
    while True:
        sset(sp, S.FAULT_VECTOR, -1)
        if sget(sp, S.CR0) & 1:
            err = error if (HAS_ERROR_CODE >> vector) & 1 and not soft else -1
            r = _protected_mode(sp, tp, mp, cp, vector, err, ret_eip, soft, ext)
        else:
            r = _real_mode(sp, tp, mp, cp, vector, ret_eip)
        if r >= 0 or r == -2 and sget(sp, S.EXIT_REASON) != 0:
            return r
        # delivery faulted
        nv = sget(sp, S.FAULT_VECTOR)
        if nv < 0:
            return -2
        if vector == DF_VECTOR or depth >= 2:
            sset(sp, S.EXIT_REASON, S.EXIT_TRIPLE_FAULT)
            return DELIVER_TRIPLE
        contributory_first = vector == 0 or (10 <= vector <= 13)
        contributory_second = nv == 0 or (10 <= nv <= 13)
        page_fault_first = vector == 14 and (contributory_second or nv == 14)
        if (contributory_first and contributory_second) or page_fault_first:
            vector = DF_VECTOR
            error = 0
        else:
            vector = nv
            error = sget(sp, S.FAULT_ERROR)
        soft = False
        ext = 1
        depth += 1


__all__ = ["deliver", "DELIVER_OK", "DELIVER_TRIPLE", "seg_la"]
