"""The memory path of the compiled loop: the slow path behind the inline TLB fast path.

The interpreter does the fast path inline (see docs/internals.md, "The memory path"):

    slot = tlb_slot(kind, linear)
    if tlb[slot] == (linear & ~0xFFF) | user and (linear & 0xFFF) <= 4096 - size:
        value = load(mem_base + tlb[slot + TE_ADDEND] + linear)
    else:
        value = mem_read_slow(ctx, linear, size, user)

Everything else comes here: TLB misses (walk, then fill), accesses that cross a page, ROM writes
(ignored), open bus (reads all-ones), device MMIO (leave the loop) and writes to pages that hold
translated code (invalidate them: self-modifying code). Results: a value or 0 (>= 0), or
MEM_FAULT (an exception is recorded in FAULT_VECTOR/FAULT_ERROR) or MEM_EXIT (the loop must
leave: EXIT_REASON says why). Neither path has side effects before the last check passes, so the
instruction can be restarted precisely.

The pointers the slow path needs come from one int64 context array (`ctx`), so every call passes a
single scalar: CTX_STATE, CTX_MEM, CTX_PMAP, CTX_TLB, CTX_PAGECODE, CTX_STATS hold array addresses.
Guest values never index host memory unchecked: physical page numbers are masked to 20 bits, RAM
offsets come only from `pmap`, and page offsets are masked to 12 bits.
"""

from __future__ import annotations

from numba import njit

from emu import stats as K
from emu.cpu import state as S
from emu.mmu.paging import CR0_PG, WALK_FAULT, page_walk
from emu.mmu.physmap import PAGE_SHIFT, PHYS_PAGES, PM_KIND_MASK, PM_MMIO, PM_RAM, PM_ROM, PM_UNMAPPED
from emu.mmu.tlb import ACC_EXEC, ACC_WRITE, tlb_fill
from emu.rawptr import (
    load_i32,
    load_i64,
    load_u8,
    load_u16,
    load_u32,
    store_i64,
    store_u8,
    store_u16,
    store_u32,
)
from emu.translate.blockcache import invalidate_range

CTX_STATE = 0
CTX_MEM = 1
CTX_PMAP = 2
CTX_TLB = 3
CTX_PAGECODE = 4  # the block cache's page_head (int32 per physical page; != 0: holds code)
CTX_STATS = 5
CTX_BLOCKS = 6  # the block cache's own context (see emu/translate/blockcache.py)
CTX_SIZE = 8

MEM_FAULT = -1
MEM_EXIT = -2

# translate() results below zero, besides MEM_FAULT / MEM_EXIT
_OPEN_BUS = -3
_IGNORED = -4
_MMIO = -5


@njit(cache=True)
def sget(st_ptr, slot):
    return load_i64(st_ptr + slot * 8)


@njit(cache=True)
def sset(st_ptr, slot, value):
    store_i64(st_ptr + slot * 8, value)


@njit(cache=True)
def count(ctx_ptr, counter):
    p = load_i64(ctx_ptr + CTX_STATS * 8) + counter * 8
    store_i64(p, load_i64(p) + 1)


@njit(cache=True)
def linear_to_phys(ctx_ptr, linear, acc, user):
    """Linear → physical for one access, or MEM_FAULT with #PF recorded. Applies the A20 gate."""
    st = load_i64(ctx_ptr + CTX_STATE * 8)
    linear &= 0xFFFF_FFFF
    if sget(st, S.CR0) & CR0_PG:
        walked = page_walk(st, load_i64(ctx_ptr + CTX_MEM * 8), load_i64(ctx_ptr + CTX_PMAP * 8),
                           linear, acc, user)
        if walked == WALK_FAULT:
            return MEM_FAULT
        phys = (walked & ~0xFFF) | (linear & 0xFFF)
        glob = walked & 1
    else:
        phys = linear
        glob = 0
    # The A20 gate clears bit 20 only: PAE addresses above 4 GiB keep their upper bits (translate
    # then sees them as unmapped instead of aliasing low memory).
    return ((phys & (sget(st, S.A20_MASK) | ~0xFFFF_FFFF)) << 1) | glob


@njit(cache=True)
def translate(ctx_ptr, linear, acc, user):
    """Host offset of `linear`'s byte for this access, filling the TLB when the page may be entered.

    Returns >= 0 (a host offset into mem), MEM_FAULT, _OPEN_BUS, _IGNORED (a ROM write) or _MMIO
    (the physical address is left in MMIO_ADDR).
    """
    r = linear_to_phys(ctx_ptr, linear, acc, user)
    if r < 0:
        return MEM_FAULT
    phys = r >> 1
    glob = r & 1
    if phys >> 32:
        return _OPEN_BUS  # a PAE/PSE-36 page above 4 GiB: no RAM there (pmap covers 4 GiB only)
    ppn = (phys >> PAGE_SHIFT) & (PHYS_PAGES - 1)
    entry = load_i64(load_i64(ctx_ptr + CTX_PMAP * 8) + ppn * 8)
    kind = entry & PM_KIND_MASK
    host = (entry & ~PM_KIND_MASK) + (phys & 0xFFF)
    count(ctx_ptr, K.TLB_MISSES)
    if kind == PM_RAM:
        if acc == ACC_WRITE:
            if load_i32(load_i64(ctx_ptr + CTX_PAGECODE * 8) + ppn * 4) != 0:
                return host  # code page: no write entry, so every write comes here and is checked
        tlb_fill(load_i64(ctx_ptr + CTX_TLB * 8), acc, linear, user, entry & ~PM_KIND_MASK, ppn, glob)
        return host
    if kind == PM_ROM:
        if acc == ACC_WRITE:
            return _IGNORED
        tlb_fill(load_i64(ctx_ptr + CTX_TLB * 8), acc, linear, user, entry & ~PM_KIND_MASK, ppn, glob)
        return host
    if kind & PM_MMIO:
        sset(load_i64(ctx_ptr + CTX_STATE * 8), S.MMIO_ADDR, phys)
        return _MMIO
    if kind & PM_UNMAPPED:
        return _OPEN_BUS
    return _OPEN_BUS


@njit(cache=True)
def _load(p, size):
    """Load 1..8 bytes. The halves of a page-crossing access have any size from 1 to 7: those go
    byte by byte, so no byte beyond the access is read (or, in _store, written)."""
    if size == 1:
        return load_u8(p)
    if size == 2:
        return load_u16(p)
    if size == 4:
        return load_u32(p)
    if size == 8:
        return load_i64(p)
    v = 0
    for i in range(size):
        v |= load_u8(p + i) << (8 * i)
    return v


@njit(cache=True)
def _store(p, size, value):
    if size == 1:
        store_u8(p, value)
    elif size == 2:
        store_u16(p, value)
    elif size == 4:
        store_u32(p, value)
    elif size == 8:
        store_i64(p, value)
    else:
        for i in range(size):
            store_u8(p + i, (value >> (8 * i)) & 0xFF)


MMIO_ONE_PART = -1  # EXIT_ARG3 of an MMIO exit within one page


@njit(cache=True)
def _mmio_read_exit(st, phys, size, split):
    """The value of a device read, when Python fetched it for this retry (MMIO_PENDING with the
    same operands); else ask for it: EXIT_MMIO_READ with ARG0 = physical address, ARG1 = size,
    ARG3 = MMIO_ONE_PART, or (length of the first part << 32) | the second part's physical address
    for an access that runs across two device pages (emu/mmu/physmap.py `PhysMap.exit_read`)."""
    if sget(st, S.MMIO_PENDING) and sget(st, S.EXIT_ARG0) == phys and sget(st, S.EXIT_ARG1) == size \
            and sget(st, S.EXIT_ARG3) == split:
        sset(st, S.MMIO_PENDING, 0)  # the device's answer, fetched by Python for this retry
        return sget(st, S.MMIO_VALUE) & ((1 << (8 * size)) - 1)
    sset(st, S.EXIT_REASON, S.EXIT_MMIO_READ)
    sset(st, S.EXIT_ARG0, phys)
    sset(st, S.EXIT_ARG1, size)
    sset(st, S.EXIT_ARG3, split)
    return MEM_EXIT


@njit(cache=True)
def _read_part(ctx_ptr, linear, size, user, acc):
    """Read `size` bytes that lie in one page."""
    host = translate(ctx_ptr, linear, acc, user)
    if host >= 0:
        return _load(load_i64(ctx_ptr + CTX_MEM * 8) + host, size)
    if host == MEM_FAULT:
        return MEM_FAULT
    if host == _MMIO:
        st = load_i64(ctx_ptr + CTX_STATE * 8)
        phys = sget(st, S.MMIO_ADDR)
        return _mmio_read_exit(st, phys, size, MMIO_ONE_PART)
    return (1 << (8 * size)) - 1  # open bus


@njit(cache=True)
def mem_read_slow(ctx_ptr, linear, size, user, acc):
    """A read (acc ACC_READ) or fetch (ACC_EXEC) that missed the fast path; value or < 0."""
    linear &= 0xFFFF_FFFF
    count(ctx_ptr, K.MEM_SLOW)
    first = 0x1000 - (linear & 0xFFF)
    if first >= size:
        return _read_part(ctx_ptr, linear, size, user, acc)
    # Crosses a page: both halves must translate before either is used (no partial effects).
    second = (linear + first) & 0xFFFF_FFFF
    st = load_i64(ctx_ptr + CTX_STATE * 8)
    if translate(ctx_ptr, linear, acc, user) == _MMIO:
        phys_lo = sget(st, S.MMIO_ADDR)
        if translate(ctx_ptr, second, acc, user) == _MMIO:  # both halves in devices: one exit
            count(ctx_ptr, K.MEM_CROSS_PAGE)
            return _mmio_read_exit(st, phys_lo, size, (first << 32) | sget(st, S.MMIO_ADDR))
    lo = _read_part(ctx_ptr, linear, first, user, acc)
    if lo < 0:
        return lo
    hi = _read_part(ctx_ptr, (linear + first) & 0xFFFF_FFFF, size - first, user, acc)
    if hi < 0:
        return hi
    count(ctx_ptr, K.MEM_CROSS_PAGE)
    return lo | (hi << (8 * first))


@njit(cache=True)
def _write_part(ctx_ptr, host, phys_hint, size, value):
    """Store into one page after translation succeeded. Returns 1 when RAM bytes changed (a store
    of the bytes already there cannot make translated code stale: GRUB rewrites the vector of its
    INT n instruction with the same number on every BIOS call), else 0."""
    if host >= 0:
        p = load_i64(ctx_ptr + CTX_MEM * 8) + host
        old = _load(p, size)
        _store(p, size, value)
        if size < 8:
            value &= (1 << (8 * size)) - 1
        return 1 if old != value else 0
    if host == _MMIO:
        st = load_i64(ctx_ptr + CTX_STATE * 8)
        sset(st, S.EXIT_REASON, S.EXIT_MMIO_WRITE)
        sset(st, S.EXIT_ARG0, phys_hint)
        sset(st, S.EXIT_ARG1, size)
        sset(st, S.EXIT_ARG2, value & ((1 << (8 * size)) - 1))
        sset(st, S.EXIT_ARG3, MMIO_ONE_PART)
        # Python performs the write after the loop returns: the block must end after this
        # instruction, or a later write in the same block would overwrite the exit's operands.
        sset(st, S.STOP_AFTER_INSN, 1)
        return 0
    return 0  # ROM or open bus: the write vanishes


@njit(cache=True)
def mem_write_slow(ctx_ptr, linear, size, value, user):
    """A write that missed the fast path: 0, or MEM_FAULT. Device writes retire the instruction
    and then leave the loop (EXIT_MMIO_WRITE); writes to code pages invalidate their blocks."""
    linear &= 0xFFFF_FFFF
    count(ctx_ptr, K.MEM_SLOW)
    st = load_i64(ctx_ptr + CTX_STATE * 8)
    first = 0x1000 - (linear & 0xFFF)
    if first >= size:
        host = translate(ctx_ptr, linear, ACC_WRITE, user)
        if host == MEM_FAULT:
            return MEM_FAULT
        phys = sget(st, S.MMIO_ADDR)
        if _write_part(ctx_ptr, host, phys, size, value):
            _note_code_write(ctx_ptr, linear, size, user)
        return 0
    second = (linear + first) & 0xFFFF_FFFF
    host_lo = translate(ctx_ptr, linear, ACC_WRITE, user)
    if host_lo == MEM_FAULT:
        return MEM_FAULT
    phys_lo = sget(st, S.MMIO_ADDR)
    host_hi = translate(ctx_ptr, second, ACC_WRITE, user)
    if host_hi == MEM_FAULT:
        return MEM_FAULT
    phys_hi = sget(st, S.MMIO_ADDR)
    count(ctx_ptr, K.MEM_CROSS_PAGE)
    if host_lo == _MMIO and host_hi == _MMIO:  # both halves in devices: one exit, split by Python
        sset(st, S.EXIT_REASON, S.EXIT_MMIO_WRITE)
        sset(st, S.EXIT_ARG0, phys_lo)
        sset(st, S.EXIT_ARG1, size)
        sset(st, S.EXIT_ARG2, value & ((1 << (8 * size)) - 1) if size < 8 else value)
        sset(st, S.EXIT_ARG3, (first << 32) | phys_hi)
        sset(st, S.STOP_AFTER_INSN, 1)
        return 0
    if _write_part(ctx_ptr, host_lo, phys_lo, first, value & ((1 << (8 * first)) - 1)):
        _note_code_write(ctx_ptr, linear, first, user)
    if _write_part(ctx_ptr, host_hi, phys_hi, size - first, value >> (8 * first)):
        _note_code_write(ctx_ptr, second, size - first, user)
    return 0


@njit(cache=True)
def _note_code_write(ctx_ptr, linear, size, user):
    """`size` bytes at `linear` (within one page) were written: if they overlap translated code,
    drop those blocks (SMC, blockcache.invalidate_range)."""
    ppn_head = load_i64(ctx_ptr + CTX_PAGECODE * 8)
    r = linear_to_phys(ctx_ptr, linear, 0, user)  # already known to be valid: no fault here
    if r < 0:
        return
    phys = r >> 1
    ppn = (phys >> PAGE_SHIFT) & (PHYS_PAGES - 1)
    if load_i32(ppn_head + ppn * 4) == 0:
        return
    off = phys & 0xFFF
    if invalidate_range(load_i64(ctx_ptr + CTX_BLOCKS * 8), ppn, off, off + size) > 0:
        count(ctx_ptr, K.SMC_WRITES)
        # The running block may be one of them: the loop leaves it after this instruction.
        sset(load_i64(ctx_ptr + CTX_STATE * 8), S.STOP_AFTER_INSN, 1)


@njit(cache=True)
def fetch_phys(ctx_ptr, linear, user):
    """Physical address of a code byte for the translator (execute access), or MEM_FAULT."""
    r = linear_to_phys(ctx_ptr, linear, ACC_EXEC, user)
    if r < 0:
        return MEM_FAULT
    return r >> 1


@njit(cache=True)
def phys_code_host(ctx_ptr, phys):
    """Host offset of a physical code byte, or -1 when the page is not RAM/ROM."""
    if phys >> 32:
        return -1
    entry = load_i64(load_i64(ctx_ptr + CTX_PMAP * 8) + ((phys >> PAGE_SHIFT) & (PHYS_PAGES - 1)) * 8)
    kind = entry & PM_KIND_MASK
    if kind != PM_RAM and kind != PM_ROM:
        return -1
    return (entry & ~PM_KIND_MASK) + (phys & 0xFFF)


__all__ = ["CTX_SIZE", "MEM_EXIT", "MEM_FAULT", "mem_read_slow", "mem_write_slow", "fetch_phys",
           "phys_code_host", "translate", "PM_UNMAPPED", "ACC_EXEC"]
