"""Linear-to-physical translation: the page walk of SDM Vol 3, chapter 4, inside compiled code.

Two formats, chosen by CR4.PAE:
- 32-bit paging (4.3): CR3 → page directory (1024 x 4-byte PDEs) → page table (1024 PTEs);
  a PDE with PS=1 and CR4.PSE=1 maps a 4 MiB page;
- PAE paging (4.4): four PDPTEs loaded from CR3 → page directory (512 x 8-byte) → page table; PS=1
  maps a 2 MiB page; bit 63 is XD when EFER.NXE=1. Long mode extends this walk by one level.

Access rights (4.6): a user access (CPL 3) needs U/S=1 at every level; a write needs R/W=1 at
every level, except that a supervisor write ignores R/W while CR0.WP=0. An instruction fetch from
an XD page faults. Only when the access is allowed does the walk set the Accessed bits, and the
Dirty bit of the final entry on a write (4.8). A fault sets CR2 and leaves #PF (vector 14) with the
error code of 4.7 in FAULT_VECTOR/FAULT_ERROR.
"""

from __future__ import annotations

from numba import njit

from emu.cpu import state as S
from emu.mmu.physmap import PAGE_SHIFT, PHYS_PAGES, PM_KIND_MASK, PM_MMIO, PM_UNMAPPED
from emu.rawptr import load_i64, load_u32, store_i64, store_u32

CR0_PE = 1 << 0
CR0_WP = 1 << 16
CR0_PG = 1 << 31
CR4_PSE = 1 << 4
CR4_PAE = 1 << 5
CR4_PGE = 1 << 7
EFER_NXE = 1 << 11

PTE_P = 1 << 0
PTE_RW = 1 << 1
PTE_US = 1 << 2
PTE_A = 1 << 5
PTE_D = 1 << 6
PTE_PS = 1 << 7
PTE_G = 1 << 8
PTE_XD = 1 << 63

PF_VECTOR = 14
PFEC_P = 1 << 0  # the fault was a protection violation (0: a not-present page)
PFEC_W = 1 << 1  # the access was a write
PFEC_U = 1 << 2  # the access came from CPL 3
PFEC_RSVD = 1 << 3
PFEC_I = 1 << 4  # an instruction fetch (reported only with NX on)

WALK_GLOBAL = 1  # low bits of a successful walk's result
WALK_FAULT = -1

ADDR_MASK_32 = 0xFFFFF000
ADDR_MASK_PAE = 0x000F_FFFF_FFFF_F000  # 52-bit physical addresses


@njit(cache=True)
def phys_host(pmap_ptr, phys):
    """Host offset of a physical byte in RAM/ROM, or -1 for MMIO or open bus (page tables there
    read as all-ones, as unmapped memory does)."""
    if phys >> 32:
        return -1  # PAE/PSE-36 addresses above 4 GiB: nothing is there (not an alias of low memory)
    entry = load_i64(pmap_ptr + ((phys >> PAGE_SHIFT) & (PHYS_PAGES - 1)) * 8)
    if entry & (PM_MMIO | PM_UNMAPPED):
        return -1
    return (entry & ~PM_KIND_MASK) + (phys & 0xFFF)


@njit(cache=True)
def _rd_entry(mem_ptr, pmap_ptr, phys, wide):
    off = phys_host(pmap_ptr, phys)
    if off < 0:
        return -1 if wide else 0xFFFF_FFFF  # all-ones, as an int64 (not uint64)
    if wide:
        return load_i64(mem_ptr + off)
    return load_u32(mem_ptr + off)


@njit(cache=True)
def _set_bits(mem_ptr, pmap_ptr, phys, bits):
    """Set A/D bits in a page-table entry's low dword (RAM only; ROM tables stay as they are)."""
    if phys >> 32:
        return
    entry = load_i64(pmap_ptr + ((phys >> PAGE_SHIFT) & (PHYS_PAGES - 1)) * 8)
    if entry & PM_KIND_MASK:
        return
    p = mem_ptr + (entry & ~PM_KIND_MASK) + (phys & 0xFFF)
    old = load_u32(p)
    if (old | bits) != old:
        store_u32(p, old | bits)


@njit(cache=True)
def page_walk(st_ptr, mem_ptr, pmap_ptr, linear, acc, user):
    """Translate `linear` for an access of kind acc (0 read, 1 write, 2 fetch) at user privilege.

    Returns the physical page address | WALK_GLOBAL, or WALK_FAULT after recording #PF.
    """
    cr0 = load_i64(st_ptr + S.CR0 * 8)
    cr4 = load_i64(st_ptr + S.CR4 * 8)
    cr3 = load_i64(st_ptr + S.CR3 * 8)
    a20 = load_i64(st_ptr + S.A20_MASK * 8) | ~0xFFFF_FFFF  # bit 20 only: PAE tables may sit above 4 GiB
    write = acc == 1
    wp = (cr0 & CR0_WP) != 0
    pae = (cr4 & CR4_PAE) != 0
    nx = pae and (load_i64(st_ptr + S.EFER * 8) & EFER_NXE) != 0
    present = True
    rsvd = False
    allowed_us = True
    allowed_rw = True
    xd = False
    big = False
    pde_addr = 0
    pte_addr = 0
    entry = 0
    phys = 0
    if not pae:
        pde_addr = ((cr3 & ADDR_MASK_32) | ((linear >> 20) & 0xFFC)) & a20
        pde = _rd_entry(mem_ptr, pmap_ptr, pde_addr, False)
        if not (pde & PTE_P):
            present = False
        else:
            allowed_us = (pde & PTE_US) != 0
            allowed_rw = (pde & PTE_RW) != 0
            if (pde & PTE_PS) and (cr4 & CR4_PSE):
                big = True
                entry = pde
                # PSE-36: PDE bits 13..16 are physical address bits 32..35
                phys = (pde & 0xFFC0_0000) | ((pde & 0x1E000) << 19) | (linear & 0x3FF000)
            else:
                pte_addr = ((pde & ADDR_MASK_32) | ((linear >> 10) & 0xFFC)) & a20
                pte = _rd_entry(mem_ptr, pmap_ptr, pte_addr, False)
                if not (pte & PTE_P):
                    present = False
                else:
                    allowed_us = allowed_us and (pte & PTE_US) != 0
                    allowed_rw = allowed_rw and (pte & PTE_RW) != 0
                    entry = pte
                    phys = pte & ADDR_MASK_32
    else:
        pdpte = load_i64(st_ptr + (S.PDPTE0 + ((linear >> 30) & 3)) * 8)
        if not (pdpte & PTE_P):
            present = False
        else:
            pde_addr = ((pdpte & ADDR_MASK_PAE) | ((linear >> 18) & 0xFF8)) & a20
            pde = _rd_entry(mem_ptr, pmap_ptr, pde_addr, True)
            if not (pde & PTE_P):
                present = False
            else:
                if (pde & PTE_XD) and not nx:
                    rsvd = True
                allowed_us = (pde & PTE_US) != 0
                allowed_rw = (pde & PTE_RW) != 0
                xd = nx and (pde & PTE_XD) != 0
                if pde & PTE_PS:
                    big = True
                    entry = pde
                    phys = (pde & 0x000F_FFFF_FFE0_0000) | (linear & 0x1FF000)
                else:
                    pte_addr = ((pde & ADDR_MASK_PAE) | ((linear >> 9) & 0xFF8)) & a20
                    pte = _rd_entry(mem_ptr, pmap_ptr, pte_addr, True)
                    if not (pte & PTE_P):
                        present = False
                    else:
                        if (pte & PTE_XD) and not nx:
                            rsvd = True
                        allowed_us = allowed_us and (pte & PTE_US) != 0
                        allowed_rw = allowed_rw and (pte & PTE_RW) != 0
                        xd = xd or (nx and (pte & PTE_XD) != 0)
                        entry = pte
                        phys = pte & ADDR_MASK_PAE
    fault = not present or rsvd
    if not fault:
        if user and not allowed_us:
            fault = True
        elif write and not allowed_rw and (user or wp):
            fault = True
        elif acc == 2 and xd:
            fault = True
    if fault:
        code = 0
        if present:
            code |= PFEC_P
        if rsvd:
            code |= PFEC_RSVD | PFEC_P
        if write:
            code |= PFEC_W
        if user:
            code |= PFEC_U
        if acc == 2 and nx:
            code |= PFEC_I
        store_i64(st_ptr + S.CR2 * 8, linear)
        store_i64(st_ptr + S.FAULT_VECTOR * 8, PF_VECTOR)
        store_i64(st_ptr + S.FAULT_ERROR * 8, code)
        return WALK_FAULT
    # The access is allowed: set Accessed bits on the way down and Dirty on a write (4.8).
    if big:
        _set_bits(mem_ptr, pmap_ptr, pde_addr, PTE_A | (PTE_D if write else 0))
    else:
        _set_bits(mem_ptr, pmap_ptr, pde_addr, PTE_A)
        _set_bits(mem_ptr, pmap_ptr, pte_addr, PTE_A | (PTE_D if write else 0))
    glob = 1 if ((entry & PTE_G) and (cr4 & CR4_PGE)) else 0
    return (phys & ~0xFFF) | glob

