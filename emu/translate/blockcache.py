"""The translation-block cache: block records, the row pool, the lookup table and page lists.

A translation block (TB) is a run of decoded guest instructions starting at one physical address,
valid for one set of mode bits (HFLAGS: CS.D, SS.B, PE, VM, CPL). Its instructions are rows of
fixed-width integers in a preallocated pool (`rows`, see emu/translate/rowfmt.py). Records live in
`tbs` (TB_WIDTH int64 fields per block):

    TB_PHYS      physical address of the first byte (-1: invalidated)
    TB_HFLAGS    the mode bits it was translated for
    TB_ROW       first row in the pool; TB_NROWS rows follow
    TB_BYTES     guest code bytes covered
    TB_NEXT0/1   chained successor for the block's two direct exits (-1: none yet)
    TB_PAGE0/1   physical page numbers holding its code (-1 for the second when it doesn't cross)
    TB_LINK0/1   the next link in each page's list (a link is tb*2 + which-page; -1 ends the list)
    TB_EXECS     how often it ran (for tier-1 selection)
    TB_FN        tier 1: the address of its compiled function (> 0), or TB_FN_NONE/NEVER/QUEUED

Lookup is a 2-way set-associative table (`table`, TABLE_SETS x 2 block indices) hashed from the
physical PC and HFLAGS: execution.md measured that a direct-mapped table's collisions cost 1.7x on
large code, and that a miss must not leave compiled code, so the second way catches collisions.

A page that holds code has `page_head[ppn] != 0` (the first link + 1), and `page_mask[ppn]` has a
bit for each 128-byte granule of it that some block's bytes cover (as Bochs and halfix track code
finer than pages). The memory path checks both on every slow-path write (code pages get no write
TLB entries): a write whose bytes miss every granule with code costs nothing more; one that hits
invalidates the blocks whose bytes it overlaps, exactly, before the next instruction runs. Data
that shares a page with code (GRUB's and many boot loaders' variables) no longer throws the code
away on every store. When the pool or the record array fills up, everything is flushed at once, as in
Bochs and halfix: this keeps chain links trivially safe.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from emu.mmu.physmap import PHYS_PAGES
from emu.rawptr import load_i32, load_i64, load_u32, store_i64, store_u32

TB_PHYS = 0
TB_HFLAGS = 1
TB_ROW = 2
TB_NROWS = 3
TB_BYTES = 4
TB_NEXT0 = 5
TB_NEXT1 = 6
TB_PAGE0 = 7
TB_PAGE1 = 8
TB_LINK0 = 9
TB_LINK1 = 10
TB_EXECS = 11
TB_EIP = 12  # EIP at first translation (for logs only: blocks are position-independent)
TB_CSBASE = 13
TB_FN = 14  # tier 1: the compiled function's address, or one of the TB_FN_* states below
TB_WIDTH = 16
TB_FN_NONE = 0  # not compiled (yet)
TB_FN_NEVER = -1  # nothing in it that tier 1 compiles
TB_FN_QUEUED = -2  # waiting in the compile queue

MAX_TBS = 1 << 16
TABLE_BITS = 15
TABLE_SETS = 1 << TABLE_BITS
TABLE_WAYS = 2
TABLE_HFLAGS_MIX = 0x9E37  # spreads the mode bits over the sets (tier1._jump_indirect hashes alike)

# The block cache's control words, in `bc` (an int64 array).
BC_NTBS = 0  # records in use
BC_NROWS = 1  # pool rows in use
BC_MAXROWS = 2
BC_GENERATION = 3  # bumps on every full flush
BC_INVALIDATED = 4
BC_FLUSHES = 5
BC_TBS_PTR = 6
BC_TABLE_PTR = 7
BC_PAGEHEAD_PTR = 8
BC_PAGEMASK_PTR = 9
BC_T1_QLEN = 10  # tier 1: blocks waiting in the compile queue
BC_T1_THRESHOLD = 11  # executions after which a block is queued for tier 1 (0: tier 1 off)
BC_T1_QUEUE = 16  # the queue: block numbers
T1_QMAX = 32  # a full queue makes the loop leave (EXIT_COMPILE) so Python compiles the batch
BC_SIZE = BC_T1_QUEUE + T1_QMAX

PAGE_SIZE = 4096
PAGE_OFFSET_MASK = PAGE_SIZE - 1
GRANULE_SHIFT = 7  # 128-byte code granules: 32 per page, one uint32 mask per page


class BlockCache:
    """Owns the arrays; compiled code gets them as arguments or through `bc`'s pointers."""

    def __init__(self, max_rows: int = 1 << 19, max_tbs: int = MAX_TBS):
        from emu.translate.rowfmt import ROW_WIDTH

        self.tbs = np.full(max_tbs * TB_WIDTH, -1, dtype=np.int64)
        self.rows = np.zeros(max_rows * ROW_WIDTH, dtype=np.int64)
        self.table = np.full(TABLE_SETS * TABLE_WAYS, -1, dtype=np.int64)
        self.page_head = np.zeros(PHYS_PAGES, dtype=np.int32)
        self.page_mask = np.zeros(PHYS_PAGES, dtype=np.uint32)
        self.bc = np.zeros(BC_SIZE, dtype=np.int64)
        self.bc[BC_MAXROWS] = max_rows
        self.bc[BC_TBS_PTR] = self.tbs.ctypes.data
        self.bc[BC_TABLE_PTR] = self.table.ctypes.data
        self.bc[BC_PAGEHEAD_PTR] = self.page_head.ctypes.data
        self.bc[BC_PAGEMASK_PTR] = self.page_mask.ctypes.data
        self.max_tbs = max_tbs

    def flush(self) -> None:
        flush_all(self.bc.ctypes.data, len(self.tbs) // TB_WIDTH)

    def live_blocks(self) -> int:
        n = int(self.bc[BC_NTBS])
        return int(np.count_nonzero(self.tbs[TB_PHYS: n * TB_WIDTH: TB_WIDTH] >= 0))


@njit(cache=True)
def table_set(phys, hflags):
    h = phys ^ (phys >> TABLE_BITS) ^ (hflags * TABLE_HFLAGS_MIX)
    return (h & (TABLE_SETS - 1)) * TABLE_WAYS


@njit(cache=True)
def flush_all(bc_ptr, max_tbs):
    """Forget every block: records, the lookup table and the page lists."""
    tbs = load_i64(bc_ptr + BC_TBS_PTR * 8)
    table = load_i64(bc_ptr + BC_TABLE_PTR * 8)
    heads = load_i64(bc_ptr + BC_PAGEHEAD_PTR * 8)
    masks = load_i64(bc_ptr + BC_PAGEMASK_PTR * 8)
    n = load_i64(bc_ptr + BC_NTBS * 8)
    for tb in range(n):
        p = tbs + tb * TB_WIDTH * 8
        for k in range(2):
            ppn = load_i64(p + (TB_PAGE0 + k) * 8)
            if ppn >= 0:
                store_u32(heads + (ppn & (PHYS_PAGES - 1)) * 4, 0)
                store_u32(masks + (ppn & (PHYS_PAGES - 1)) * 4, 0)
        store_i64(p + TB_PHYS * 8, -1)
    for i in range(TABLE_SETS * TABLE_WAYS):
        store_i64(table + i * 8, -1)
    store_i64(bc_ptr + BC_NTBS * 8, 0)
    store_i64(bc_ptr + BC_NROWS * 8, 0)
    store_i64(bc_ptr + BC_T1_QLEN * 8, 0)  # queued records are gone too
    store_i64(bc_ptr + BC_GENERATION * 8, load_i64(bc_ptr + BC_GENERATION * 8) + 1)
    store_i64(bc_ptr + BC_FLUSHES * 8, load_i64(bc_ptr + BC_FLUSHES * 8) + 1)


@njit(cache=True)
def invalidate_page(bc_ptr, ppn):
    """Drop every block with code on physical page `ppn` (a guest wrote to it). Returns how many."""
    tbs = load_i64(bc_ptr + BC_TBS_PTR * 8)
    table = load_i64(bc_ptr + BC_TABLE_PTR * 8)
    heads = load_i64(bc_ptr + BC_PAGEHEAD_PTR * 8)
    ppn &= PHYS_PAGES - 1
    link = load_i32(heads + ppn * 4) - 1
    store_u32(heads + ppn * 4, 0)
    store_u32(load_i64(bc_ptr + BC_PAGEMASK_PTR * 8) + ppn * 4, 0)
    dropped = 0
    while link >= 0:
        tb = link >> 1
        p = tbs + tb * TB_WIDTH * 8
        nxt = load_i64(p + (TB_LINK0 + (link & 1)) * 8)
        phys = load_i64(p + TB_PHYS * 8)
        if phys >= 0:
            s = table_set(phys, load_i64(p + TB_HFLAGS * 8))
            for w in range(TABLE_WAYS):
                if load_i64(table + (s + w) * 8) == tb:
                    store_i64(table + (s + w) * 8, -1)
            store_i64(p + TB_PHYS * 8, -1)
            dropped += 1
        link = nxt
    store_i64(bc_ptr + BC_INVALIDATED * 8, load_i64(bc_ptr + BC_INVALIDATED * 8) + dropped)
    return dropped


@njit(cache=True)
def page_has_code(bc_ptr, ppn):
    heads = load_i64(bc_ptr + BC_PAGEHEAD_PTR * 8)
    return load_i32(heads + (ppn & (PHYS_PAGES - 1)) * 4) != 0


@njit(cache=True)
def granule_bits(lo, hi):
    """The mask of the 128-byte granules that page offsets [lo, hi) touch (0 <= lo < hi <= 4096)."""
    first = lo >> GRANULE_SHIFT
    last = (hi - 1) >> GRANULE_SHIFT
    return ((1 << (last + 1)) - 1) ^ ((1 << first) - 1)


@njit(cache=True)
def _tb_span(tbs, tb, k):
    """Page offsets [lo, hi) of block `tb`'s bytes on its k-th page."""
    start = load_i64(tbs + (tb * TB_WIDTH + TB_PHYS) * 8) & PAGE_OFFSET_MASK
    end = start + load_i64(tbs + (tb * TB_WIDTH + TB_BYTES) * 8)
    if k == 0:
        return start, min(end, PAGE_SIZE)
    return 0, end - PAGE_SIZE


@njit(cache=True)
def link_page(bc_ptr, tb, k, ppn):
    """Put block `tb` at the head of page `ppn`'s list as its k-th page, and mark its granules.
    The block's TB_PHYS and TB_BYTES must be set."""
    tbs = load_i64(bc_ptr + BC_TBS_PTR * 8)
    heads = load_i64(bc_ptr + BC_PAGEHEAD_PTR * 8)
    masks = load_i64(bc_ptr + BC_PAGEMASK_PTR * 8)
    ppn &= PHYS_PAGES - 1
    old = load_i32(heads + ppn * 4) - 1
    store_i64(tbs + (tb * TB_WIDTH + TB_LINK0 + k) * 8, old)
    store_u32(heads + ppn * 4, tb * 2 + k + 1)
    lo, hi = _tb_span(tbs, tb, k)
    if hi > lo:
        store_u32(masks + ppn * 4, load_u32(masks + ppn * 4) | granule_bits(lo, hi))


@njit(cache=True)
def invalidate_range(bc_ptr, ppn, lo, hi):
    """A guest wrote page offsets [lo, hi) of physical page `ppn`: drop the blocks whose bytes
    overlap them (none when the write misses every granule with code), unlink dead records from
    the page's list and recompute its granule mask. Returns how many blocks were dropped."""
    ppn &= PHYS_PAGES - 1
    masks = load_i64(bc_ptr + BC_PAGEMASK_PTR * 8)
    if load_u32(masks + ppn * 4) & granule_bits(lo, hi) == 0:
        return 0
    tbs = load_i64(bc_ptr + BC_TBS_PTR * 8)
    table = load_i64(bc_ptr + BC_TABLE_PTR * 8)
    heads = load_i64(bc_ptr + BC_PAGEHEAD_PTR * 8)
    link = load_i32(heads + ppn * 4) - 1
    prev = -1  # the link whose next pointer leads to `link` (-1: the page head)
    mask = 0
    dropped = 0
    while link >= 0:
        tb = link >> 1
        k = link & 1
        slot = tbs + (tb * TB_WIDTH + TB_LINK0 + k) * 8
        nxt = load_i64(slot)
        phys = load_i64(tbs + (tb * TB_WIDTH + TB_PHYS) * 8)
        keep = phys >= 0
        if keep:
            t_lo, t_hi = _tb_span(tbs, tb, k)
            if t_lo < hi and lo < t_hi:
                s = table_set(phys, load_i64(tbs + (tb * TB_WIDTH + TB_HFLAGS) * 8))
                for w in range(TABLE_WAYS):
                    if load_i64(table + (s + w) * 8) == tb:
                        store_i64(table + (s + w) * 8, -1)
                store_i64(tbs + (tb * TB_WIDTH + TB_PHYS) * 8, -1)
                dropped += 1
                keep = False
            elif t_hi > t_lo:
                mask |= granule_bits(t_lo, t_hi)
        if keep:
            prev = link
        elif prev < 0:
            store_u32(heads + ppn * 4, nxt + 1)
        else:
            store_i64(tbs + ((prev >> 1) * TB_WIDTH + TB_LINK0 + (prev & 1)) * 8, nxt)
        link = nxt
    store_u32(masks + ppn * 4, mask)
    store_i64(bc_ptr + BC_INVALIDATED * 8, load_i64(bc_ptr + BC_INVALIDATED * 8) + dropped)
    return dropped
