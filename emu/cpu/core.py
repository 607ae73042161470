"""CpuCore: one x86 CPU with its memory, TLB and block cache, driven from Python.

This is the engine without the PC around it: tests, benchmarks and the machine use it. It owns the
arrays the compiled loop works on (state, RAM, TLB, block cache, statistics), wires the context
array of raw pointers, and offers small Python conveniences (register access, physical memory
access, single stepping). Python never runs guest instructions itself: `run` calls the compiled
loop, which returns only with an exit reason.
"""

from __future__ import annotations

import time

import numpy as np

from emu import numbaload  # noqa: F401 - first: it speeds up loading the engine's cached code
from emu import stats as K
from emu.cpu import flags as F
from emu.cpu import state as S
from emu.cpu.eflags import WRITABLE
from emu.cpu.interp import deliver_external, run
from emu.cpu.tracelog import CTX_LOG, new_ring
from emu.mmu import softmmu as M
from emu.mmu.physmap import PhysMap
from emu.mmu.tlb import new_tlb, tlb_flush_all
from emu.translate import decoder as D
from emu.translate import translator as T
from emu.translate.blockcache import BC_T1_QLEN, BC_T1_THRESHOLD, BlockCache, flush_all
from emu.translate.tier1 import Tier1

RUN_FOREVER = 1 << 62
# Executions of a block before it is compiled (tier 1); 0 turns tier 1 off. 20,000 and not 2,000:
# a Linux boot then compiles 94 % of its instructions with 6 s of compile work instead of 75 % with
# 21 s (lukewarm blocks kept the worker from the hot ones): 28.7 s -> 17.9 s; the benchmark guests
# are unchanged within 5 % (benchmarks/results/2026-12-06-threshold.txt).
TIER1_THRESHOLD = 20_000
TIER1_BATCH = 16  # blocks compiled together (the queue holds up to T1_QMAX; a full one always compiles)
TIER1_WAIT_NS = 10_000_000  # ... or fewer, once they have waited this long (a small hot loop)


def default_tier1_threshold() -> int:
    """The tier-1 threshold: TIER1_THRESHOLD, or $PYEMU_TIER1_THRESHOLD (tests force 1)."""
    import os

    try:
        return max(0, int(os.environ.get("PYEMU_TIER1_THRESHOLD", TIER1_THRESHOLD)))
    except ValueError:
        return TIER1_THRESHOLD


class CpuCore:
    """A CPU, its physical memory map and the compiled engine's arrays."""

    def __init__(self, ram_bytes: int = 16 << 20, bios_rom: bytes | None = None,
                 max_rows: int = 1 << 18, tier1_threshold: int | None = None):
        self.phys = PhysMap(ram_bytes, bios_rom)
        self.mem = self.phys.mem
        self.st = S.new_state()
        self.tlb = new_tlb()
        self.stats = K.new_stats()
        self.blocks = BlockCache(max_rows=max_rows)
        self.tier1 = Tier1(self.blocks, self.stats)
        self._queue_seen = 0  # when a run first ended with blocks queued (perf_counter ns)
        self.compile_hook = None  # called with the host ns each tier-1 compile took (the PC's clock skips them)
        self.set_tier1_threshold(default_tier1_threshold() if tier1_threshold is None else tier1_threshold)
        self.dec_out = np.zeros(D.OUT_SIZE, dtype=np.int64)
        self.ctx = np.zeros(M.CTX_SIZE, dtype=np.int64)
        self.ctx[M.CTX_STATE] = self.st.ctypes.data
        self.ctx[M.CTX_MEM] = self.mem.ctypes.data
        self.ctx[M.CTX_PMAP] = self.phys.pmap.ctypes.data
        self.ctx[M.CTX_TLB] = self.tlb.ctypes.data
        self.ctx[M.CTX_PAGECODE] = self.blocks.page_head.ctypes.data
        self.ctx[M.CTX_STATS] = self.stats.ctypes.data
        self.ctx[M.CTX_BLOCKS] = self.blocks.bc.ctypes.data
        self.log_ring = new_ring()
        self.ctx[CTX_LOG] = self.log_ring.ctypes.data
        self.reset()

    # -- control ------------------------------------------------------------------------
    def reset(self) -> None:
        """Power-on reset: F000:FFF0, real mode (SDM Vol 3, 9.1)."""
        S.reset_state(self.st)
        self.flush_tlb()

    def run(self, max_insns: int = RUN_FOREVER) -> int:
        """Run until an exit or `max_insns` instructions; returns the exit reason (S.EXIT_*)."""
        st = self.st
        st[S.BUDGET] = max_insns
        b = self.blocks
        while True:
            reason = int(run(st, self.mem, self.tlb, self.ctx, self.stats, b.rows, b.tbs, b.table, b.bc,
                             self.dec_out, T.FORM_H, T.FORM_AUX, T.ENDS_BLOCK))
            tier1 = self.tier1
            tier1.install()  # what the worker finished meanwhile
            queued = b.bc[BC_T1_QLEN]
            if not queued:
                self._queue_seen = 0
            elif tier1.background:
                t0 = time.perf_counter_ns()
                tier1.drain()  # the worker merges whatever waits into its next module
                if self.compile_hook is not None:  # (its LLVM IR is generated here, on this thread)
                    self.compile_hook(time.perf_counter_ns() - t0)
            else:
                if not self._queue_seen:
                    self._queue_seen = time.perf_counter_ns()
                if (queued >= self.tier1_batch or reason in (S.EXIT_COMPILE, S.EXIT_HLT)
                        or time.perf_counter_ns() - self._queue_seen > TIER1_WAIT_NS):
                    self._queue_seen = 0
                    t0 = time.perf_counter_ns()
                    tier1.drain()  # compile what turned hot: a batch per module, or while the guest idles
                    if self.compile_hook is not None:
                        self.compile_hook(time.perf_counter_ns() - t0)
            if reason != S.EXIT_COMPILE:
                return reason
            st[S.EXIT_REASON] = S.EXIT_NONE

    def set_tier1_threshold(self, executions: int) -> None:
        """Executions after which a block is compiled; 0 turns tier 1 off (`-accel tcg,tier=0`).
        Blocks are compiled TIER1_BATCH to a module (a module's fixed cost is most of a small one's),
        or one by one when the threshold is tiny (tests that compile everything)."""
        self.blocks.bc[BC_T1_THRESHOLD] = max(0, int(executions))
        self.tier1_batch = 1 if executions < TIER1_BATCH else TIER1_BATCH
        if executions < TIER1_BATCH:
            self.tier1.background = False  # compile each block as it turns hot, before the loop goes on

    def step(self) -> int:
        """Execute exactly one instruction (an exception it raises is delivered)."""
        return self.run(1)

    def deliver_interrupt(self, vector: int) -> None:
        deliver_external(self.st, self.tlb, self.mem, self.ctx, vector)

    def flush_tlb(self) -> None:
        tlb_flush_all(self.tlb.ctypes.data, False)

    def flush_blocks(self) -> None:
        flush_all(self.blocks.bc.ctypes.data, len(self.blocks.tbs) // 16)

    def map_pages(self, base: int, size: int, kind: int) -> None:
        """Switch the pages of [base, base+size) to RAM or ROM backed by the host bytes at the same
        offset (identity, as low memory is laid out), or to MMIO (a region `phys.add_mmio` has
        registered), while the machine runs: a device whose window changes with its registers (the
        VGA). Drops the TLB and any translated code on those pages."""
        from emu.mmu.physmap import PAGE_SHIFT, PM_MMIO
        from emu.translate.blockcache import invalidate_page

        first, count = base >> PAGE_SHIFT, size >> PAGE_SHIFT
        heads = self.blocks.page_head
        for ppn in range(first, first + count):
            self.phys.pmap[ppn] = PM_MMIO if kind == PM_MMIO else (ppn << PAGE_SHIFT) | kind
            if heads[ppn]:
                invalidate_page(self.blocks.bc.ctypes.data, ppn)
        self.flush_tlb()

    def swap_page_entries(self, base: int, entries) -> np.ndarray:
        """Put `entries` (physical map entries, `physmap.pmap` format) on the pages from `base`
        and return the entries they replace, so that a device that starts decoding a range (a
        PCI BAR) can give the pages back when it stops. Drops the TLB and translated code there."""
        from emu.mmu.physmap import PAGE_SHIFT, PHYS_PAGES
        from emu.translate.blockcache import invalidate_page

        entries = np.asarray(entries, dtype=np.int64)
        first = base >> PAGE_SHIFT
        if base & ((1 << PAGE_SHIFT) - 1) or first + len(entries) > PHYS_PAGES:
            raise ValueError(f"pages at {base:#x} are not page-aligned or run past 4 GiB")
        old = self.phys.pmap[first:first + len(entries)].copy()
        self.phys.pmap[first:first + len(entries)] = entries
        heads = self.blocks.page_head
        for ppn in range(first, first + len(entries)):
            if heads[ppn]:
                invalidate_page(self.blocks.bc.ctypes.data, ppn)
        self.flush_tlb()
        return old

    def set_a20(self, enabled: bool) -> None:
        self.st[S.A20_MASK] = 0xFFFF_FFFF if enabled else 0xFFEF_FFFF
        self.flush_tlb()

    # -- registers ----------------------------------------------------------------------
    def get_reg16(self, r: int) -> int:
        return int(self.st[r]) & 0xFFFF

    def set_reg16(self, r: int, value: int) -> None:
        self.st[r] = (int(self.st[r]) & 0xFFFF_0000) | (value & 0xFFFF)

    def get_reg32(self, r: int) -> int:
        return int(self.st[r])

    def set_reg32(self, r: int, value: int) -> None:
        self.st[r] = value & 0xFFFF_FFFF

    def get_seg_sel(self, seg: int) -> int:
        return int(self.st[S.seg_slot(seg, S.SEG_SEL)])

    def set_seg_real(self, seg: int, sel: int) -> None:
        """A real-mode segment load: base = selector << 4, limit 64 KiB."""
        self.st[S.seg_slot(seg, S.SEG_SEL)] = sel & 0xFFFF
        self.st[S.seg_slot(seg, S.SEG_BASE)] = (sel & 0xFFFF) << 4
        self.st[S.seg_slot(seg, S.SEG_LIMIT)] = 0xFFFF
        if seg in (S.CS, S.SS):
            self._update_hflags()

    def setup_flat32(self, paging: bool = False, page_tables: int = 0x80000, map_mib: int = 16) -> None:
        """Enter 32-bit protected mode with flat 4 GiB segments, as a test or benchmark harness
        (no GDT in memory: the segment caches are loaded directly, as after a far jump).

        With `paging`, identity-map the first `map_mib` MiB through 4 KiB page tables built at
        `page_tables` (the page directory, then one table per 4 MiB), supervisor read/write, and
        turn on CR0.PG.
        """
        st = self.st
        flat_code = S.ATTR_P | S.ATTR_S | S.ATTR_CODE | S.ATTR_WRITABLE | S.ATTR_ACCESSED | S.ATTR_DB | S.ATTR_G
        flat_data = S.ATTR_P | S.ATTR_S | S.ATTR_WRITABLE | S.ATTR_ACCESSED | S.ATTR_DB | S.ATTR_G
        st[S.CR0] |= 1
        for seg in range(6):
            st[S.seg_slot(seg, S.SEG_SEL)] = 0x08 if seg == S.CS else 0x10
            st[S.seg_slot(seg, S.SEG_BASE)] = 0
            st[S.seg_slot(seg, S.SEG_LIMIT)] = 0xFFFF_FFFF
            st[S.seg_slot(seg, S.SEG_ATTR)] = flat_code if seg == S.CS else flat_data
        if paging:
            pd = page_tables
            tables = (map_mib + 3) // 4
            for t in range(tables):
                pt = pd + 0x1000 * (t + 1)
                self.write_phys(pd + 4 * t, (pt | 0x3).to_bytes(4, "little"))
                entries = b"".join((((t << 22) + (i << 12)) | 0x3).to_bytes(4, "little") for i in range(1024))
                self.write_phys(pt, entries)
            st[S.CR3] = pd
            st[S.CR0] |= 0x8000_0000
        self.flush_tlb()
        self._update_hflags()

    def get_flags(self) -> int:
        st = self.st
        return F.read_eflags(int(st[S.CC_OP]), int(st[S.CC_DST]), int(st[S.CC_SRC]), int(st[S.CC_SRC2]),
                             int(st[S.EFLAGS]))

    def set_flags(self, value: int) -> None:
        st = self.st
        st[S.EFLAGS] = (value & WRITABLE & ~F.STATUS_MASK) | F.FIXED1 | (value & F.VM)
        st[S.CC_OP] = F.CC_OP_EFLAGS
        st[S.CC_SRC] = value & F.STATUS_MASK
        st[S.CC_DST] = 0
        st[S.CC_SRC2] = 0
        self._update_hflags()

    def _update_hflags(self) -> None:
        from emu.cpu.segments import update_hflags

        update_hflags(self.st.ctypes.data)

    # -- memory -------------------------------------------------------------------------
    def write_phys(self, addr: int, data: bytes) -> None:
        """Write guest-physical memory as a loader would; translated code there is dropped."""
        self.phys.write(addr, data)
        first, last = addr >> 12, (addr + max(len(data), 1) - 1) >> 12
        heads = self.blocks.page_head
        from emu.translate.blockcache import invalidate_page

        for ppn in range(first, last + 1):
            if heads[ppn & 0xFFFFF]:
                invalidate_page(self.blocks.bc.ctypes.data, ppn)

    def read_phys(self, addr: int, n: int) -> bytes:
        return self.phys.read(addr, n)

    def reset_memory(self) -> None:
        """Zero all RAM (keeping ROM), forget every block and the TLB: a clean slate for tests."""
        self.mem[: self.phys.ram_bytes] = 0
        self.flush_blocks()
        self.flush_tlb()

    def stats_dict(self) -> dict[str, int]:
        d = K.as_dict(self.stats)
        d["tb_live"] = self.blocks.live_blocks()
        d["tb_invalidated"] = int(self.blocks.bc[4])
        d["tb_flushes"] = int(self.blocks.bc[5])
        return d
