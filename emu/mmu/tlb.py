"""The software TLB: direct-mapped arrays indexed by virtual page, one table per kind of access.

Layout (one int64 array, `tlb`, of TLB_KINDS * TLB_ENTRIES * TLB_STRIDE):

    kind  = ACC_READ, ACC_WRITE or ACC_EXEC (separate tables, issue 4)
    entry = kind * TLB_ENTRIES + (vpn & TLB_INDEX_MASK)
    tlb[entry * TLB_STRIDE + TE_TAG]    = linear page | user bit   (-1: empty)
    tlb[entry * TLB_STRIDE + TE_ADDEND] = host offset of the page - linear page
    tlb[entry * TLB_STRIDE + TE_PHYS]   = physical page number | TEF_GLOBAL

The tag carries the privilege the entry was filled for (bit 0: filled for a CPL 3 access), so a user
access never hits an entry that a supervisor walk filled. A hit gives `mem_base + addend + linear`
as the host address of the byte. Only plain RAM (and ROM, for reads and fetches) is ever entered:
MMIO, open bus, ROM writes and writes to pages that hold translated code always take the slow path.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from emu.rawptr import load_i64, store_i64

ACC_READ = 0
ACC_WRITE = 1
ACC_EXEC = 2
TLB_KINDS = 3
TLB_BITS = 10
TLB_ENTRIES = 1 << TLB_BITS
TLB_INDEX_MASK = TLB_ENTRIES - 1
TLB_STRIDE = 4
TE_TAG = 0
TE_ADDEND = 1
TE_PHYS = 2
TEF_GLOBAL = 1 << 40  # in TE_PHYS: a CR4.PGE global page, kept by a CR3 reload
TEF_PPN_MASK = (1 << 40) - 1
TAG_USER = 1
TAG_EMPTY = -1
TLB_WORDS = TLB_KINDS * TLB_ENTRIES * TLB_STRIDE


def new_tlb() -> np.ndarray:
    tlb = np.zeros(TLB_WORDS, dtype=np.int64)
    tlb[TE_TAG::TLB_STRIDE] = TAG_EMPTY
    return tlb


@njit(cache=True)
def tlb_slot(kind, linear):
    """Index of the TE_TAG word for `linear` in table `kind`."""
    return ((kind << TLB_BITS) + ((linear >> 12) & TLB_INDEX_MASK)) * TLB_STRIDE


@njit(cache=True)
def tlb_flush_all(tlb_ptr, keep_global):
    """Empty every table; with keep_global, entries of global pages survive (a CR3 reload)."""
    for i in range(TLB_KINDS * TLB_ENTRIES):
        p = tlb_ptr + i * (TLB_STRIDE * 8)
        if keep_global and (load_i64(p + TE_PHYS * 8) & TEF_GLOBAL):
            continue
        store_i64(p + TE_TAG * 8, TAG_EMPTY)


@njit(cache=True)
def tlb_flush_page(tlb_ptr, linear):
    """INVLPG: drop the entries of one linear page in every table, global or not."""
    for kind in range(TLB_KINDS):
        p = tlb_ptr + tlb_slot(kind, linear) * 8
        if (load_i64(p) & ~TAG_USER) == (linear & ~0xFFF):
            store_i64(p, TAG_EMPTY)


@njit(cache=True)
def tlb_flush_phys_writes(tlb_ptr, ppn):
    """Drop the write entries that map physical page `ppn` (it now holds translated code)."""
    base = tlb_ptr + (ACC_WRITE << TLB_BITS) * TLB_STRIDE * 8
    for i in range(TLB_ENTRIES):
        p = base + i * (TLB_STRIDE * 8)
        if load_i64(p) != TAG_EMPTY and (load_i64(p + TE_PHYS * 8) & TEF_PPN_MASK) == ppn:
            store_i64(p, TAG_EMPTY)


@njit(cache=True)
def tlb_fill(tlb_ptr, kind, linear, user, host_off, ppn, global_page):
    p = tlb_ptr + tlb_slot(kind, linear) * 8
    page = linear & ~0xFFF
    store_i64(p + TE_TAG * 8, page | (TAG_USER if user else 0))
    store_i64(p + TE_ADDEND * 8, host_off - page)
    store_i64(p + TE_PHYS * 8, ppn | (TEF_GLOBAL if global_page else 0))
