"""Run a fuzz program in tier 0 and tier 1 and compare where they end.

Tier 0 is a CpuCore with tier 1 off (`tier1_threshold=0`). Tier 1 is a CpuCore with threshold 1:
its first run from the initial state queues every block it executes and compiles them at each exit,
and a second run from the same state and memory runs them compiled. Both runs of tier 1 must end
in tier 0's state: the GPRs, EIP, EFLAGS, segment selectors, CR0/CR2/CR3, CPL, the exit reason,
the instructions retired, the number of exits serviced and a hash of RAM.
"""

from __future__ import annotations

import random
import time
import zlib

import numpy as np

from emu import stats as K
from emu.cpu import state as S
from emu.cpu.access import SEGF_EXPDOWN, SEGF_NOREAD, SEGF_NOWRITE, SEGF_NULL
from emu.fuzz import gen as G

BUDGET = 20_000
MAX_EXITS = 1_000  # I/O exits serviced per run (each is a return to Python)
CHUNK = 2_000  # instructions per call of CpuCore.run, so that the wall clock is checked in between
WALL_LIMIT = 10.0  # seconds of execution (tier-1 compile time not counted): slower is a finding ("slow")


class SlowRun(Exception):
    pass
VM = 1 << 17


def seg_summary(attr: int, pe: bool, vm: bool, null: bool) -> int:
    """The engine's SEGF_* summary bits for a segment cache entry (as emu/cpu/access.py computes them)."""
    if not pe or vm:
        return attr
    if null:
        return attr | SEGF_NULL
    if attr & S.ATTR_CODE:
        attr |= SEGF_NOWRITE | (0 if attr & S.ATTR_WRITABLE else SEGF_NOREAD)
    else:
        attr |= (0 if attr & S.ATTR_WRITABLE else SEGF_NOWRITE) | (SEGF_EXPDOWN if attr & S.ATTR_EXPAND_DOWN else 0)
    return attr


def image(p: dict) -> np.ndarray:
    """The program's initial RAM (deterministic in its seed)."""
    rng = np.random.default_rng(p["seed"])
    pr = random.Random(p["seed"] ^ 0x5EED)
    mem = np.full(G.RAM, 0xF4, dtype=np.uint8)  # HLT wherever a jump may land (no long sleds of 00 00)
    mem[:0x4000] = 0  # IVT, TSS, GDT, IDT, page tables (the stubs are rewritten below)
    mem[G.DATA_BASE:G.DATA_BASE + 0x20000] = rng.integers(0, 256, 0x20000, dtype=np.uint8)
    ivt = b"".join(((G.STUBS >> 4) << 16 | v).to_bytes(4, "little") for v in range(256))
    mem[0:0x400] = np.frombuffer(ivt, dtype=np.uint8)
    mem[G.TSS:G.TSS + 0x68] = np.frombuffer(G.tss_bytes(), dtype=np.uint8)
    gdt = G.gdt_bytes(pr)
    mem[G.GDT:G.GDT + len(gdt)] = np.frombuffer(gdt, dtype=np.uint8)
    mem[G.IDT:G.IDT + 0x800] = np.frombuffer(G.idt_bytes(pr), dtype=np.uint8)
    mem[G.STUBS:G.STUBS + 0x200] = 0xF4
    code = bytes.fromhex(p["code"])
    at = G.CODE_BASE + p["code_off"]
    mem[G.CODE_BASE:G.CODE_BASE + 0x2000] = 0xF4  # HLT around the code: a jump out of it ends soon
    mem[at:at + len(code)] = np.frombuffer(code, dtype=np.uint8)
    if p["mode"] == "paged":
        pse = p["cr4"] & 0x10
        pd = [G.PT | 7]
        for _ in range(1, 1024):
            r = pr.random()
            if r < 0.7:
                pd.append(0)
            elif r < 0.85 and pse:
                pd.append(0x87 | pr.getrandbits(1) << 1)  # a 4 MiB page at 0
            else:
                pd.append(pr.getrandbits(32))
        pt = []
        for j in range(1024):
            if j < 8 or j in (0x10, 0x11):  # system pages and the code: identity, user, writable
                pt.append(j << 12 | 7)
            elif j < 0x100:
                r = pr.random()
                if r < 0.6:
                    pt.append(j << 12 | 1 | pr.getrandbits(2) << 1 | pr.getrandbits(1) << 8)
                elif r < 0.8:
                    pt.append(pr.randrange(0x100) << 12 | pr.getrandbits(9))
                else:
                    pt.append(pr.getrandbits(32))
            else:
                pt.append(pr.getrandbits(32) if pr.random() < 0.3 else 0)
        mem[G.PD:G.PD + 0x1000] = np.array(pd, dtype=np.uint32).view(np.uint8)
        mem[G.PT:G.PT + 0x1000] = np.array(pt, dtype=np.uint32).view(np.uint8)
    return mem


def setup_state(core, p: dict) -> None:
    """Registers, segment caches and control registers for the program's mode."""
    st = core.st
    core.reset()
    mode = p["mode"]
    for i in range(8):
        st[i] = p["regs"][i] & 0xFFFF_FFFF
    st[S.EIP] = p["code_off"] + (G.CODE_BASE if mode in ("pm32", "paged") else 0)
    eflags = p["eflags"] | (VM if mode == "v86" else 0)
    if mode == "real":
        core.set_seg_real(S.CS, G.CODE_BASE >> 4)
        for seg, sel in ((S.DS, 0x2000), (S.ES, 0x2000), (S.SS, 0), (S.FS, 0x3000), (S.GS, 0x2800)):
            core.set_seg_real(seg, sel)
        st[S.IDTR_BASE], st[S.IDTR_LIMIT] = 0, 0x3FF
        core.set_flags(eflags)
        core.flush_tlb()
        return
    st[S.CR0] |= 1
    st[S.GDTR_BASE], st[S.GDTR_LIMIT] = G.GDT, G.GDT_ENTRIES * 8 - 1
    st[S.IDTR_BASE], st[S.IDTR_LIMIT] = G.IDT, 0x7FF
    tr = S.TR_SEG
    st[S.seg_slot(tr, S.SEG_SEL)], st[S.seg_slot(tr, S.SEG_BASE)] = G.SEL_TSS, G.TSS
    st[S.seg_slot(tr, S.SEG_LIMIT)], st[S.seg_slot(tr, S.SEG_ATTR)] = 0x67, 0x8B
    vm = mode == "v86"
    ring3 = vm or p.get("ring3", False)
    if mode == "pm16":
        code = (G.SEL_CODE16, G.CODE_BASE, 0xFFFF, 0x9B)
        data = (G.SEL_DATA16, G.DATA_BASE, 0xFFFF, 0x93)
        segs = {S.CS: code, S.SS: data, S.DS: data, S.ES: data, S.FS: data, S.GS: data}
    elif vm:
        code = (G.CODE_BASE >> 4, G.CODE_BASE, 0xFFFF, 0xFB)
        segs = {S.CS: code}
        for seg, sel in ((S.DS, 0x2000), (S.ES, 0x2000), (S.SS, 0), (S.FS, 0x3000), (S.GS, 0x2800)):
            segs[seg] = (sel, sel << 4, 0xFFFF, 0xF3)
    else:
        flat = 0xFFFF_FFFF
        cs = (G.SEL_CODE32_R3, 0, flat, 0xFB | 0xC000) if ring3 else (G.SEL_CODE32, 0, flat, 0x9B | 0xC000)
        ds = (G.SEL_DATA32_R3, 0, flat, 0xF3 | 0xC000) if ring3 else (G.SEL_DATA32, 0, flat, 0x93 | 0xC000)
        segs = {S.CS: cs, S.SS: ds, S.DS: ds, S.ES: ds, S.FS: ds, S.GS: ds}
    for seg, (sel, base, limit, attr) in segs.items():
        st[S.seg_slot(seg, S.SEG_SEL)] = sel
        st[S.seg_slot(seg, S.SEG_BASE)] = base
        st[S.seg_slot(seg, S.SEG_LIMIT)] = limit
        st[S.seg_slot(seg, S.SEG_ATTR)] = seg_summary(attr, True, vm, False)
    st[S.CPL] = 3 if ring3 else 0
    if mode == "paged":
        st[S.CR3] = G.PD
        st[S.CR4] = p["cr4"]
        st[S.CR0] |= 0x8000_0000 | (0x10000 if p["wp"] else 0)
    core.set_flags(eflags)  # also recomputes HFLAGS
    core.flush_tlb()


def run_once(core, p: dict, budget: int = BUDGET, base: np.ndarray | None = None) -> tuple:
    """Run from the current state with `budget` instructions, servicing I/O and MMIO exits; the
    end state's RAM is summarised against `base`, the program's initial image."""
    st = core.st
    start = int(st[S.ICOUNT])
    exits = 0
    t = time.perf_counter()
    compiled_ns = int(core.stats[K.COMPILE_NS])
    while True:
        left = budget - (int(st[S.ICOUNT]) - start)
        if left <= 0:
            reason = S.EXIT_BUDGET
            break
        reason = core.run(min(left, CHUNK))
        spent = time.perf_counter() - t - (int(core.stats[K.COMPILE_NS]) - compiled_ns) / 1e9
        if spent > WALL_LIMIT:  # (a program whose every block compiles at threshold 1 may compile
            # for seconds on a loaded machine: that is LLVM's time, not a hang in the engine)
            raise SlowRun(f"{int(st[S.ICOUNT]) - start} instructions in {spent:.1f} s")
        if reason == S.EXIT_BUDGET and left > CHUNK:
            continue
        if reason == S.EXIT_IO_IN:
            st[S.IO_VALUE] = 0xFFFF_FFFF
            st[S.IO_PENDING] = 1
        elif reason == S.EXIT_MMIO_READ:
            st[S.MMIO_VALUE] = 0xFFFF_FFFF
            st[S.MMIO_PENDING] = 1
        elif reason in (S.EXIT_IO_OUT, S.EXIT_MMIO_WRITE, S.EXIT_IRQ):
            pass
        else:
            break
        exits += 1
        if exits >= MAX_EXITS:
            break
    return snapshot(core, reason, int(st[S.ICOUNT]) - start, exits, base)


PAGE = 4096
WORDS_PER_PAGE = PAGE // 8


def changed_pages(ram: np.ndarray, base: np.ndarray) -> np.ndarray:
    """The numbers of the 4 KiB pages where `ram` differs from `base` (compared 8 bytes at a time:
    a tenth of the time of hashing all of RAM)."""
    return np.flatnonzero((ram.view(np.uint64) != base.view(np.uint64)).reshape(-1, WORDS_PER_PAGE).any(axis=1))


def ram_digest(ram: np.ndarray, base: np.ndarray | None = None) -> str:
    """What a run did to guest RAM: the pages that differ from `base` with a CRC-32 and Adler-32
    of each (64 bits against a chance collision between two runs), or of all of RAM without one."""
    if base is None:
        view = memoryview(ram)
        return f"{zlib.crc32(view):08x}{zlib.adler32(view):08x}"
    out = []
    for ppn in changed_pages(ram, base):
        view = memoryview(ram[ppn * PAGE:(ppn + 1) * PAGE])
        out.append(f"{ppn:x}:{zlib.crc32(view):08x}{zlib.adler32(view):08x}")
    return ",".join(out)


def snapshot(core, reason: int, icount: int, exits: int, base: np.ndarray | None = None) -> tuple:
    st = core.st
    return (
        ("gprs", tuple(int(st[i]) & 0xFFFF_FFFF for i in range(8))),
        ("eip", int(st[S.EIP])),
        ("eflags", core.get_flags()),
        ("sels", tuple(int(st[S.seg_slot(s, S.SEG_SEL)]) for s in range(6))),
        ("cr", (int(st[S.CR0]), int(st[S.CR2]), int(st[S.CR3]), int(st[S.CPL]))),
        ("reason", S.EXIT_REASON_NAMES[reason] if 0 <= reason < len(S.EXIT_REASON_NAMES) else reason),
        ("icount", icount),
        ("exits", exits),
        ("ram", ram_digest(core.mem[:G.RAM], base)),
    )


class Runner:
    """A worker's two CpuCores (tier 0 and tier 1), reused for every program."""

    def __init__(self, budget: int = BUDGET):
        from emu.cpu.core import CpuCore

        self.budget = budget
        self.t0 = CpuCore(G.RAM, tier1_threshold=0)
        self.t1 = CpuCore(G.RAM, tier1_threshold=1)
        for core in (self.t0, self.t1):  # the ROM copy (C0000-FFFFF) holds HLT too
            core.mem[core.phys.rom_base:core.phys.rom_base + core.phys.rom_size] = 0xF4
        self.runs = 0
        self.compiled = 0  # compiled instructions in the last tier-1 run
        self.uc_compared = 0  # programs compared with unicorn (emu.fuzz.ucdiff)

    def _load(self, core, mem: np.ndarray, p: dict, keep_blocks: bool) -> None:
        if keep_blocks:  # put back the pages the last run changed; drop the blocks on them
            for ppn in changed_pages(core.mem[:G.RAM], mem):
                core.write_phys(int(ppn) << 12, mem[ppn << 12:(ppn + 1) << 12].tobytes())
        else:
            core.mem[:G.RAM] = mem
            core.flush_blocks()
        setup_state(core, p)

    def run_tier(self, p: dict, tier: int, mem: np.ndarray | None = None) -> list[tuple]:
        """Tier 0: one end state; tier 1: the end states of the first and the second run."""
        mem = image(p) if mem is None else mem
        core = self.t1 if tier else self.t0
        out = []
        for attempt in range(2 if tier else 1):
            self._load(core, mem, p, keep_blocks=attempt > 0)
            before = int(core.stats[K.COMPILED_INSNS])
            out.append(run_once(core, p, self.budget, mem))
            self.compiled = int(core.stats[K.COMPILED_INSNS]) - before
        self.runs += 1
        return out

    def check(self, p: dict) -> dict | None:
        """None when the program passes; otherwise a finding (kind, detail)."""
        mem = image(p)
        t = time.perf_counter()
        try:
            (s0,) = self.run_tier(p, 0, mem)
            s1a, s1b = self.run_tier(p, 1, mem)
        except SlowRun as exc:
            return {"kind": "slow", "detail": str(exc)}
        except Exception as exc:  # noqa: BLE001 - a Python exception from the engine is a finding
            return {"kind": "exception", "detail": f"{type(exc).__name__}: {exc}"}
        elapsed = time.perf_counter() - t
        for s in (s0, s1a, s1b):
            if dict(s)["icount"] > self.budget:
                return {"kind": "overrun", "detail": f"retired {dict(s)['icount']} > budget {self.budget}"}
        for name, s in (("tier1-first-run", s1a), ("tier1-compiled", s1b)):
            if s != s0:
                diff = {k: [v0, v1] for (k, v0), (_, v1) in zip(s0, s, strict=True) if v0 != v1}
                return {"kind": "divergence", "run": name, "detail": diff}
        self.elapsed = elapsed
        return None
