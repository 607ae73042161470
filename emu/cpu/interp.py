"""The compiled main loop (tier 0): find blocks, run their rows, chain, and leave only with a reason.

`run` is the one entry point (execution.md, "one entry point, explicit exits"). Each turn:

1. stop if an exit reason is pending, the instruction budget is spent, or an interrupt can be taken
   (INTR_LINE with EFLAGS.IF and no interrupt shadow): Python acknowledges the PIC and calls
   `deliver_external`, then `run` again;
2. find the block for CS:EIP: linear → physical through the execute TLB, then the 2-way table keyed
   by (physical PC, HFLAGS); a miss translates in place, without leaving compiled code;
3. run its rows; a handler that faults restores the precise EIP of its instruction and the loop
   delivers the exception (emu/cpu/interrupts.py); a block that ends in a direct jump remembers
   its successor (chaining), so the next turn skips the lookup when the successor is still valid
   and on the same physical page.

Every array argument is touched only here; helpers get raw addresses (execution.md, rule 1).
"""

from __future__ import annotations

from numba import njit

from emu import stats as K
from emu.cpu import alu as A
from emu.cpu import flags as F
from emu.cpu import handlers as H
from emu.cpu import state as S
from emu.cpu.access import (
    effective_address,
    pop_at,
    push_at,
    raise_fault,
    rget,
    rset,
    seg_la,
    seg_read,
    set_sp,
    vprobe_write,
    vread,
    vwrite,
)
from emu.cpu.eflags import get_cf, get_eflags, popf_mask, set_eflags, set_status
from emu.cpu.far import far_call, far_jmp, far_ret, iret
from emu.cpu.fpu import fpu_insn, fpu_wait
from emu.cpu.interrupts import DELIVER_TRIPLE, deliver
from emu.cpu.scalar_dispatch import exec_scalar
from emu.cpu.segments import load_seg, update_hflags
from emu.cpu.strings import string_op
from emu.cpu.sysops import SYS_END_BLOCK
from emu.cpu.system import system_insn
from emu.cpu.tracelog import CTX_LOG, EV_EXEC, EV_TB, EV_UNIMP, UNIMP_FETCH, log_event
from emu.mmu.softmmu import CTX_PMAP, MEM_EXIT
from emu.mmu.softmmu import translate as mmu_translate
from emu.mmu.tlb import (
    ACC_EXEC,
    TE_PHYS,
    TEF_PPN_MASK,
    TLB_BITS,
    TLB_INDEX_MASK,
    TLB_STRIDE,
    tlb_flush_phys_writes,
)
from emu.rawptr import call_block_fn, load_i64, store_i64
from emu.translate.blockcache import (
    BC_PAGEHEAD_PTR,
    BC_T1_QLEN,
    BC_T1_QUEUE,
    BC_T1_THRESHOLD,
    T1_QMAX,
    TABLE_WAYS,
    TB_BYTES,
    TB_EXECS,
    TB_FN,
    TB_FN_NONE,
    TB_FN_QUEUED,
    TB_HFLAGS,
    TB_NEXT0,
    TB_NROWS,
    TB_PAGE1,
    TB_PHYS,
    TB_ROW,
    TB_WIDTH,
    flush_all,
    table_set,
)
from emu.translate.rowfmt import (
    R_ASIZE,
    R_AUX,
    R_BASE,
    R_DISP,
    R_DST,
    R_H,
    R_IMM,
    R_IMM2,
    R_INDEX,
    R_LEN,
    R_OFF,
    R_SCALE,
    R_SEG,
    R_SIZE,
    R_SRC,
    R_X,
    RM_MEM,
    ROW_WIDTH,
    X_MEM,
    X_REP_MASK,
    X_SIZE2_SHIFT,
)
from emu.translate.tier1_abi import T1_CHAIN, T1_ENDED, T1_ROWS_MASK, T1_TB_MASK, T1_TB_SHIFT, T1_WAY_SHIFT
from emu.translate.translator import (
    NEXT_UNKNOWN,
    TR_FETCH_FAULT,
    TR_FULL,
    TR_NEED_NEXT,
    translate_block,
)

# An exception takes guest time like an instruction: a guest caught in a loop of faults (say, a #PF
# on its own handler's first byte) still spends its budget, so timers fire and Python regains
# control (Ctrl-C, --timeout) instead of the compiled loop spinning forever.
EXCEPTION_COST = 1
DB_VECTOR = 1
DR6_BS = 1 << 14  # DR6: the #DB came from single-stepping
UD_VECTOR = 6
NM_VECTOR = 7
GP_VECTOR = 13
BR_VECTOR = 5
DE_VECTOR = 0
REP_SLICE = 4096  # REP iterations between checks for timers and interrupts

# A handler's result, besides negative failure codes.
NEXT = 0  # fall through to the next row
JUMP = 1  # EIP was set: the block ends (exit index in `way`)
STOP = 2  # leave the loop after this instruction (EXIT_REASON set, EIP set)
RESTART = 3  # leave the loop without retiring (EXIT_REASON set; EIP stays on the instruction)


@njit(cache=True)
def _mask(size):
    return (1 << (8 * size)) - 1


@njit(cache=True)
def _set_cc(sp, o, d, s, s2):
    p = sp + S.CC_OP * 8
    store_i64(p, o)
    store_i64(p + 8, d)
    store_i64(p + 16, s)
    store_i64(p + 24, s2)


@njit(cache=True)
def _cond(sp, cc):
    return F.cond(cc, load_i64(sp + S.CC_OP * 8), load_i64(sp + S.CC_DST * 8), load_i64(sp + S.CC_SRC * 8),
                  load_i64(sp + S.CC_SRC2 * 8))


@njit(cache=True)
def deliver_external(st, tlb, mem, ctx, vector):
    """Deliver an external interrupt (vector from the PIC's INTA cycle) at the current EIP."""
    sp = st.ctypes.data
    st[S.HALTED] = 0
    r = deliver(sp, tlb.ctypes.data, mem.ctypes.data, ctx.ctypes.data, vector, -1, st[S.EIP], False)
    return r


@njit(cache=True, nogil=True)
def run(st, mem, tlb, ctx, stats, rows, tbs, table, bc, dec_out, form_h, form_aux, ends_block):
    """Run guest code until an exit; returns the exit reason (also left in EXIT_REASON)."""
    sp = st.ctypes.data
    tp = tlb.ctypes.data
    mp = mem.ctypes.data
    cp = ctx.ctypes.data
    bcp = bc.ctypes.data
    ntb_slots = len(tbs) // TB_WIDTH
    prev_tb = -1
    prev_way = 0
    st[S.EXIT_REASON] = S.EXIT_NONE
    while True:
        # ---- 1. reasons to stop before the next block
        if st[S.EXIT_REASON] != S.EXIT_NONE:
            return st[S.EXIT_REASON]
        if st[S.BUDGET] <= 0:
            st[S.EXIT_REASON] = S.EXIT_BUDGET
            stats[K.EXIT_BUDGET] += 1
            return S.EXIT_BUDGET
        shadow = st[S.INHIBIT_IRQ] != 0
        if shadow:
            st[S.INHIBIT_IRQ] = 0
        elif st[S.INTR_LINE] and (st[S.EFLAGS] & F.IF):
            st[S.EXIT_REASON] = S.EXIT_IRQ
            stats[K.EXIT_IRQ] += 1
            return S.EXIT_IRQ
        # ---- 2. find the block
        hfl = st[S.HFLAGS]
        user = 1 if (hfl & 3) == 3 else 0
        eip = st[S.EIP]
        la = (st[S.SEGBASE + S.CS * S.SEG_STRIDE] + eip) & 0xFFFF_FFFF
        p = tp + (((ACC_EXEC << TLB_BITS) + ((la >> 12) & TLB_INDEX_MASK)) * TLB_STRIDE) * 8
        if load_i64(p) == ((la & 0xFFFF_F000) | user):
            phys = ((load_i64(p + TE_PHYS * 8) & TEF_PPN_MASK) << 12) | (la & 0xFFF)
            stats[K.TLB_HITS] += 1
        else:
            host = mmu_translate(cp, la, ACC_EXEC, user)
            if host < 0:
                if host == -1:  # fault on the fetch
                    st[S.BUDGET] -= EXCEPTION_COST
                    st[S.ICOUNT] += EXCEPTION_COST
                    r = deliver(sp, tp, mp, cp, st[S.FAULT_VECTOR], st[S.FAULT_ERROR], eip, False)
                    if r == DELIVER_TRIPLE:
                        return S.EXIT_TRIPLE_FAULT
                    prev_tb = -1
                    continue
                # Executing from open bus (all-ones: FF FF is an invalid encoding) or from a
                # device's memory: #UD in the guest, never an end of the emulator.
                if st[S.LOG_MASK] & S.LOG_UNIMP:
                    if log_event(ctx[CTX_LOG], sp, EV_UNIMP, UNIMP_FETCH, la, eip,
                                 st[S.SEGSEL + S.CS * S.SEG_STRIDE]):
                        st[S.EXIT_REASON] = S.EXIT_LOG
                stats[K.EXCEPTIONS] += 1
                st[S.BUDGET] -= EXCEPTION_COST
                st[S.ICOUNT] += EXCEPTION_COST
                st[S.FAULT_VECTOR] = -1
                r = deliver(sp, tp, mp, cp, UD_VECTOR, -1, eip, False)
                if r == DELIVER_TRIPLE:
                    return S.EXIT_TRIPLE_FAULT
                prev_tb = -1
                continue
            phys = ((load_i64(p + TE_PHYS * 8) & TEF_PPN_MASK) << 12) | (la & 0xFFF)
        tb = -1
        stats[K.LOOKUPS] += 1
        if prev_tb >= 0:
            cand = tbs[prev_tb * TB_WIDTH + TB_NEXT0 + prev_way]
            if cand >= 0 and tbs[cand * TB_WIDTH + TB_PHYS] == phys and tbs[cand * TB_WIDTH + TB_HFLAGS] == hfl:
                tb = cand
                stats[K.CHAINED] += 1
        if tb < 0:
            s = table_set(phys, hfl)
            c0 = table[s]
            if c0 >= 0 and tbs[c0 * TB_WIDTH + TB_PHYS] == phys and tbs[c0 * TB_WIDTH + TB_HFLAGS] == hfl:
                tb = c0
                stats[K.LOOKUP_FAST_HITS] += 1
            else:
                c1 = table[s + 1]
                if c1 >= 0 and tbs[c1 * TB_WIDTH + TB_PHYS] == phys and tbs[c1 * TB_WIDTH + TB_HFLAGS] == hfl:
                    tb = c1
                    table[s + 1] = c0  # most recent first
                    table[s] = c1
                    stats[K.LOOKUP_SLOW_HITS] += 1
            if tb < 0:
                stats[K.LOOKUP_MISSES] += 1
                entry_ppn = phys >> 12
                pmap_entry = load_i64(ctx[CTX_PMAP] + (entry_ppn & 0xFFFFF) * 8)
                host = (pmap_entry & ~0xFFF) + (phys & 0xFFF)
                page_end = (pmap_entry & ~0xFFF) + 0x1000
                next_host = NEXT_UNKNOWN
                next_ppn = -1
                while True:
                    tb = translate_block(mem, dec_out, rows, tbs, bc, bcp, host, phys, page_end, next_host,
                                         next_ppn, (hfl & S.HF_CS32) != 0, hfl, eip,
                                         st[S.SEGBASE + S.CS * S.SEG_STRIDE], form_h, form_aux, ends_block)
                    if tb == TR_NEED_NEXT:
                        nla = ((la & 0xFFFF_F000) + 0x1000) & 0xFFFF_FFFF
                        nh = mmu_translate(cp, nla, ACC_EXEC, user)
                        if nh < 0:
                            next_host = -1
                        else:
                            q = tp + (((ACC_EXEC << TLB_BITS) + ((nla >> 12) & TLB_INDEX_MASK)) * TLB_STRIDE) * 8
                            next_host = nh - (nh & 0xFFF)
                            next_ppn = load_i64(q + TE_PHYS * 8) & TEF_PPN_MASK
                        continue
                    if tb == TR_FULL:
                        flush_all(bcp, ntb_slots)
                        stats[K.TB_FLUSHES] += 1
                        prev_tb = -1
                        continue
                    break
                if tb == TR_FETCH_FAULT:
                    if st[S.FAULT_VECTOR] < 0:
                        st[S.FAULT_VECTOR] = 14
                    st[S.BUDGET] -= EXCEPTION_COST
                    st[S.ICOUNT] += EXCEPTION_COST
                    r = deliver(sp, tp, mp, cp, st[S.FAULT_VECTOR], st[S.FAULT_ERROR], eip, False)
                    if r == DELIVER_TRIPLE:
                        return S.EXIT_TRIPLE_FAULT
                    prev_tb = -1
                    continue
                if st[S.LOG_MASK] & S.LOG_IN_ASM:
                    if log_event(ctx[CTX_LOG], sp, EV_TB, tb, phys, eip, hfl):
                        st[S.EXIT_REASON] = S.EXIT_LOG
                # a fresh block's page now holds code: writes to it must take the slow path
                stats[K.TB_TRANSLATED] += 1
                stats[K.TB_INSNS] += tbs[tb * TB_WIDTH + TB_NROWS]
                tlb_flush_phys_writes(tp, phys >> 12)
                if tbs[tb * TB_WIDTH + TB_PAGE1] >= 0:  # its tail's page, too
                    tlb_flush_phys_writes(tp, tbs[tb * TB_WIDTH + TB_PAGE1])
                table[s + 1] = table[s]
                table[s] = tb
            if prev_tb >= 0 and tbs[prev_tb * TB_WIDTH + TB_PHYS] >= 0 and \
                    (tbs[prev_tb * TB_WIDTH + TB_PHYS] >> 12) == (phys >> 12):
                tbs[prev_tb * TB_WIDTH + TB_NEXT0 + prev_way] = tb  # chain (same physical page only)
                stats[K.CHAIN_LINKS] += 1
        # ---- 3. run the rows
        if st[S.LOG_MASK] & (S.LOG_EXEC | S.LOG_CPU):
            if st[S.LOG_MASK] & S.LOG_CPU:
                if st[S.LOG_ACK] == 0:  # leave so Python can dump the registers, then run it
                    st[S.LOG_ACK] = 1
                    st[S.EXIT_REASON] = S.EXIT_LOG
                    return S.EXIT_LOG
                st[S.LOG_ACK] = 0
            if st[S.LOG_MASK] & S.LOG_EXEC:
                if log_event(ctx[CTX_LOG], sp, EV_EXEC, tb, phys, eip, st[S.SEGBASE + S.CS * S.SEG_STRIDE]):
                    st[S.EXIT_REASON] = S.EXIT_LOG
        execs = tbs[tb * TB_WIDTH + TB_EXECS] + 1
        tbs[tb * TB_WIDTH + TB_EXECS] = execs
        row0 = tbs[tb * TB_WIDTH + TB_ROW]
        nrows = tbs[tb * TB_WIDTH + TB_NROWS]
        beip = eip
        ipmask = 0xFFFF_FFFF if (hfl & S.HF_CS32) else 0xFFFF
        done = 0
        prev_tb = -1
        prev_way = 0
        smask = 0xFFFF_FFFF if (hfl & S.HF_SS32) else 0xFFFF
        ended = False
        limit = st[S.BUDGET]  # never retire more than the budget: single steps and icount are exact
        tf = st[S.EFLAGS] & F.TF
        if tf and limit > 1:
            limit = 1  # EFLAGS.TF: one instruction, then the single-step trap
        if shadow and limit > 1:
            # The instruction after STI (or MOV/POP SS) runs alone, so that an interrupt can be
            # taken right after it (SDM Vol 3, 6.8.3): `STI; NOP; CLI` opens a one-instruction
            # window that a block running on to the CLI would never show to step 1.
            limit = 1
        h = H.H_NOP
        # ---- tier 1: a compiled prefix of the block (emu/translate/tier1.py)
        fn = tbs[tb * TB_WIDTH + TB_FN]
        if fn > 0:
            if nrows <= limit and tf == 0 and not shadow and (st[S.LOG_MASK] & (S.LOG_EXEC | S.LOG_CPU)) == 0:
                r1 = call_block_fn(fn, sp, cp, 0)
                last = (r1 >> T1_TB_SHIFT) & T1_TB_MASK
                if last != tb:  # it chained into compiled successors: go on with the last one
                    tb = last
                    row0 = tbs[tb * TB_WIDTH + TB_ROW]
                    nrows = tbs[tb * TB_WIDTH + TB_NROWS]
                    limit = st[S.BUDGET]  # what is left after the blocks compiled code counted
                done = r1 & T1_ROWS_MASK
                stats[K.TIER1_ENTRIES] += 1
                stats[K.COMPILED_INSNS] += done
                if r1 & T1_ENDED:
                    ended = True
                    h = H.H_JCC  # for the single-step check below: not an INT
                    if r1 & T1_CHAIN:
                        prev_tb = tb
                        prev_way = (r1 >> T1_WAY_SHIFT) & 1
                else:
                    beip = st[S.EIP]  # the last block's start: its remaining rows are interpreted
                    if done < nrows:
                        stats[K.TIER1_BAILS] += 1
        elif fn == TB_FN_NONE and execs >= bc[BC_T1_THRESHOLD] and bc[BC_T1_THRESHOLD] > 0:
            q = bc[BC_T1_QLEN]
            if q < T1_QMAX:
                bc[BC_T1_QUEUE + q] = tb
                bc[BC_T1_QLEN] = q + 1
                tbs[tb * TB_WIDTH + TB_FN] = TB_FN_QUEUED
        for i in range(nrows if ended else done, nrows):
            rb = (row0 + i) * ROW_WIDTH
            if i >= limit:
                st[S.EIP] = (beip + rows[rb + R_OFF]) & ipmask
                ended = True
                break
            h = rows[rb + R_H]
            size = rows[rb + R_SIZE]
            dst = rows[rb + R_DST]
            src = rows[rb + R_SRC]
            aux = rows[rb + R_AUX]
            imm = rows[rb + R_IMM]
            x = rows[rb + R_X]
            seg = rows[rb + R_SEG]
            ieip = (beip + rows[rb + R_OFF]) & ipmask
            neip = (ieip + rows[rb + R_LEN]) & ipmask
            ea = 0
            if x & X_MEM:
                ea = effective_address(sp, rows[rb + R_BASE], rows[rb + R_INDEX], rows[rb + R_SCALE],
                                       rows[rb + R_DISP], rows[rb + R_ASIZE])
            res = NEXT
            fail = 0
            # ------------------------------------------------------------------ handlers
            if h == H.H_MOV:
                if src >= 0:
                    v = rget(sp, src, size)
                elif src == RM_MEM:
                    v = seg_read(sp, tp, mp, cp, seg, ea, size, user)
                else:
                    v = imm & _mask(size)
                if v < 0:
                    fail = v
                elif dst >= 0:
                    rset(sp, dst, size, v)
                else:
                    la = seg_la(sp, seg, ea, size, True)
                    fail = la if la < 0 else vwrite(tp, mp, cp, la, size, v, user)
            elif h == H.H_ALU:
                la = 0
                if dst >= 0:
                    a = rget(sp, dst, size)
                else:
                    la = seg_la(sp, seg, ea, size, aux != 7 and aux != 8)
                    a = la if la < 0 else vread(tp, mp, cp, la, size, user)
                if src >= 0:
                    b = rget(sp, src, size)
                elif src == RM_MEM:
                    lb = seg_la(sp, seg, ea, size, False)
                    b = lb if lb < 0 else vread(tp, mp, cp, lb, size, user)
                else:
                    b = imm & _mask(size)
                if a < 0:
                    fail = a
                elif b < 0:
                    fail = b
                else:
                    cf = 0
                    if aux == 2 or aux == 3:
                        cf = get_cf(sp)
                    if aux == 8:
                        r, o, d, s_, s2 = A.and_(a, b, size)
                    else:
                        r, o, d, s_, s2 = A.alu(aux, a, b, size, cf)
                    if aux != 7 and aux != 8:
                        if dst >= 0:
                            rset(sp, dst, size, r)
                        else:
                            fail = vwrite(tp, mp, cp, la, size, r, user)
                    if fail >= 0:
                        _set_cc(sp, o, d, s_, s2)
            elif h == H.H_JCC:
                if _cond(sp, aux):
                    st[S.EIP] = (neip + imm) & (0xFFFF if size == 2 else 0xFFFF_FFFF)
                    prev_way = 0
                else:
                    st[S.EIP] = neip
                    prev_way = 1
                res = JUMP
            elif h == H.H_UNARY:
                la = 0
                if dst >= 0:
                    a = rget(sp, dst, size)
                else:
                    la = seg_la(sp, seg, ea, size, True)
                    a = la if la < 0 else vread(tp, mp, cp, la, size, user)
                if a < 0:
                    fail = a
                else:
                    if aux == 0:
                        r, o, d, s_, s2 = A.inc(a, size, get_cf(sp))
                    elif aux == 1:
                        r, o, d, s_, s2 = A.dec(a, size, get_cf(sp))
                    elif aux == 2:
                        r = A.not_(a, size)
                        o, d, s_, s2 = st[S.CC_OP], st[S.CC_DST], st[S.CC_SRC], st[S.CC_SRC2]
                    else:
                        r, o, d, s_, s2 = A.neg(a, size)
                    if dst >= 0:
                        rset(sp, dst, size, r)
                    else:
                        fail = vwrite(tp, mp, cp, la, size, r, user)
                    if fail >= 0:
                        _set_cc(sp, o, d, s_, s2)
            elif h == H.H_PUSH:
                if dst >= 0:
                    v = rget(sp, dst, size)
                elif dst == RM_MEM:
                    v = seg_read(sp, tp, mp, cp, seg, ea, size, user)
                else:
                    v = imm & _mask(size)
                if v < 0:
                    fail = v
                else:
                    nsp = push_at(sp, tp, mp, cp, user, st[S.ESP], smask, size, v)
                    if nsp < 0:
                        fail = nsp
                    else:
                        set_sp(sp, nsp, smask)
            elif h == H.H_POP:
                osp = st[S.ESP]
                v = pop_at(sp, tp, mp, cp, user, osp & smask, size)
                if v < 0:
                    fail = v
                else:
                    set_sp(sp, osp + size, smask)
                    if dst >= 0:
                        rset(sp, dst, size, v)
                    else:
                        # the address is computed after ESP is incremented (SDM POP)
                        ea = effective_address(sp, rows[rb + R_BASE], rows[rb + R_INDEX], rows[rb + R_SCALE],
                                               rows[rb + R_DISP], rows[rb + R_ASIZE])
                        la = seg_la(sp, seg, ea, size, True)
                        fail = la if la < 0 else vwrite(tp, mp, cp, la, size, v, user)
                        if fail < 0:
                            st[S.ESP] = osp
            elif h == H.H_JMP_REL:
                st[S.EIP] = (neip + imm) & (0xFFFF if size == 2 else 0xFFFF_FFFF)
                res = JUMP
            elif h == H.H_CALL_REL:
                nsp = push_at(sp, tp, mp, cp, user, st[S.ESP], smask, size, neip)
                if nsp < 0:
                    fail = nsp
                else:
                    set_sp(sp, nsp, smask)
                    st[S.EIP] = (neip + imm) & (0xFFFF if size == 2 else 0xFFFF_FFFF)
                    res = JUMP
            elif h == H.H_RET:
                osp = st[S.ESP]
                v = pop_at(sp, tp, mp, cp, user, osp & smask, size)
                if v < 0:
                    fail = v
                else:
                    set_sp(sp, osp + size + (imm & 0xFFFF), smask)
                    st[S.EIP] = v
                    res = JUMP
            elif h == H.H_LEA:
                rset(sp, dst, size, ea)
            elif h == H.H_MOVX:
                size2 = (x >> X_SIZE2_SHIFT) & 0xFF
                if src >= 0:
                    v = rget(sp, src, size2)
                else:
                    v = seg_read(sp, tp, mp, cp, seg, ea, size2, user)
                if v < 0:
                    fail = v
                else:
                    if aux == 1:
                        v = A.sign_extend(v, size2 * 8) & _mask(size)
                    rset(sp, dst, size, v)
            elif h == H.H_XCHG:
                a = rget(sp, src, size)
                if dst >= 0:
                    b = rget(sp, dst, size)
                    rset(sp, dst, size, a)
                    rset(sp, src, size, b)
                else:
                    la = seg_la(sp, seg, ea, size, True)
                    b = la if la < 0 else vread(tp, mp, cp, la, size, user)
                    if b < 0:
                        fail = b
                    else:
                        fail = vwrite(tp, mp, cp, la, size, a, user)
                        if fail >= 0:
                            rset(sp, src, size, b)
            elif h == H.H_SHIFT or h == H.H_SHXD:
                la = 0
                if dst >= 0:
                    a = rget(sp, dst, size)
                else:
                    la = seg_la(sp, seg, ea, size, True)
                    a = la if la < 0 else vread(tp, mp, cp, la, size, user)
                count = rget(sp, 1, 1) if imm < 0 else imm
                if a < 0:
                    fail = a
                else:
                    o, d, s_, s2 = st[S.CC_OP], st[S.CC_DST], st[S.CC_SRC], st[S.CC_SRC2]
                    if h == H.H_SHIFT:
                        r, o, d, s_, s2 = A.shift(aux, a, count, size, o, d, s_, s2)
                    elif aux == 0:
                        r, o, d, s_, s2 = A.shld(a, rget(sp, src, size), count, size, o, d, s_, s2)
                    else:
                        r, o, d, s_, s2 = A.shrd(a, rget(sp, src, size), count, size, o, d, s_, s2)
                    if (count & 31) != 0:
                        if dst >= 0:
                            rset(sp, dst, size, r)
                        else:
                            fail = vwrite(tp, mp, cp, la, size, r, user)
                        if fail >= 0:
                            _set_cc(sp, o, d, s_, s2)
            elif h == H.H_IMUL2:
                if src >= 0:
                    b = rget(sp, src, size)
                else:
                    b = seg_read(sp, tp, mp, cp, seg, ea, size, user)
                if b < 0:
                    fail = b
                else:
                    if aux == 1:
                        a = b
                        b = imm & _mask(size)
                    else:
                        a = rget(sp, dst, size)
                    r, o, d, s_, s2 = A.imul_trunc(a, b, size)
                    rset(sp, dst, size, r)
                    _set_cc(sp, o, d, s_, s2)
            elif h == H.H_NOP:
                pass
            elif h == H.H_CMOVCC:
                if src >= 0:
                    v = rget(sp, src, size)
                else:
                    v = seg_read(sp, tp, mp, cp, seg, ea, size, user)
                if v < 0:
                    fail = v
                elif _cond(sp, aux):
                    rset(sp, dst, size, v)
                elif size == 4:
                    rset(sp, dst, 4, rget(sp, dst, 4))  # a 32-bit CMOV writes its destination either way
            elif h == H.H_SETCC:
                v = 1 if _cond(sp, aux) else 0
                if dst >= 0:
                    rset(sp, dst, 1, v)
                else:
                    la = seg_la(sp, seg, ea, 1, True)
                    fail = la if la < 0 else vwrite(tp, mp, cp, la, 1, v, user)
            elif h == H.H_STRING:
                rep = x & X_REP_MASK
                asz = rows[rb + R_ASIZE]
                if aux <= 4:
                    # a slice never runs past the budget (each paused iteration counts as one): a
                    # single step (gdb, TF) runs one iteration, as on the CPU, and -icount stays exact
                    n = string_op(sp, tp, mp, cp, user, aux, size, asz, seg, rep, min(REP_SLICE, limit - i))
                    if n <= -100:
                        # A long REP paused after a slice: it has not retired, but the time it
                        # took counts, so timers and interrupts get their turn in the middle.
                        st[S.ICOUNT] += -100 - n
                        st[S.BUDGET] -= -100 - n
                        res = RESTART
                    elif n < 0:
                        fail = n
                else:
                    res = _string_io(st, sp, tp, mp, cp, user, aux, size, asz, seg, rep, ieip, neip)
                    if res < 0:
                        fail = res
                        res = NEXT
            elif h == H.H_JMP_IND or h == H.H_CALL_IND:
                if dst >= 0:
                    v = rget(sp, dst, size)
                else:
                    v = seg_read(sp, tp, mp, cp, seg, ea, size, user)
                if v < 0:
                    fail = v
                elif h == H.H_JMP_IND:
                    st[S.EIP] = v
                    res = JUMP
                else:
                    nsp = push_at(sp, tp, mp, cp, user, st[S.ESP], smask, size, neip)
                    if nsp < 0:
                        fail = nsp
                    else:
                        set_sp(sp, nsp, smask)
                        st[S.EIP] = v
                        res = JUMP
            elif h == H.H_LOOP:
                asz = rows[rb + R_ASIZE]
                cmask = 0xFFFF if asz == 2 else 0xFFFF_FFFF
                c = st[S.ECX] & cmask
                if aux != 3:
                    c = (c - 1) & cmask
                    rset(sp, 1, asz, c)
                    take = c != 0
                    if aux == 0:
                        take = take and not _cond(sp, F.CC_Z)
                    elif aux == 1:
                        take = take and _cond(sp, F.CC_Z)
                else:
                    take = c == 0
                if take:
                    st[S.EIP] = (neip + imm) & (0xFFFF if size == 2 else 0xFFFF_FFFF)
                    prev_way = 0
                else:
                    st[S.EIP] = neip
                    prev_way = 1
                res = JUMP
            elif h == H.H_CBW:
                if size == 2:
                    rset(sp, 0, 2, A.sign_extend(rget(sp, 0, 1), 8) & 0xFFFF)
                else:
                    rset(sp, 0, 4, A.sign_extend(rget(sp, 0, 2), 16) & 0xFFFF_FFFF)
            elif h == H.H_CWD:
                a = rget(sp, 0, size)
                rset(sp, 2, size, _mask(size) if a >> (size * 8 - 1) else 0)
            else:  # the rarer families run in a function of their own (compile time)
                res, fail = exec_cold(st, stats, sp, tp, mp, cp, h, size, dst, src, aux, imm,
                                      rows[rb + R_IMM2], x, seg, ea, rows[rb + R_ASIZE], ieip, neip,
                                      smask, user, hfl, done)
            # ------------------------------------------------------------------ after the row
            if fail < 0:
                # The instruction did not retire: restore its EIP, then leave for Python (a device
                # read) or deliver the exception it raised.
                st[S.EIP] = ieip
                if fail == MEM_EXIT or st[S.EXIT_REASON] != S.EXIT_NONE:
                    if st[S.EXIT_REASON] == S.EXIT_MMIO_READ:
                        stats[K.EXIT_MMIO] += 1
                else:
                    stats[K.EXCEPTIONS] += 1
                    st[S.BUDGET] -= EXCEPTION_COST
                    st[S.ICOUNT] += EXCEPTION_COST
                    deliver(sp, tp, mp, cp, st[S.FAULT_VECTOR], st[S.FAULT_ERROR], ieip, False)
                ended = True
                break
            done += 1
            if res == NEXT:
                if st[S.STOP_AFTER_INSN]:
                    st[S.STOP_AFTER_INSN] = 0
                    st[S.EIP] = neip
                    ended = True
                    break
                continue
            ended = True
            if res == RESTART:
                done -= 1
                st[S.EIP] = ieip
                break
            if res == STOP:
                break
            # JUMP: EIP was set by the handler; direct branches may chain to their successor
            if h == H.H_JCC or h == H.H_JMP_REL or h == H.H_LOOP:
                prev_tb = tb
            break
        if not ended:
            st[S.EIP] = (beip + tbs[tb * TB_WIDTH + TB_BYTES]) & ipmask  # fell off the end
            prev_tb = tb
            prev_way = 0
        st[S.ICOUNT] += done
        st[S.BUDGET] -= done
        stats[K.INSNS] += done
        if tf and done > 0 and h != H.H_INT and st[S.EXIT_REASON] == S.EXIT_NONE:
            # Single-step trap (#DB) after an instruction that began with TF=1, reported in DR6.BS
            # (SDM Vol 3, 17.3.1.4); INT n clears TF for its handler and takes no trap.
            st[S.DR0 + 6] |= DR6_BS
            stats[K.EXCEPTIONS] += 1
            deliver(sp, tp, mp, cp, DB_VECTOR, -1, st[S.EIP], False)
            prev_tb = -1
        if st[S.STOP_AFTER_INSN]:
            st[S.STOP_AFTER_INSN] = 0
            prev_tb = -1
        if st[S.EXIT_REASON] == S.EXIT_MMIO_WRITE:
            stats[K.EXIT_MMIO] += 1
        elif st[S.EXIT_REASON] == S.EXIT_IO_IN or st[S.EXIT_REASON] == S.EXIT_IO_OUT:
            stats[K.EXIT_IO] += 1
        if st[S.HFLAGS] != hfl:
            prev_tb = -1
        if bc[BC_T1_QLEN] >= T1_QMAX and st[S.EXIT_REASON] == S.EXIT_NONE:
            st[S.EXIT_REASON] = S.EXIT_COMPILE  # Python compiles the batch, then calls run again


@njit(cache=True)
def exec_cold(st, stats, sp, tp, mp, cp, h, size, dst, src, aux, imm, imm2, x, seg, ea, asz_row, ieip, neip,
              smask, user, hfl, done):
    """The rarer instruction families, out of `run` to keep its compile time in check (execution.md:
    the compile time of one dispatch function grows about quadratically with its size). Taking
    `st` and `stats` as arrays costs a reference-count pair per call, acceptable off the hot path.
    Returns (result, failure) as the handlers in `run` leave them."""
    res = NEXT
    fail = 0
    if h == H.H_MULDIV:
        if dst >= 0:
            b = rget(sp, dst, size)
        else:
            b = seg_read(sp, tp, mp, cp, seg, ea, size, user)
        if b < 0:
            fail = b
        elif aux == 4 or aux == 5:
            a = rget(sp, 0, size)
            if aux == 4:
                lo, hi, o, d, s_, s2 = A.mul(a, b, size)
            else:
                lo, hi, o, d, s_, s2 = A.imul(a, b, size)
            if size == 1:
                rset(sp, 0, 2, (hi << 8) | lo)
            else:
                rset(sp, 0, size, lo)
                rset(sp, 2, size, hi)
            _set_cc(sp, o, d, s_, s2)
        else:
            if size == 1:
                hi = rget(sp, 4, 1)
                lo = rget(sp, 0, 1)
            else:
                hi = rget(sp, 2, size)
                lo = rget(sp, 0, size)
            if aux == 6:
                q, rem, de = A.div(hi, lo, b, size)
            else:
                q, rem, de = A.idiv(hi, lo, b, size)
            if de:
                fail = raise_fault(sp, DE_VECTOR, -1)
            elif size == 1:
                rset(sp, 0, 2, (rem << 8) | q)
            else:
                rset(sp, 0, size, q)
                rset(sp, 2, size, rem)
    elif h == H.H_PUSH_SREG:
        v = st[S.SEGSEL + dst * S.SEG_STRIDE]
        nsp = (st[S.ESP] - size) & smask
        la = seg_la(sp, S.SS, nsp, size, True)
        # a 32-bit push of a segment register writes only 16 bits on P6-family CPUs
        fail = la if la < 0 else vwrite(tp, mp, cp, la, 2, v, user)
        if fail >= 0:
            set_sp(sp, nsp, smask)
    elif h == H.H_POP_SREG:
        osp = st[S.ESP]
        v = pop_at(sp, tp, mp, cp, user, osp & smask, 2)
        if v < 0:
            fail = v
        else:
            fail = load_seg(sp, tp, mp, cp, dst, v)
            if fail >= 0:
                set_sp(sp, osp + size, smask)
                if dst == S.SS:
                    st[S.INHIBIT_IRQ] = 1
                st[S.EIP] = neip
                res = JUMP
    elif h == H.H_MOV_TO_SREG:
        if src >= 0:
            v = rget(sp, src, 2)
        else:
            v = seg_read(sp, tp, mp, cp, seg, ea, 2, user)
        if v < 0:
            fail = v
        else:
            fail = load_seg(sp, tp, mp, cp, dst, v)
            if fail >= 0:
                if dst == S.SS:
                    st[S.INHIBIT_IRQ] = 1
                st[S.EIP] = neip
                res = JUMP
    elif h == H.H_MOV_FROM_SREG:
        v = st[S.SEGSEL + src * S.SEG_STRIDE]
        if dst >= 0:
            rset(sp, dst, size, v)
        else:
            la = seg_la(sp, seg, ea, 2, True)
            fail = la if la < 0 else vwrite(tp, mp, cp, la, 2, v, user)
    elif h == H.H_LXS:
        la = seg_la(sp, seg, ea, size + 2, False)
        off = la if la < 0 else vread(tp, mp, cp, la, size, user)
        if off < 0:
            fail = off
        else:
            sel = vread(tp, mp, cp, (la + size) & 0xFFFF_FFFF, 2, user)
            if sel < 0:
                fail = sel
            else:
                fail = load_seg(sp, tp, mp, cp, aux, sel)
                if fail >= 0:
                    rset(sp, dst, size, off)
                    st[S.EIP] = neip
                    res = JUMP
    elif h == H.H_JMP_FAR or h == H.H_CALL_FAR:
        if x & X_MEM:
            la = seg_la(sp, seg, ea, size + 2, False)
            off = la if la < 0 else vread(tp, mp, cp, la, size, user)
            sel = off if off < 0 else vread(tp, mp, cp, (la + size) & 0xFFFF_FFFF, 2, user)
        else:
            off = imm
            sel = imm2
        if off < 0:
            fail = off
        elif sel < 0:
            fail = sel
        else:
            if h == H.H_JMP_FAR:
                fail = far_jmp(sp, tp, mp, cp, sel, off, size, neip)
            else:
                fail = far_call(sp, tp, mp, cp, sel, off, size, neip)
            res = JUMP
    elif h == H.H_RET_FAR:
        fail = far_ret(sp, tp, mp, cp, size, imm & 0xFFFF)
        res = JUMP
    elif h == H.H_IRET:
        st[S.EIP] = neip  # a task return (NT=1) saves this as the outgoing task's EIP
        fail = iret(sp, tp, mp, cp, size)
        res = JUMP
    elif h == H.H_INT:
        ef = st[S.EFLAGS]
        if aux == 0 and (ef & F.VM) and ((ef & F.IOPL_MASK) >> F.IOPL_SHIFT) != 3:
            fail = raise_fault(sp, GP_VECTOR, 0)
        elif aux == 2 and not _cond(sp, F.CC_O):
            pass
        else:
            vec = imm & 0xFF if aux == 0 else (3 if aux == 1 else (4 if aux == 2 else 1))
            r = deliver(sp, tp, mp, cp, vec, -1, neip, aux != 3)
            if r < 0 and r != DELIVER_TRIPLE:
                res = RESTART  # not delivered (EXIT_REASON says why): redo it later
            else:
                stats[K.INTERRUPTS] += 1
                res = JUMP
    elif h == H.H_BOUND:
        la = seg_la(sp, seg, ea, 2 * size, False)
        lo = la if la < 0 else vread(tp, mp, cp, la, size, user)
        hi = lo if lo < 0 else vread(tp, mp, cp, (la + size) & 0xFFFF_FFFF, size, user)
        if lo < 0:
            fail = lo
        elif hi < 0:
            fail = hi
        else:
            bits = size * 8
            idx = A.sign_extend(rget(sp, dst, size), bits)
            if idx < A.sign_extend(lo, bits) or idx > A.sign_extend(hi, bits):
                fail = raise_fault(sp, BR_VECTOR, -1)
    elif h == H.H_IN or h == H.H_OUT:
        port = (imm & 0xFF) if src == -1 else (st[S.EDX] & 0xFFFF)
        if not _io_allowed(sp, tp, mp, cp, port, size):
            fail = raise_fault(sp, GP_VECTOR, 0)
        elif h == H.H_IN:
            if st[S.IO_PENDING]:
                st[S.IO_PENDING] = 0
                rset(sp, 0, size, st[S.IO_VALUE])
            else:
                st[S.EXIT_REASON] = S.EXIT_IO_IN
                st[S.EXIT_ARG0] = port
                st[S.EXIT_ARG1] = size
                res = RESTART
        else:
            st[S.EXIT_REASON] = S.EXIT_IO_OUT
            st[S.EXIT_ARG0] = port
            st[S.EXIT_ARG1] = size
            st[S.EXIT_ARG2] = rget(sp, 0, size)
            st[S.EIP] = neip
            res = STOP
    elif h == H.H_FLAGOP:
        if aux <= 2:
            f = get_eflags(sp)
            if aux == 0:
                f ^= F.CF
            elif aux == 1:
                f &= ~F.CF
            else:
                f |= F.CF
            set_status(sp, f)
        elif aux == 3 or aux == 4:
            ef = st[S.EFLAGS]
            if (st[S.CR0] & 1) and ((ef & F.IOPL_MASK) >> F.IOPL_SHIFT) < (hfl & 3):
                fail = raise_fault(sp, GP_VECTOR, 0)
            elif (ef & F.VM) and ((ef & F.IOPL_MASK) >> F.IOPL_SHIFT) != 3:
                fail = raise_fault(sp, GP_VECTOR, 0)
            elif aux == 3:
                st[S.EFLAGS] = ef & ~F.IF
            else:
                if not (ef & F.IF):
                    st[S.INHIBIT_IRQ] = 1
                st[S.EFLAGS] = ef | F.IF
        elif aux == 5:
            st[S.EFLAGS] &= ~F.DF
        else:
            st[S.EFLAGS] |= F.DF
        if fail >= 0:
            st[S.EIP] = neip
            res = JUMP
    elif h == H.H_PUSHF:
        ef = st[S.EFLAGS]
        if (ef & F.VM) and ((ef & F.IOPL_MASK) >> F.IOPL_SHIFT) != 3:
            fail = raise_fault(sp, GP_VECTOR, 0)
        else:
            v = get_eflags(sp) & ~(F.RF | F.VM) & _mask(size)
            nsp = push_at(sp, tp, mp, cp, user, st[S.ESP], smask, size, v)
            if nsp < 0:
                fail = nsp
            else:
                set_sp(sp, nsp, smask)
    elif h == H.H_POPF:
        ef = st[S.EFLAGS]
        if (ef & F.VM) and ((ef & F.IOPL_MASK) >> F.IOPL_SHIFT) != 3:
            fail = raise_fault(sp, GP_VECTOR, 0)
        else:
            osp = st[S.ESP]
            v = pop_at(sp, tp, mp, cp, user, osp & smask, size)
            if v < 0:
                fail = v
            else:
                set_sp(sp, osp + size, smask)
                m = popf_mask(sp, size)
                set_eflags(sp, (get_eflags(sp) & ~m) | (v & m))
                st[S.EIP] = neip
                res = JUMP
    elif h == H.H_HLT:
        if (st[S.CR0] & 1) and (hfl & 3) != 0:
            fail = raise_fault(sp, GP_VECTOR, 0)
        else:
            st[S.HALTED] = 1
            st[S.EXIT_REASON] = S.EXIT_HLT
            stats[K.EXIT_HLT] += 1
            st[S.EIP] = neip
            res = STOP
    elif h == H.H_LAHF:
        rset(sp, 4, 1, (get_eflags(sp) & 0xD5) | 0x02)
    elif h == H.H_SAHF:
        f = get_eflags(sp)
        set_status(sp, (f & ~0xD5) | (rget(sp, 4, 1) & 0xD5))
    elif h == H.H_XLAT:
        asz = asz_row
        off = (rget(sp, 3, asz) + rget(sp, 0, 1)) & (0xFFFF if asz == 2 else 0xFFFF_FFFF)
        v = seg_read(sp, tp, mp, cp, seg, off, 1, user)
        if v < 0:
            fail = v
        else:
            rset(sp, 0, 1, v)
    elif h == H.H_SALC:
        rset(sp, 0, 1, 0xFF if get_cf(sp) else 0)
    elif h == H.H_BCD:
        if aux == 0:
            r, o, d, s_, s2 = A.daa(rget(sp, 0, 1), get_eflags(sp))
            rset(sp, 0, 1, r)
            _set_cc(sp, o, d, s_, s2)
        elif aux == 1:
            r, o, d, s_, s2 = A.das(rget(sp, 0, 1), get_eflags(sp))
            rset(sp, 0, 1, r)
            _set_cc(sp, o, d, s_, s2)
        elif aux == 2:
            r, o, d, s_, s2 = A.aaa(rget(sp, 0, 2), get_eflags(sp))
            rset(sp, 0, 2, r)
            _set_cc(sp, o, d, s_, s2)
        elif aux == 3:
            r, o, d, s_, s2 = A.aas(rget(sp, 0, 2), get_eflags(sp))
            rset(sp, 0, 2, r)
            _set_cc(sp, o, d, s_, s2)
        elif aux == 4:
            r, o, d, s_, s2, de = A.aam(rget(sp, 0, 1), imm & 0xFF)
            if de:
                fail = raise_fault(sp, DE_VECTOR, -1)
            else:
                rset(sp, 0, 2, r)
                _set_cc(sp, o, d, s_, s2)
        else:
            r, o, d, s_, s2 = A.aad(rget(sp, 0, 2), imm & 0xFF)
            rset(sp, 0, 2, r)
            _set_cc(sp, o, d, s_, s2)
    elif h == H.H_ENTER:
        fail = _enter(sp, tp, mp, cp, user, size, imm & 0xFFFF, imm2 & 0x1F, smask)
    elif h == H.H_LEAVE:
        bp = rget(sp, 5, 4) & smask
        if (st[S.CR0] & 1) == 0 and bp + size - 1 > st[S.SEGLIMIT + S.SS * S.SEG_STRIDE]:
            v = raise_fault(sp, GP_VECTOR, 0)  # real mode: #GP, not #SS (SDM Vol 2, LEAVE)
        else:
            v = pop_at(sp, tp, mp, cp, user, bp, size)
        if v < 0:
            fail = v
        else:
            set_sp(sp, bp + size, smask)
            rset(sp, 5, size, v)
    elif h == H.H_PUSHA:
        osp = st[S.ESP]
        nsp = osp
        for k in range(8):
            v = osp if k == 4 else st[k]
            nsp = push_at(sp, tp, mp, cp, user, nsp, smask, size, v & _mask(size))
            if nsp < 0:
                break
        if nsp < 0:
            fail = nsp
        else:
            set_sp(sp, nsp, smask)
    elif h == H.H_POPA:
        osp = st[S.ESP]
        vals0 = pop_at(sp, tp, mp, cp, user, (osp + 7 * size) & smask, size)
        fail = vals0 if vals0 < 0 else 0
        if fail >= 0:
            # read all eight first (any may fault), then commit; the SP slot is skipped
            ok = True
            for k in range(8):
                if pop_at(sp, tp, mp, cp, user, (osp + (7 - k) * size) & smask, size) < 0:
                    ok = False
                    break
            if not ok:
                fail = -1
            else:
                for k in range(8):
                    v = pop_at(sp, tp, mp, cp, user, (osp + (7 - k) * size) & smask, size)
                    if k != 4:
                        rset(sp, k, size, v)
                set_sp(sp, osp + 8 * size, smask)
    elif h == H.H_BT:
        fail = _bit_test(sp, tp, mp, cp, user, aux, size, dst, src, imm, seg, ea, asz_row)
    elif h == H.H_SCALAR:
        fail = exec_scalar(sp, tp, mp, cp, user, aux, size, dst, src, imm, seg, ea)
    elif h == H.H_BSWAP:
        v = st[dst]
        st[dst] = (((v & 0xFF) << 24) | ((v & 0xFF00) << 8) | ((v >> 8) & 0xFF00)
                   | (v >> 24)) & 0xFFFF_FFFF
    elif h == H.H_XADD or h == H.H_CMPXCHG:
        fail = _xadd_cmpxchg(st, sp, tp, mp, cp, user, h == H.H_XADD, size, dst, src, seg, ea)
    elif h == H.H_CMPXCHG8B:
        fail = _cmpxchg8b(st, sp, tp, mp, cp, user, seg, ea)
    elif h == H.H_WAIT:
        if (st[S.CR0] & 0xA) == 0xA:  # CR0.MP and CR0.TS
            fail = raise_fault(sp, NM_VECTOR, -1)
        else:
            fail = fpu_wait(sp)  # #MF for a pending unmasked x87 exception
    elif h == H.H_FPU:
        if st[S.CR0] & 0xC:  # CR0.EM or CR0.TS: #NM (SDM Vol 3, 2.5)
            fail = raise_fault(sp, NM_VECTOR, -1)
        else:
            fail = fpu_insn(sp, tp, mp, cp, user, aux, imm, imm2, 1 if (x & X_MEM) else 0, seg, ea, ieip)
    elif h == H.H_SYS:
        st[S.ICOUNT] += done  # RDTSC sees the instructions retired so far
        st[S.EIP] = neip  # the group's contract: EIP already points past the instruction
        has_mem = 1 if (x & X_MEM) else 0
        r = system_insn(sp, tp, mp, cp, aux, size, dst, src, has_mem, ea, seg, imm, user)
        st[S.ICOUNT] -= done
        if r < 0:
            fail = r
        elif r == SYS_END_BLOCK:
            res = JUMP
    elif h == H.H_UD:
        fail = raise_fault(sp, UD_VECTOR, -1)
    elif h == H.H_FAULT_GP:
        fail = raise_fault(sp, GP_VECTOR, 0)
    else:  # H_UNIMPL: an encoding the decoder knows whose instruction pyemu lacks (CPUID does not
        # report it either): #UD, as on a CPU without the feature; `-d unimp` logs it.
        if st[S.LOG_MASK] & S.LOG_UNIMP:
            if log_event(load_i64(cp + CTX_LOG * 8), sp, EV_UNIMP, imm2, (st[S.SEGBASE + S.CS * S.SEG_STRIDE]
                                                                            + ieip) & 0xFFFF_FFFF, ieip,
                         st[S.SEGSEL + S.CS * S.SEG_STRIDE]):
                st[S.EXIT_REASON] = S.EXIT_LOG
        stats[K.UNIMPLEMENTED] += 1
        fail = raise_fault(sp, UD_VECTOR, -1)
    return res, fail


@njit(cache=True)
def _io_allowed(sp, tp, mp, cp, port, size):
    """I/O permission (SDM Vol 1, 18.5): CPL <= IOPL, else the TSS I/O bitmap decides; in V86
    mode always the bitmap."""
    cr0 = load_i64(sp + S.CR0 * 8)
    if (cr0 & 1) == 0:
        return True
    ef = load_i64(sp + S.EFLAGS * 8)
    cpl = load_i64(sp + S.CPL * 8)
    if not (ef & F.VM) and cpl <= ((ef & F.IOPL_MASK) >> F.IOPL_SHIFT):
        return True
    tr_attr = load_i64(sp + S.SEGATTR * 8 + S.TR_SEG * S.SEG_STRIDE * 8)
    if (tr_attr & 0xF) != 0x9 and (tr_attr & 0xF) != 0xB:  # only a 32-bit TSS has a bitmap
        return False
    base = load_i64(sp + (S.SEGBASE + S.TR_SEG * S.SEG_STRIDE) * 8)
    limit = load_i64(sp + (S.SEGLIMIT + S.TR_SEG * S.SEG_STRIDE) * 8)
    if limit < 0x67:
        return False
    iomap = vread(tp, mp, cp, (base + 0x66) & 0xFFFF_FFFF, 2, 0)
    if iomap < 0:
        return False
    byte = iomap + (port >> 3)
    if byte + 1 > limit:
        return False
    bits = vread(tp, mp, cp, (base + byte) & 0xFFFF_FFFF, 2, 0)
    if bits < 0:
        return False
    m = ((1 << size) - 1) << (port & 7)
    return (bits & m) == 0


@njit(cache=True)
def _string_io(st, sp, tp, mp, cp, user, aux, size, asz, seg, rep, ieip, neip):
    """INS (aux 5) and OUTS (aux 6): one element per exit to Python; REP keeps EIP on the
    instruction until the count runs out. Returns a handler result or a failure code."""
    amask = 0xFFFF if asz == 2 else 0xFFFF_FFFF
    port = st[S.EDX] & 0xFFFF
    if not _io_allowed(sp, tp, mp, cp, port, size):
        return raise_fault(sp, GP_VECTOR, 0)
    if rep and (st[S.ECX] & amask) == 0:
        st[S.IO_PENDING] = 0
        return NEXT
    delta = -size if (st[S.EFLAGS] & F.DF) else size
    if aux == 5:
        di = st[S.EDI] & amask
        la = seg_la(sp, S.ES, di, size, True)
        if la < 0:
            return la
        if not st[S.IO_PENDING]:
            p = vprobe_write(tp, mp, cp, la, size, user)
            if p < 0:
                return p
            st[S.EXIT_REASON] = S.EXIT_IO_IN
            st[S.EXIT_ARG0] = port
            st[S.EXIT_ARG1] = size
            return RESTART
        st[S.IO_PENDING] = 0
        w = vwrite(tp, mp, cp, la, size, st[S.IO_VALUE], user)
        if w < 0:
            return w
        nd = (di + delta) & amask
        st[S.EDI] = ((st[S.EDI] & 0xFFFF_0000) | nd) if amask == 0xFFFF else nd
    else:
        si = st[S.ESI] & amask
        la = seg_la(sp, seg, si, size, False)
        if la < 0:
            return la
        v = vread(tp, mp, cp, la, size, user)
        if v < 0:
            return v
        ns = (si + delta) & amask
        st[S.ESI] = ((st[S.ESI] & 0xFFFF_0000) | ns) if amask == 0xFFFF else ns
        st[S.EXIT_REASON] = S.EXIT_IO_OUT
        st[S.EXIT_ARG0] = port
        st[S.EXIT_ARG1] = size
        st[S.EXIT_ARG2] = v
    if rep:
        c = ((st[S.ECX] & amask) - 1) & amask
        st[S.ECX] = ((st[S.ECX] & 0xFFFF_0000) | c) if amask == 0xFFFF else c
        if c != 0:
            return RESTART  # more elements to go: the instruction has not retired yet
    st[S.EIP] = neip
    return STOP


@njit(cache=True)
def _enter(sp, tp, mp, cp, user, size, alloc, level, smask):
    """ENTER alloc, level (SDM Vol 2, ENTER): build the frame without committing until it fits."""
    esp = load_i64(sp + S.ESP * 8)
    ebp = load_i64(sp + S.EBP * 8)
    nsp = push_at(sp, tp, mp, cp, user, esp, smask, size, ebp & _mask(size))
    if nsp < 0:
        return nsp
    frame = nsp
    if level > 0:
        bp = ebp
        for _ in range(1, level):
            bp = (bp - size) & smask
            v = pop_at(sp, tp, mp, cp, user, bp, size)
            if v < 0:
                return v
            nsp = push_at(sp, tp, mp, cp, user, nsp, smask, size, v)
            if nsp < 0:
                return nsp
        nsp = push_at(sp, tp, mp, cp, user, nsp, smask, size, frame & _mask(size))
        if nsp < 0:
            return nsp
    final = (nsp - alloc) & smask
    # the new stack top must be writable (#SS/#PF before any register changes)
    la = seg_la(sp, S.SS, final, 1, True)
    if la < 0:
        return la
    rset(sp, 5, size, frame)
    set_sp(sp, final, smask)
    return 0


@njit(cache=True)
def _bit_test(sp, tp, mp, cp, user, op, size, dst, src, imm, seg, ea, asize):
    """BT/BTS/BTR/BTC with a register or immediate bit offset."""
    ef = get_eflags(sp)
    if src >= 0:
        offset = rget(sp, src, size)
    else:
        offset = imm & 0xFF
    if dst >= 0:
        bit = A.bt_reg_offset(offset, size)
        v, o, d, s_, s2 = A.bt(op, rget(sp, dst, size), bit, size, ef)
        if op != 0:
            rset(sp, dst, size, v)
        _set_cc(sp, o, d, s_, s2)
        return 0
    if src >= 0:
        disp, bit = A.bt_mem_offset(offset, size)
    else:
        disp = 0
        bit = A.bt_reg_offset(offset, size)
    off = (ea + disp) & (0xFFFF_FFFF if asize == 4 else 0xFFFF)
    la = seg_la(sp, seg, off, size, op != 0)
    if la < 0:
        return la
    cur = vread(tp, mp, cp, la, size, user)
    if cur < 0:
        return cur
    v, o, d, s_, s2 = A.bt(op, cur, bit, size, ef)
    if op != 0:
        w = vwrite(tp, mp, cp, la, size, v, user)
        if w < 0:
            return w
    _set_cc(sp, o, d, s_, s2)
    return 0


@njit(cache=True)
def _xadd_cmpxchg(st, sp, tp, mp, cp, user, is_xadd, size, dst, src, seg, ea):
    """XADD r/m, r and CMPXCHG r/m, r (accumulator compare; the destination is always written,
    as the processor does, SDM Vol 2, CMPXCHG)."""
    la = 0
    if dst >= 0:
        cur = rget(sp, dst, size)
    else:
        la = seg_la(sp, seg, ea, size, True)
        if la < 0:
            return la
        cur = vread(tp, mp, cp, la, size, user)
        if cur < 0:
            return cur
    s = rget(sp, src, size)
    if is_xadd:
        r, o, d, s_, s2 = A.add(cur, s, size)
        if dst >= 0:
            rset(sp, src, size, cur)
            rset(sp, dst, size, r)
        else:
            w = vwrite(tp, mp, cp, la, size, r, user)
            if w < 0:
                return w
            rset(sp, src, size, cur)
        _set_cc(sp, o, d, s_, s2)
        return 0
    acc = rget(sp, 0, size)
    _, o, d, s_, s2 = A.sub(acc, cur, size)
    if acc == cur:
        if dst >= 0:
            rset(sp, dst, size, s)
        else:
            w = vwrite(tp, mp, cp, la, size, s, user)
            if w < 0:
                return w
    else:
        if dst < 0:
            w = vwrite(tp, mp, cp, la, size, cur, user)
            if w < 0:
                return w
        rset(sp, 0, size, cur)
    _set_cc(sp, o, d, s_, s2)
    return 0


@njit(cache=True)
def _cmpxchg8b(st, sp, tp, mp, cp, user, seg, ea):
    la = seg_la(sp, seg, ea, 8, True)
    if la < 0:
        return la
    lo = vread(tp, mp, cp, la, 4, user)
    if lo < 0:
        return lo
    hi = vread(tp, mp, cp, (la + 4) & 0xFFFF_FFFF, 4, user)
    if hi < 0:
        return hi
    f = get_eflags(sp)
    if lo == st[S.EAX] and hi == st[S.EDX]:
        w = vwrite(tp, mp, cp, la, 4, st[S.EBX], user)
        if w < 0:
            return w
        w = vwrite(tp, mp, cp, (la + 4) & 0xFFFF_FFFF, 4, st[S.ECX], user)
        if w < 0:
            return w
        set_status(sp, f | F.ZF)
    else:
        w = vwrite(tp, mp, cp, la, 4, lo, user)
        if w < 0:
            return w
        st[S.EAX] = lo
        st[S.EDX] = hi
        set_status(sp, f & ~F.ZF)
    return 0


__all__ = ["run", "deliver_external", "update_hflags", "BC_PAGEHEAD_PTR", "TABLE_WAYS"]
