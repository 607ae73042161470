"""Execution statistics counted by compiled code: one int64 array, named slots (`--stats`).

The counters cover what ../shared/design/anchors.md lists from QEMU's `info jit`, v86's profiler,
Blink's `-Z` and Bochs: translation, the block cache, chaining, exits by reason and the TLB.
"""

from __future__ import annotations

import numpy as np

_NAMES = (
    "insns",            # guest instructions retired
    "tb_translated",    # translation blocks built
    "tb_insns",         # guest instructions in the blocks built (average block size)
    "tb_invalidated",   # blocks dropped because their code was written (self-modifying code)
    "tb_flushes",       # whole-cache flushes (pool full, or a global event)
    "tb_cross_page",    # blocks whose code spans two pages
    "lookups",          # block lookups by (physical PC, mode)
    "lookup_fast_hits", # found in the direct-mapped table
    "lookup_slow_hits", # found in the second way / hash chain
    "lookup_misses",    # not found: translated
    "chained",          # block-to-block transitions through a chain link (no lookup)
    "chain_links",      # links made
    "tlb_hits",
    "tlb_misses",       # slow-path translations (walks or identity) that filled or bypassed the TLB
    "tlb_flushes",      # full flushes (CR0/CR3/CR4 writes, A20 changes)
    "tlb_flushes_global_kept",  # CR3 reloads that kept global entries
    "tlb_invlpg",
    "mem_slow",         # accesses that left the inline fast path
    "mem_cross_page",
    "smc_writes",       # guest writes that hit a page holding translated code
    "exceptions",       # exceptions delivered
    "interrupts",       # external interrupts delivered
    "exit_io",
    "exit_mmio",
    "exit_hlt",
    "exit_irq",
    "exit_budget",
    "exit_rare",        # instructions handed to Python
    "exit_other",
    "compiled_blocks",  # tier-1 blocks compiled to native code
    "compiled_insns",   # instructions run inside tier-1 code
    "compile_ns",       # time spent compiling tier-1 blocks
    "tier1_entries",    # calls into compiled blocks
    "tier1_bails",      # compiled blocks that handed the rest of the block to the interpreter
    "unimplemented",    # instructions pyemu lacks, run as #UD
    "tier1_chained",    # compiled blocks entered straight from a compiled predecessor
)
NAMES = _NAMES
N_STATS = len(_NAMES)

# Slot numbers, in the order of NAMES (a test keeps the two in step).
INSNS = 0
TB_TRANSLATED = 1
TB_INSNS = 2
TB_INVALIDATED = 3
TB_FLUSHES = 4
TB_CROSS_PAGE = 5
LOOKUPS = 6
LOOKUP_FAST_HITS = 7
LOOKUP_SLOW_HITS = 8
LOOKUP_MISSES = 9
CHAINED = 10
CHAIN_LINKS = 11
TLB_HITS = 12
TLB_MISSES = 13
TLB_FLUSHES = 14
TLB_FLUSHES_GLOBAL_KEPT = 15
TLB_INVLPG = 16
MEM_SLOW = 17
MEM_CROSS_PAGE = 18
SMC_WRITES = 19
EXCEPTIONS = 20
INTERRUPTS = 21
EXIT_IO = 22
EXIT_MMIO = 23
EXIT_HLT = 24
EXIT_IRQ = 25
EXIT_BUDGET = 26
EXIT_RARE = 27
EXIT_OTHER = 28
COMPILED_BLOCKS = 29
COMPILED_INSNS = 30
COMPILE_NS = 31
TIER1_ENTRIES = 32
TIER1_BAILS = 33
UNIMPLEMENTED = 34
TIER1_CHAINED = 35


def new_stats() -> np.ndarray:
    return np.zeros(N_STATS, dtype=np.int64)


def as_dict(stats: np.ndarray) -> dict[str, int]:
    return {name: int(stats[i]) for i, name in enumerate(_NAMES)}
