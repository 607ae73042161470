"""String instructions (MOVS, CMPS, STOS, LODS, SCAS) with REP/REPE/REPNE, in compiled code.

SDM Vol 2, "REP/REPE/REPZ/REPNE/REPNZ": the count register is CX or ECX by the address size, the
index registers SI/DI or ESI/EDI likewise, and EFLAGS.DF picks the direction. Each iteration
commits its register updates before the next one starts, so a fault in the middle (a page fault
on the next element) leaves ECX/ESI/EDI describing exactly the work left, and re-executing the
instruction resumes it (Vol 3, 6.6 "Program or task restart"). The destination is always ES:(E)DI;
the source segment may be overridden.
"""

from __future__ import annotations

from numba import njit

from emu.cpu import flags as F
from emu.cpu import state as S
from emu.cpu.access import rget, rset, seg_la, sget, sset, vread, vwrite
from emu.cpu.alu import sub

STR_MOVS, STR_CMPS, STR_STOS, STR_LODS, STR_SCAS, STR_INS, STR_OUTS = range(7)
REP_E = 1  # F3: REP, or REPE for CMPS/SCAS
REP_NE = 2  # F2: REPNE (REP for the others)


@njit(cache=True)
def _set_index(sp, reg, value, amask):
    if amask == 0xFFFF:
        sset(sp, reg, (sget(sp, reg) & 0xFFFF_0000) | (value & 0xFFFF))
    else:
        sset(sp, reg, value & 0xFFFF_FFFF)


@njit(cache=True)
def string_op(sp, tp, mp, cp, user, op, size, asize, seg, rep, budget):
    """Run one string instruction; returns the number of iterations done (>= 0) when it
    completed, or a negative failure code (fault/exit) with the registers at the failing element.
    With REP, at most `budget` iterations run before it returns -100 - done, so the loop can
    take timers and interrupts in the middle of a long REP (EIP stays on the instruction)."""
    amask = 0xFFFF if asize == 2 else 0xFFFF_FFFF
    delta = -size if (sget(sp, S.EFLAGS) & F.DF) else size
    count = sget(sp, S.ECX) & amask
    if rep and count == 0:
        return 0
    done = 0
    while True:
        si = sget(sp, S.ESI) & amask
        di = sget(sp, S.EDI) & amask
        if op == STR_MOVS:
            la = seg_la(sp, seg, si, size, False)
            if la < 0:
                return la
            v = vread(tp, mp, cp, la, size, user)
            if v < 0:
                return v
            la = seg_la(sp, S.ES, di, size, True)
            if la < 0:
                return la
            r = vwrite(tp, mp, cp, la, size, v, user)
            if r < 0:
                return r
            _set_index(sp, S.ESI, si + delta, amask)
            _set_index(sp, S.EDI, di + delta, amask)
        elif op == STR_STOS:
            la = seg_la(sp, S.ES, di, size, True)
            if la < 0:
                return la
            r = vwrite(tp, mp, cp, la, size, rget(sp, S.EAX, size), user)
            if r < 0:
                return r
            _set_index(sp, S.EDI, di + delta, amask)
        elif op == STR_LODS:
            la = seg_la(sp, seg, si, size, False)
            if la < 0:
                return la
            v = vread(tp, mp, cp, la, size, user)
            if v < 0:
                return v
            rset(sp, S.EAX, size, v)
            _set_index(sp, S.ESI, si + delta, amask)
        else:  # CMPS and SCAS set flags and may stop a REPE/REPNE early
            if op == STR_CMPS:
                la = seg_la(sp, seg, si, size, False)
                if la < 0:
                    return la
                a = vread(tp, mp, cp, la, size, user)
                if a < 0:
                    return a
            else:
                a = rget(sp, S.EAX, size)
            la = seg_la(sp, S.ES, di, size, False)
            if la < 0:
                return la
            b = vread(tp, mp, cp, la, size, user)
            if b < 0:
                return b
            _, o, d, s, s2 = sub(a, b, size)
            sset(sp, S.CC_OP, o)
            sset(sp, S.CC_DST, d)
            sset(sp, S.CC_SRC, s)
            sset(sp, S.CC_SRC2, s2)
            if op == STR_CMPS:
                _set_index(sp, S.ESI, si + delta, amask)
            _set_index(sp, S.EDI, di + delta, amask)
        done += 1
        if not rep:
            return done
        count = (count - 1) & amask
        _set_index(sp, S.ECX, count, amask)
        if count == 0:
            return done
        if op == STR_CMPS or op == STR_SCAS:
            zf = d == 0
            if rep == REP_E and not zf:
                return done
            if rep == REP_NE and zf:
                return done
        if done >= budget or sget(sp, S.EXIT_REASON) == S.EXIT_MMIO_WRITE:
            # A slice ends, or an element's store went to a device: Python performs it before
            # the next element (each would overwrite the one pending MMIO write otherwise).
            return -100 - done
