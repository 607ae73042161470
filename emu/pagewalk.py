"""Read-only page walks in Python for the debuggers (gdb stub, monitor): SDM Vol 3 ch. 4.

32-bit paging (with PSE 4 MiB pages) and PAE (with 2 MiB pages and NX). Nothing here changes the
machine: no Accessed/Dirty bits, no #PF, no TLB fill. The compiled engine's own walk is
emu/mmu/paging.py; this one only looks.
"""

from __future__ import annotations

from collections.abc import Iterator

from emu.cpu import state as S

PG_P, PG_RW, PG_US, PG_PWT, PG_PCD, PG_A, PG_D, PG_PS, PG_G = 1, 2, 4, 8, 0x10, 0x20, 0x40, 0x80, 0x100
PG_NX = 1 << 63
CR0_PG = 1 << 31
CR4_PSE = 1 << 4
CR4_PAE = 1 << 5
PAE_ADDR = 0x000F_FFFF_FFFF_F000


def _u(core, addr: int, size: int) -> int:
    return int.from_bytes(core.read_phys(addr, size), "little")


def paging_enabled(core) -> bool:
    return bool(int(core.st[S.CR0]) & CR0_PG)


def linear_to_phys(core, la: int) -> int | None:
    """The physical address of linear `la`, or None when its page is not present."""
    st = core.st
    la &= 0xFFFF_FFFF
    cr4 = int(st[S.CR4])
    if paging_enabled(core):
        cr3 = int(st[S.CR3])
        if cr4 & CR4_PAE:
            pdpte = int(st[S.PDPTE0 + ((la >> 30) & 3)])
            if not pdpte & PG_P:
                return None
            pde = _u(core, (pdpte & PAE_ADDR) | ((la >> 18) & 0xFF8), 8)
            if not pde & PG_P:
                return None
            if pde & PG_PS:
                phys = (pde & 0x000F_FFFF_FFE0_0000) | (la & 0x1F_FFFF)
            else:
                pte = _u(core, (pde & PAE_ADDR) | ((la >> 9) & 0xFF8), 8)
                if not pte & PG_P:
                    return None
                phys = (pte & PAE_ADDR) | (la & 0xFFF)
        else:
            pde = _u(core, (cr3 & 0xFFFF_F000) | ((la >> 20) & 0xFFC), 4)
            if not pde & PG_P:
                return None
            if (pde & PG_PS) and (cr4 & CR4_PSE):
                phys = (pde & 0xFFC0_0000) | ((pde & 0x1E000) << 19) | (la & 0x3F_FFFF)
            else:
                pte = _u(core, (pde & 0xFFFF_F000) | ((la >> 10) & 0xFFC), 4)
                if not pte & PG_P:
                    return None
                phys = (pte & 0xFFFF_F000) | (la & 0xFFF)
    else:
        phys = la
    if phys >> 32:
        return None
    return phys & int(st[S.A20_MASK])


def read_linear(core, addr: int, length: int) -> bytes | None:
    """Linear memory; a short result when a page on the way is not mapped (None: the first)."""
    out = bytearray()
    while length > 0:
        n = min(length, 0x1000 - (addr & 0xFFF))
        phys = linear_to_phys(core, addr)
        if phys is None:
            break
        out += core.read_phys(phys, n)
        addr = (addr + n) & 0xFFFF_FFFF
        length -= n
    return bytes(out) if out else None


def mappings(core) -> Iterator[tuple[int, int, int, int, int]]:
    """Every present leaf: (linear address, page size, leaf entry, physical address, the
    effective U/W/P bits of the walk (ANDed over the levels) | NX of any level)."""
    st = core.st
    cr3, cr4 = int(st[S.CR3]), int(st[S.CR4])
    if cr4 & CR4_PAE:
        for i in range(4):
            pdpte = int(st[S.PDPTE0 + i])
            if not pdpte & PG_P:
                continue
            pd = _u_table(core, pdpte & PAE_ADDR, 8)
            for j, pde in enumerate(pd):
                if not pde & PG_P:
                    continue
                va = (i << 30) | (j << 21)
                if pde & PG_PS:
                    yield va, 1 << 21, pde, pde & 0x000F_FFFF_FFE0_0000, (pde & 7) | (pde & PG_NX)
                    continue
                pt = _u_table(core, pde & PAE_ADDR, 8)
                for k, pte in enumerate(pt):
                    if pte & PG_P:
                        prot = (pde & pte & 7) | ((pde | pte) & PG_NX)
                        yield va | (k << 12), 1 << 12, pte, pte & PAE_ADDR, prot
        return
    pd = _u_table(core, cr3 & 0xFFFF_F000, 4)
    for i, pde in enumerate(pd):
        if not pde & PG_P:
            continue
        va = i << 22
        if (pde & PG_PS) and (cr4 & CR4_PSE):
            phys = (pde & 0xFFC0_0000) | ((pde & 0x1E000) << 19)
            yield va, 1 << 22, pde, phys, pde & 7
            continue
        pt = _u_table(core, pde & 0xFFFF_F000, 4)
        for k, pte in enumerate(pt):
            if pte & PG_P:
                yield va | (k << 12), 1 << 12, pte, pte & 0xFFFF_F000, pde & pte & 7


def _u_table(core, addr: int, width: int) -> list[int]:
    raw = core.read_phys(addr, 4096)
    return [int.from_bytes(raw[i:i + width], "little") for i in range(0, 4096, width)]
