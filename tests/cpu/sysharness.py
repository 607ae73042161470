"""A minimal machine for driving compiled system helpers directly (no translator, no loop).

The helpers take raw pointers and plain integers, so Python can call them: this builds the state
array, RAM/pmap, TLB and the slow-path context they expect, with flat protected-mode helpers for
writing descriptor tables.
"""

from __future__ import annotations

import struct

import numpy as np

from emu import stats as K
from emu.cpu import state as S
from emu.cpu.access import seg_summary
from emu.mmu import softmmu as M
from emu.mmu.physmap import PHYS_PAGES, PhysMap
from emu.mmu.tlb import new_tlb

RPL_MASK = 3


def desc(base: int, limit: int, access: int, flags: int = 0xC) -> bytes:
    """An 8-byte segment/system descriptor (flags nibble: G, D/B, L, AVL)."""
    lo = (limit & 0xFFFF) | ((base & 0xFFFF) << 16)
    hi = ((base >> 16) & 0xFF) | (access << 8) | (((limit >> 16) & 0xF) << 16) | (flags << 20) \
        | (base & 0xFF00_0000)
    return struct.pack("<II", lo, hi)


def gate(sel: int, offset: int, access: int, params: int = 0) -> bytes:
    lo = (offset & 0xFFFF) | (sel << 16)
    hi = (offset & 0xFFFF_0000) | (access << 8) | (params & 0x1F)
    return struct.pack("<II", lo, hi)


class Machine:
    def __init__(self, ram_bytes: int = 2 << 20):
        self.pm = PhysMap(ram_bytes)
        self.st = S.new_state()
        self.tlb = new_tlb()
        self.pagecode = np.zeros(PHYS_PAGES, dtype=np.int32)
        self.stats = K.new_stats()
        self.ctx = np.zeros(M.CTX_SIZE, dtype=np.int64)
        self.ctx[M.CTX_STATE] = self.st.ctypes.data
        self.ctx[M.CTX_MEM] = self.pm.mem.ctypes.data
        self.ctx[M.CTX_PMAP] = self.pm.pmap.ctypes.data
        self.ctx[M.CTX_TLB] = self.tlb.ctypes.data
        self.ctx[M.CTX_PAGECODE] = self.pagecode.ctypes.data
        self.ctx[M.CTX_STATS] = self.stats.ctypes.data
        self.sp = self.st.ctypes.data
        self.tp = self.tlb.ctypes.data
        self.mp = self.pm.mem.ctypes.data
        self.cp = self.ctx.ctypes.data

    @property
    def ptrs(self):
        return self.sp, self.tp, self.mp, self.cp

    def write(self, addr: int, data: bytes) -> None:
        self.pm.write(addr, data)

    def read(self, addr: int, n: int) -> bytes:
        return self.pm.read(addr, n)

    def u32(self, addr: int) -> int:
        return struct.unpack("<I", self.read(addr, 4))[0]

    def set_seg(self, seg: int, sel: int, base: int, limit: int, attr: int) -> None:
        st = self.st
        pe = bool(st[S.CR0] & 1)
        vm = bool(st[S.EFLAGS] & (1 << 17))
        null = pe and not vm and (sel & 0xFFFC) == 0 and seg != S.CS
        st[S.seg_slot(seg, S.SEG_SEL)] = sel
        st[S.seg_slot(seg, S.SEG_BASE)] = base
        st[S.seg_slot(seg, S.SEG_LIMIT)] = limit
        st[S.seg_slot(seg, S.SEG_ATTR)] = seg_summary(attr, pe, vm, null)

    def protected_flat(self, gdt_base: int, entries: list[bytes], cpl: int = 0) -> None:
        """CR0.PE=1, a GDT at gdt_base holding `entries` (entry 0 is the null descriptor), CS=08h
        flat 32-bit code, DS/ES/SS=10h flat data (both at DPL cpl)."""
        table = b"\0" * 8 + b"".join(entries)
        self.write(gdt_base, table)
        st = self.st
        st[S.GDTR_BASE] = gdt_base
        st[S.GDTR_LIMIT] = len(table) - 1
        st[S.CR0] |= 1
        st[S.CPL] = cpl
        dpl = cpl << S.ATTR_DPL_SHIFT
        code = S.ATTR_P | S.ATTR_S | S.ATTR_CODE | S.ATTR_WRITABLE | S.ATTR_ACCESSED | S.ATTR_DB | S.ATTR_G
        data = S.ATTR_P | S.ATTR_S | S.ATTR_WRITABLE | S.ATTR_ACCESSED | S.ATTR_DB | S.ATTR_G
        self.set_seg(S.CS, 0x08 | cpl, 0, 0xFFFF_FFFF, code | dpl)
        for seg in (S.DS, S.ES, S.SS, S.FS, S.GS):
            self.set_seg(seg, 0x10 | cpl, 0, 0xFFFF_FFFF, data | dpl)
        from emu.cpu.segments import update_hflags
        update_hflags(self.sp)

    def fault(self) -> tuple[int, int]:
        return int(self.st[S.FAULT_VECTOR]), int(self.st[S.FAULT_ERROR])

    def clear_fault(self) -> None:
        self.st[S.FAULT_VECTOR] = -1
        self.st[S.FAULT_ERROR] = -1
