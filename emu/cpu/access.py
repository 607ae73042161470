"""Register, segment and memory access for compiled code, on raw pointers (execution.md rule 1).

Every helper takes the state array's address `sp` (and, for memory, the TLB's and RAM's addresses
and the slow-path context `cp`) as plain int64 scalars.

Failure convention: a helper that can fault returns a negative number (MEM_FAULT after recording
the exception in FAULT_VECTOR/FAULT_ERROR, or MEM_EXIT when the loop must leave for a device).
Values are otherwise >= 0 (zero-extended).

Segment checks (SDM Vol 3, 5.3 and 5.4) are summarised when a segment register is loaded, in
bits above the descriptor attributes (SEGF_*), so an access tests one mask and one limit:
- SEGF_NOREAD / SEGF_NOWRITE: the segment type forbids the access (#GP(0), or #SS(0) for SS);
- SEGF_NULL: a null selector in protected mode (#GP(0));
- SEGF_EXPDOWN: an expand-down data segment, checked by the slow routine.
"""

from __future__ import annotations

from numba import njit

from emu import stats as K
from emu.cpu import state as S
from emu.mmu.softmmu import (
    MEM_FAULT,
    count,
    mem_read_slow,
    mem_write_slow,
    sget,
    sset,  # noqa: F401  (re-exported: the CPU modules take both from here)
)
from emu.mmu.tlb import ACC_EXEC, ACC_READ, ACC_WRITE, TE_ADDEND, TLB_BITS, TLB_INDEX_MASK, TLB_STRIDE
from emu.rawptr import load_i64, load_u8, load_u16, load_u32, store_i64, store_u8, store_u16, store_u32

SEGF_NOREAD = 1 << 16
SEGF_NOWRITE = 1 << 17
SEGF_NULL = 1 << 18
SEGF_EXPDOWN = 1 << 19
SEGF_MASK = SEGF_NOREAD | SEGF_NOWRITE | SEGF_NULL | SEGF_EXPDOWN

GP_VECTOR = 13
SS_VECTOR = 12


@njit(cache=True)
def raise_fault(sp, vector, error):
    """Record an exception for the loop to deliver; returns MEM_FAULT for the caller to pass up."""
    store_i64(sp + S.FAULT_VECTOR * 8, vector)
    store_i64(sp + S.FAULT_ERROR * 8, error)
    return MEM_FAULT


# ------------------------------------------------------------------------------ registers
@njit(cache=True)
def rget(sp, r, size):
    """GPR r at `size` bytes; byte registers 4..7 are AH CH DH BH (SDM Vol 2, Table 2-1)."""
    if size == 4:
        return load_i64(sp + r * 8)
    if size == 2:
        return load_i64(sp + r * 8) & 0xFFFF
    if r < 4:
        return load_i64(sp + r * 8) & 0xFF
    return (load_i64(sp + (r - 4) * 8) >> 8) & 0xFF


@njit(cache=True)
def rset(sp, r, size, v):
    if size == 4:
        store_i64(sp + r * 8, v & 0xFFFF_FFFF)
    elif size == 2:
        p = sp + r * 8
        store_i64(p, (load_i64(p) & 0xFFFF_0000) | (v & 0xFFFF))
    elif r < 4:
        p = sp + r * 8
        store_i64(p, (load_i64(p) & 0xFFFF_FF00) | (v & 0xFF))
    else:
        p = sp + (r - 4) * 8
        store_i64(p, (load_i64(p) & 0xFFFF_00FF) | ((v & 0xFF) << 8))


# ------------------------------------------------------------------------------ memory
@njit(cache=True)
def _host_load(a, size):
    if size == 1:
        return load_u8(a)
    if size == 2:
        return load_u16(a)
    if size == 4:
        return load_u32(a)
    return load_i64(a)


@njit(cache=True)
def _host_store(a, size, v):
    if size == 1:
        store_u8(a, v)
    elif size == 2:
        store_u16(a, v)
    elif size == 4:
        store_u32(a, v)
    else:
        store_i64(a, v)


@njit(cache=True)
def vread(tp, mp, cp, la, size, user):
    """Read `size` bytes at linear address `la`: TLB fast path inline, else the slow path."""
    p = tp + (((ACC_READ << TLB_BITS) + ((la >> 12) & TLB_INDEX_MASK)) * TLB_STRIDE) * 8
    if load_i64(p) == ((la & 0xFFFF_F000) | user) and (la & 0xFFF) <= 0x1000 - size:
        count(cp, K.TLB_HITS)
        return _host_load(mp + load_i64(p + TE_ADDEND * 8) + la, size)
    return mem_read_slow(cp, la, size, user, ACC_READ)


@njit(cache=True)
def vwrite(tp, mp, cp, la, size, v, user):
    """Write `size` bytes at `la`; 0 or a negative failure code."""
    p = tp + (((ACC_WRITE << TLB_BITS) + ((la >> 12) & TLB_INDEX_MASK)) * TLB_STRIDE) * 8
    if load_i64(p) == ((la & 0xFFFF_F000) | user) and (la & 0xFFF) <= 0x1000 - size:
        count(cp, K.TLB_HITS)
        _host_store(mp + load_i64(p + TE_ADDEND * 8) + la, size, v)
        return 0
    return mem_write_slow(cp, la, size, v, user)


@njit(cache=True)
def vfetch(tp, mp, cp, la, size, user):
    """Read code bytes (execute access)."""
    p = tp + (((ACC_EXEC << TLB_BITS) + ((la >> 12) & TLB_INDEX_MASK)) * TLB_STRIDE) * 8
    if load_i64(p) == ((la & 0xFFFF_F000) | user) and (la & 0xFFF) <= 0x1000 - size:
        return _host_load(mp + load_i64(p + TE_ADDEND * 8) + la, size)
    return mem_read_slow(cp, la, size, user, ACC_EXEC)


@njit(cache=True)
def vprobe_write(tp, mp, cp, la, size, user):
    """Check that `size` bytes at `la` are writable, without writing (a read-modify-write's
    write permission must be known before any state changes). 0 or a failure code."""
    p = tp + (((ACC_WRITE << TLB_BITS) + ((la >> 12) & TLB_INDEX_MASK)) * TLB_STRIDE) * 8
    if load_i64(p) == ((la & 0xFFFF_F000) | user) and (la & 0xFFF) <= 0x1000 - size:
        return 0
    v = mem_read_slow(cp, la, size, user, ACC_READ)
    if v < 0:
        return v
    return mem_write_slow(cp, la, size, v, user)


# ------------------------------------------------------------------------------ segments
@njit(cache=True)
def seg_fault(sp, seg, ea, size, write):
    """The checks behind the fast test of seg_la, done in full; returns a linear address or
    MEM_FAULT with #GP(0)/#SS(0) recorded (SDM Vol 3, 5.3: limit; 5.4.x: type)."""
    base = sget(sp, S.SEGBASE + seg * S.SEG_STRIDE)
    lim = sget(sp, S.SEGLIMIT + seg * S.SEG_STRIDE)
    attr = sget(sp, S.SEGATTR + seg * S.SEG_STRIDE)
    vec = SS_VECTOR if seg == S.SS else GP_VECTOR
    if attr & SEGF_NULL:
        return raise_fault(sp, GP_VECTOR, 0)
    if write and (attr & SEGF_NOWRITE):
        return raise_fault(sp, vec, 0)
    if (not write) and (attr & SEGF_NOREAD):
        return raise_fault(sp, vec, 0)
    last = ea + size - 1
    if attr & SEGF_EXPDOWN:
        upper = 0xFFFF_FFFF if (attr & S.ATTR_DB) else 0xFFFF
        if ea <= lim or last > upper:
            return raise_fault(sp, vec, 0)
    elif last > lim:
        return raise_fault(sp, vec, 0)
    return (base + ea) & 0xFFFF_FFFF


@njit(cache=True)
def seg_la(sp, seg, ea, size, write):
    """Linear address of `size` bytes at offset `ea` in segment `seg`, or MEM_FAULT."""
    o = S.SEG_BASE_SLOT + seg * S.SEG_STRIDE
    attr = load_i64(sp + (o + S.SEG_ATTR) * 8)
    bad = SEGF_NULL | SEGF_EXPDOWN | (SEGF_NOWRITE if write else SEGF_NOREAD)
    if (attr & bad) == 0 and ea + size - 1 <= load_i64(sp + (o + S.SEG_LIMIT) * 8):
        return (load_i64(sp + (o + S.SEG_BASE) * 8) + ea) & 0xFFFF_FFFF
    return seg_fault(sp, seg, ea, size, write)


@njit(cache=True)
def seg_read(sp, tp, mp, cp, seg, ea, size, user):
    """Read `size` bytes at `seg`:`ea` after the segment checks: the value, or a failure code."""
    la = seg_la(sp, seg, ea, size, False)
    if la < 0:
        return la
    return vread(tp, mp, cp, la, size, user)


@njit(cache=True)
def seg_summary(attr, pe, vm, null):
    """The SEGF_* bits for a segment cache entry (computed once per segment load)."""
    f = attr & ~SEGF_MASK
    if not pe or vm:
        return f  # real and virtual-8086 mode: any access within the limit
    if null:
        return f | SEGF_NULL
    if attr & S.ATTR_CODE:
        f |= SEGF_NOWRITE
        if not (attr & S.ATTR_WRITABLE):
            f |= SEGF_NOREAD
    else:
        if not (attr & S.ATTR_WRITABLE):
            f |= SEGF_NOWRITE
        if attr & S.ATTR_EXPAND_DOWN:
            f |= SEGF_EXPDOWN
    return f


# ------------------------------------------------------------------------------ stack
@njit(cache=True)
def stack_mask(sp):
    return 0xFFFF_FFFF if (sget(sp, S.SEGATTR + S.SS * S.SEG_STRIDE) & S.ATTR_DB) else 0xFFFF


@njit(cache=True)
def set_sp(sp, value, smask):
    """ESP or SP (the upper half of ESP survives a 16-bit stack, SDM Vol 1, 6.2.3)."""
    if smask == 0xFFFF:
        store_i64(sp + S.ESP * 8, (load_i64(sp + S.ESP * 8) & 0xFFFF_0000) | (value & 0xFFFF))
    else:
        store_i64(sp + S.ESP * 8, value & 0xFFFF_FFFF)


@njit(cache=True)
def push_at(sp, tp, mp, cp, user, esp, smask, size, v):
    """Store `v` below stack offset `esp` without committing ESP; the new offset, or < 0."""
    nsp = (esp - size) & smask
    la = seg_la(sp, S.SS, nsp, size, True)
    if la < 0:
        return la
    r = vwrite(tp, mp, cp, la, size, v, user)
    if r < 0:
        return r
    return nsp


@njit(cache=True)
def pop_at(sp, tp, mp, cp, user, esp, size):
    """Read `size` bytes at stack offset `esp` (no ESP change); the value, or < 0."""
    la = seg_la(sp, S.SS, esp, size, False)
    if la < 0:
        return la
    return vread(tp, mp, cp, la, size, user)


@njit(cache=True)
def effective_address(sp, base, index, scale, disp, asize):
    """ModRM/SIB offset (SDM Vol 2, 2.1.5), wrapped to the address size."""
    ea = disp
    if base >= 0:
        ea += load_i64(sp + base * 8)
    if index >= 0:
        ea += load_i64(sp + index * 8) << scale
    return ea & (0xFFFF_FFFF if asize == 4 else 0xFFFF)
