"""Tier 1: hot translation blocks compiled to native code through llvmlite.

execution.md §3-4: a numba compile of one block costs ~400 ms, llvmlite IR at O2 ~7-10 ms, and a
call through a table of function addresses ~2 ns. So a block that has run TB_EXECS >= threshold
times is queued by the compiled loop (`bc[BC_T1_QUEUE..]`); at the next exit (or when the queue is
full: EXIT_COMPILE) Python turns the queued blocks' rows into one LLVM module, compiles it at O2
and stores each function's address in its record (`TB_FN`). The loop then calls the function
instead of interpreting the rows (`rawptr.call_block_fn`).

The IR is generated from the block's rows, the same rows the interpreter runs, and for everything
it does not inline it calls the interpreter's own semantic functions (emu/translate/tier1_rt.py).
A block's function also holds the blocks of the hot loops through it (a region: `Tier1._region`,
`CodeGen.region_ir`), so a loop of several blocks runs as one native loop.

Inside a function guest registers are SSA values (loaded once, stored once at the exit when
written) and the lazy flags are four SSA values whose CC_OP is usually known while generating,
so a Jcc after CMP or DEC is one compare. A compiled block may cover only a prefix of its rows
(up to the first row whose handler has no generator here). Every instruction either completes
in compiled code or leaves it *before any side effect*: a segment check that needs the full
routine, a TLB miss, a page-crossing access, a write to a page that holds code (those never have
write TLB entries) all branch to the shared exit with the state as of that instruction's start,
and the interpreter runs the block's rows from there on, with its slow paths, precise faults and
SMC handling. So compiled code never faults, never leaves for a device and never changes a page
that holds code.

The function returns `rows_done | T1_ENDED | T1_CHAIN | way << T1_WAY_SHIFT`:
- rows_done: how many rows retired (the interpreter resumes at that row);
- T1_ENDED: the last row was a control transfer and EIP is stored;
- T1_CHAIN: ... a direct one (Jcc, JMP rel, LOOP): the loop may chain through `way`.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import sys
import threading
import time
import weakref

import numpy as np

from emu import stats as K
from emu.cpu import flags as F
from emu.cpu import handlers as H
from emu.cpu import state as S
from emu.cpu.access import SEGF_EXPDOWN, SEGF_NOREAD, SEGF_NOWRITE, SEGF_NULL
from emu.cpu.scalar_dispatch import ENTRIES as SCALAR_ENTRIES
from emu.mmu.softmmu import CTX_BLOCKS, CTX_MEM, CTX_STATS, CTX_TLB
from emu.mmu.tlb import (
    ACC_EXEC,
    ACC_READ,
    ACC_WRITE,
    TE_ADDEND,
    TE_PHYS,
    TEF_PPN_MASK,
    TLB_BITS,
    TLB_INDEX_MASK,
    TLB_STRIDE,
)
from emu.translate import blockcache as B
from emu.translate.rowfmt import (
    R_ASIZE,
    R_AUX,
    R_BASE,
    R_DISP,
    R_DST,
    R_H,
    R_IMM,
    R_INDEX,
    R_LEN,
    R_OFF,
    R_SCALE,
    R_SEG,
    R_SIZE,
    R_SRC,
    R_X,
    RM_MEM,
    ROW_WIDTH,
    X_MEM,
    X_SIZE2_SHIFT,
)
from emu.translate.tier1_abi import SCALAR_FLAGS_SHIFT, T1_CHAIN, T1_ENDED, T1_TB_SHIFT, T1_WAY_SHIFT  # noqa: E402

M32 = 0xFFFF_FFFF
# How a module is optimised. The IR is already in SSA form with no loads to promote, so three
# cheap passes do what O2's ~80 would (fold constants and the lazy-flag selects, merge blocks, drop
# dead values), and instruction selection and register allocation at O2 make the code fast.
# Measured on 817 functions of a Linux boot: O2 + codegen O2 17.2 ms a function; these passes +
# codegen O2 9.6 ms, with the same guest MIPS on the benchmarks; codegen O0 (fast isel) 2.9 ms, but
# the code runs 1.5-2x slower.
T1_PASSES = ("instruction_combine", "simplify_cfg", "dead_code_elimination")
T1_CODEGEN_OPT = 2
_LOG = bool(os.environ.get("PYEMU_T1_LOG"))
# $PYEMU_T1_PROFILE=N: count each way out of compiled code back to the loop, and print the N most
# taken ones at exit (which block and row leave, and how): where compiled code stops.
_PROFILE = int(os.environ.get("PYEMU_T1_PROFILE", "0") or 0)
_EXIT_COUNTS = np.zeros(1 << 20 if _PROFILE else 1, dtype=np.int64)
_EXIT_SITES: list[tuple] = []
WORKER_IDLE_S = 1.0  # a worker with nothing to compile for this long leaves (a new one starts on demand)
REGION_MAX = 8  # blocks one function may include: itself and the blocks of loops through it (`Tier1._region`)
REGION_SCAN = 16  # blocks looked at for it (breadth first)
REGION_HOT_DIV = 16  # ... each run at least 1/16 of the compile threshold's times
MODULE_MAX = 64  # blocks in one module: a big boot's backlog is installed module by module
LIBRARY_SWEEP_MIN = 64  # look for libraries to free at this many (then at twice the live count)
JIT_MODULES = 256  # libraries one LLJIT links before a fresh one takes over (see `_Jit`)
PB_MODULES = 256  # modules one LLVM pass builder optimises before a fresh one takes over (see `build`)
TRIM_UNLOADS = 32  # the worker trims the heap after this many unloaded libraries (see `trim_heap`)
TRIM_MODULES = 32  # or after this many modules built (the compiles' own churn, between two flushes)
_BITS = {1: 8, 2: 16, 4: 32}
_malloc_trim = None  # glibc's malloc_trim once looked up (False: not there)


def trim_heap() -> bool:
    """Give the free pages inside glibc's malloc arenas back to the OS (`malloc_trim(0)`); False
    off glibc or when nothing was released.

    LLVM allocates a module's IR, its passes' state and the object on the worker's arena, and frees
    most of it again, while what ORC keeps for a loaded library stays put in between: the arena ends
    up as long-lived chunks with free holes among them, which glibc returns only from the arena's
    top. Over a soak those holes grew the RSS by ~2-8 MiB a minute with the bytes in use flat, and
    one malloc_trim took ~60 MiB back. So the worker trims after TRIM_UNLOADS unloaded libraries
    or TRIM_MODULES built modules (not per module: a trim walks every arena's free chunks)."""
    global _malloc_trim
    if _malloc_trim is None:
        try:
            _malloc_trim = ctypes.CDLL(None).malloc_trim
            _malloc_trim.argtypes = [ctypes.c_size_t]
            _malloc_trim.restype = ctypes.c_int
        except (OSError, AttributeError):
            _malloc_trim = False
    return bool(_malloc_trim and _malloc_trim(0))


_ALU_ADD, _ALU_OR, _ALU_ADC, _ALU_SBB, _ALU_AND, _ALU_SUB, _ALU_XOR, _ALU_CMP, _ALU_TEST = range(9)


def _mask(size: int) -> int:
    return (1 << (8 * size)) - 1



def codegen_opt() -> int:
    """LLVM's code generator level for tier 1: `$PYEMU_T1_CG`, else T1_CODEGEN_OPT."""
    return int(os.environ.get("PYEMU_T1_CG", T1_CODEGEN_OPT))

class Unsupported(Exception):
    """The row has no tier-1 generator: the compiled prefix ends before it."""


class _Member:
    """One translation block of a region (see `CodeGen.region_ir`): its rows, its successors in the
    region (member index per exit `way`, -1: none) and, once generated, its header's incoming edges."""

    __slots__ = ("tb", "phys", "rows", "row0", "nrows", "succ", "incoming", "line", "beip")

    def __init__(self, k: int, tb: int, phys: int, rows: np.ndarray, row0: int, nrows: int, succ=(-1, -1)):
        self.tb, self.phys, self.rows, self.row0, self.nrows, self.succ = tb, phys, rows, row0, nrows, succ
        self.incoming: list[tuple] = []  # (label, regs, cc, acc, hits) of each edge into its header
        self.line = -1  # where its header's label is in the function's lines
        self.beip = "%beip" if k == 0 else f"%beip{k}"  # its start: the entry's EIP plus the offset


class _Block:
    """IR for one region of translation blocks (one function): SSA registers and flags, a header
    per block whose phis take them from every edge into it, and one shared exit."""

    def __init__(self, g: CodeGen, name: str, members: list[_Member], hflags: int):
        self.g = g
        self.members = members
        self.hflags = hflags
        self.name = name
        self.user = 1 if (hflags & S.HF_CPL_MASK) == 3 else 0
        self.ipmask = M32 if hflags & S.HF_CS32 else 0xFFFF
        self.smask = M32 if hflags & S.HF_SS32 else 0xFFFF
        self.lines: list[str] = []
        self.n = 0
        self.cur = "entry"
        self.exits: list[tuple] = []  # (label, regs, cc, ret, hits, eip, nextfn, acc)
        self.todo: list[int] = [0]  # members to generate: the entry, then each one an edge reaches
        self.cc_static: int | None = None  # CC_OP when known while generating
        self.written: set[int] = set()
        self.cc_written = False
        self.segs: dict[int, tuple[str, str, str]] = {}
        self.g_seg_loads: list[tuple[int, int]] = []  # segment caches the entry block loads
        self.uses_ccbuf = False
        self.start(0)

    def start(self, k: int) -> None:
        """Generate member `k` from here on: its header's label, and its phis as the state."""
        m = self.members[k]
        self.m, self.tb, self.phys, self.nrows, self.beip = m, m.tb, m.phys, m.nrows, m.beip
        self.rows, self.row0 = m.rows, m.row0
        self.accp, self.hbase = f"%accp{k}", f"%hbase{k}"  # retired instructions, TLB hits before it
        self.regs = [f"%r{i}_h{k}" for i in range(8)]
        self.cc = tuple(f"%cc_{nm}_h{k}" for nm in ("op", "dst", "src", "src2"))
        self.cc_static = None
        self.hits = 0  # TLB hits of this member's instructions generated so far
        self.row = 0  # the row being generated
        self._snap = (list(self.regs), self.cc, 0)  # the state at the current instruction's start
        self.label(f"h{k}")
        m.line = len(self.lines) - 1

    def goto(self, k: int, acc: str) -> None:
        """Branch to member `k`'s header with the current state, `acc` instructions retired."""
        m = self.members[k]
        if m.line < 0 and k not in self.todo:
            self.todo.append(k)
        m.incoming.append((self.cur, list(self.regs), self.cc, acc, self.op("add", self.hbase, self.hits)))
        self.lines.append(f"  br label %h{k}")

    # ---------------------------------------------------------------- IR text
    def tmp(self) -> str:
        self.n += 1
        return f"%v{self.n}"

    def emit(self, text: str) -> str:
        t = self.tmp()
        self.lines.append(f"  {t} = {text}")
        return t

    def label(self, name: str) -> None:
        self.lines.append(f"{name}:")
        self.cur = name

    def new_label(self) -> str:
        self.n += 1
        return f"L{self.n}"

    def op(self, opc: str, a, b) -> str:
        return self.emit(f"{opc} i64 {a}, {b}")

    def icmp(self, pred: str, a, b) -> str:
        return self.emit(f"icmp {pred} i64 {a}, {b}")

    def sel(self, c: str, a, b) -> str:
        return self.emit(f"select i1 {c}, i64 {a}, i64 {b}")

    def zext(self, c: str) -> str:
        return self.emit(f"zext i1 {c} to i64")

    def load64(self, addr) -> str:
        p = self.emit(f"inttoptr i64 {addr} to ptr")
        return self.emit(f"load i64, ptr {p}, align 8")

    def store64(self, addr, v) -> None:
        p = self.emit(f"inttoptr i64 {addr} to ptr")
        self.lines.append(f"  store i64 {v}, ptr {p}, align 8")

    def slot(self, k: int) -> str:
        return self.op("add", "%sp", k * 8)

    def sext(self, v, size: int) -> str:
        sign = 1 << (_BITS[size] - 1)
        return self.op("sub", self.op("xor", self.op("and", v, _mask(size)), sign), sign)

    def call(self, fn: str, args: list) -> str:
        return self.emit(f"call i64 @{fn}({', '.join(f'i64 {a}' for a in args)})")

    # ---------------------------------------------------------------- registers and flags
    def rget(self, r: int, size: int):
        if size == 4:
            return self.regs[r]
        if size == 2:
            return self.op("and", self.regs[r], 0xFFFF)
        if r < 4:
            return self.op("and", self.regs[r], 0xFF)
        return self.op("and", self.op("lshr", self.regs[r - 4], 8), 0xFF)

    def rset(self, r: int, size: int, v) -> None:
        if size == 4:
            self.regs[r] = self.op("and", v, M32)
        elif size == 2:
            self.regs[r] = self.op("or", self.op("and", self.regs[r], 0xFFFF_0000), self.op("and", v, 0xFFFF))
        elif r < 4:
            self.regs[r] = self.op("or", self.op("and", self.regs[r], 0xFFFF_FF00), self.op("and", v, 0xFF))
        else:
            r -= 4
            hi = self.op("shl", self.op("and", v, 0xFF), 8)
            self.regs[r] = self.op("or", self.op("and", self.regs[r], 0xFFFF_00FF), hi)
        self.written.add(r)

    def set_cc(self, cc_op: int, dst, src, src2) -> None:
        self.cc = (str(cc_op), dst, src, src2)
        self.cc_static = cc_op
        self.cc_written = True

    def flags(self) -> str:
        """The six status flags of the current lazy state (EFLAGS positions)."""
        o, d, s, s2 = self.cc
        if self.cc_static == F.CC_OP_EFLAGS:
            return self.op("and", s, F.STATUS_MASK)
        return self.call("rt_flags", [o, d, s, s2])

    def cf(self) -> str:
        """CF (0/1) of the current lazy state."""
        o, d, s, s2 = self.cc
        k = None if self.cc_static is None else self.cc_static >> 2
        if k == F.K_LOGIC:
            return "0"
        if k == F.K_EFLAGS:
            return self.op("and", s, 1)
        if k in (F.K_INC, F.K_DEC):
            return self.op("and", s2, 1)
        m = None if self.cc_static is None else _mask({0: 1, 1: 2, 2: 4}[self.cc_static & 3])
        if k == F.K_SUB:
            return self.zext(self.icmp("ult", self.op("and", self.op("add", d, s), m), s))
        if k == F.K_ADD:
            return self.zext(self.icmp("ult", d, self.op("and", self.op("sub", d, s), m)))
        return self.call("rt_cf", [o, d, s, s2])

    def cond(self, cc: int) -> str:
        """Condition code `cc` as an i1, from the lazy state (inline where CC_OP is known)."""
        o, d, s, s2 = self.cc
        k = None if self.cc_static is None else self.cc_static >> 2
        c, neg = cc >> 1, cc & 1
        r = None
        if k == F.K_EFLAGS:  # explicit flags in CC_SRC (SDM Vol 1, Appendix B)
            def bit(mask):
                return self.icmp("ne", self.op("and", s, mask), 0)

            if c in (0, 1, 2, 4, 5):
                r = bit((F.OF, F.CF, F.ZF, 0, F.SF, F.PF)[c])
            elif c == 3:
                r = bit(F.CF | F.ZF)
            else:
                lt = self.emit(f"xor i1 {bit(F.SF)}, {bit(F.OF)}")
                r = lt if c == 6 else self.emit(f"or i1 {lt}, {bit(F.ZF)}")
        elif k is not None and k != F.K_ZF:
            size = {0: 1, 1: 2, 2: 4}[self.cc_static & 3]
            m, sign = _mask(size), 1 << (_BITS[size] - 1)
            if c == 2:
                r = self.icmp("eq", d, 0)
            elif c == 4:
                r = self.icmp("ne", self.op("and", d, sign), 0)
            elif k == F.K_SUB:
                s1 = self.op("and", self.op("add", d, s), m)
                if c == 1:
                    r = self.icmp("ult", s1, s)
                elif c == 3:
                    r = self.icmp("ule", s1, s)
                elif c in (6, 7):
                    a, b = self.sext(s1, size), self.sext(s, size)
                    r = self.icmp("slt" if c == 6 else "sle", a, b)
            elif k == F.K_LOGIC:
                if c in (0, 1):
                    r = "false"
                elif c == 3:
                    r = self.icmp("eq", d, 0)
                elif c == 6:
                    r = self.icmp("ne", self.op("and", d, sign), 0)
                elif c == 7:
                    r = self.emit(f"or i1 {self.icmp('eq', d, 0)}, {self.icmp('ne', self.op('and', d, sign), 0)}")
        if r is None:
            return self.icmp("ne", self.call("rt_cond", [cc, o, d, s, s2]), 0)
        return self.emit(f"xor i1 {r}, true") if neg else r

    # ---------------------------------------------------------------- exits
    def leave(self, ret, cond: str | None = None, snapshot=None, eip=None, nextfn="0", acc=None) -> None:
        """Branch to the shared exit (on `cond` false when given; the code goes on in a new
        basic block). `snapshot` = (regs, cc, hits) to leave with, by default the current ones.
        `eip` is stored (the block's start when the interpreter resumes a row of it); a nonzero
        `nextfn` is a compiled successor to tail-call with `acc` instructions retired so far."""
        regs, cc, hits = snapshot if snapshot else (list(self.regs), self.cc, self.hits)
        eip = self.beip if eip is None else eip
        acc = self.accp if acc is None else acc
        hits = self.op("add", self.hbase, hits)  # TLB hits of earlier blocks plus this one's
        ret = self.op("or", ret, self.tb << T1_TB_SHIFT)
        if cond is None:
            self.lines.append("  br label %exit")
        else:
            nxt = self.new_label()
            self.lines.append(f"  br i1 {cond}, label %{nxt}, label %exit")
        site = 0
        if _PROFILE and len(_EXIT_SITES) < len(_EXIT_COUNTS):
            site = len(_EXIT_SITES)
            rb = (self.row0 + self.row) * ROW_WIDTH
            _EXIT_SITES.append((self.tb, self.phys + int(self.rows[rb + R_OFF]) if self.row < self.nrows else -1,
                                self.row, int(self.rows[rb + R_H]) if self.row < self.nrows else -1,
                                "bail" if cond is not None else ("linked" if nextfn != "0" else "end")))
        self.exits.append((self.cur, regs, cc, ret, hits, eip, nextfn, acc, site))
        if cond is not None:
            self.label(nxt)

    # ---------------------------------------------------------------- memory
    def seg(self, s: int) -> tuple[str, str, str]:
        if s not in self.segs:
            o = S.SEG_BASE_SLOT + s * S.SEG_STRIDE
            self.segs[s] = (f"%sb{s}", f"%sl{s}", f"%sa{s}")
            self.g_seg_loads.append((s, o))
        return self.segs[s]

    def access(self, s: int, ea, size: int, kinds: tuple[int, ...], bail) -> str:
        """Check a `size`-byte access at `s`:`ea` for each TLB kind in `kinds` (read, write or
        both for a read-modify-write): the segment's fast test and a TLB hit, else leave with
        `bail`. Returns the host address."""
        base, lim, attr = self.seg(s)
        write = ACC_WRITE in kinds
        bad = SEGF_NULL | SEGF_EXPDOWN | (SEGF_NOWRITE if write else 0) | (SEGF_NOREAD if ACC_READ in kinds else 0)
        ok = self.icmp("eq", self.op("and", attr, bad), 0)
        ok = self.emit(f"and i1 {ok}, {self.icmp('ule', self.op('add', ea, size - 1), lim)}")
        la = self.op("and", self.op("add", base, ea), M32)
        idx = self.op("and", self.op("lshr", la, 12), TLB_INDEX_MASK)
        want = self.op("or", self.op("and", la, 0xFFFF_F000), self.user)
        ok = self.emit(f"and i1 {ok}, {self.icmp('ule', self.op('and', la, 0xFFF), 0x1000 - size)}")
        addend = None
        for kind in kinds:
            e = self.op("add", "%tlb", self.op("mul", self.op("add", idx, kind << TLB_BITS), TLB_STRIDE * 8))
            tag = self.load64(e)
            ok = self.emit(f"and i1 {ok}, {self.icmp('eq', tag, want)}")
            if addend is None:
                addend = self.load64(self.op("add", e, TE_ADDEND * 8))
        self.leave(bail, ok, snapshot=self._snap)
        self.hits += len(kinds)
        return self.op("add", self.op("add", "%mem", addend), la)

    def host_load(self, host, size: int) -> str:
        p = self.emit(f"inttoptr i64 {host} to ptr")
        v = self.emit(f"load i{_BITS[size]}, ptr {p}, align 1")
        return self.emit(f"zext i{_BITS[size]} {v} to i64")

    def host_store(self, host, size: int, v) -> None:
        p = self.emit(f"inttoptr i64 {host} to ptr")
        t = self.emit(f"trunc i64 {v} to i{_BITS[size]}")
        self.lines.append(f"  store i{_BITS[size]} {t}, ptr {p}, align 1")


class _Jit:
    """An LLJIT and the libraries it has loaded.

    Every library ORC links leaves its JITDylib (its symbol table) in the LLJIT's session for good,
    even once its code is unloaded: a few KiB a module, tens of MiB over an hour of a guest that
    keeps compiling. So an LLJIT links JIT_MODULES libraries, then a fresh one takes over, and the
    retired one is disposed of with all its dylibs once its last library is unloaded.

    Its modules are parsed into its own LLVMContext: a context keeps every constant and type ever
    made in it (uniqued, never freed), and guest code brings new addresses and immediates without
    end, so the global context grew with every module (~100 bytes a new constant); this one goes
    with the LLJIT."""

    def __init__(self, llvm):
        self.lljit = llvm.create_lljit_compiler()
        self.context = llvm.create_context()  # (modules hold it too: it outlives the last of them)
        self.linked = 0  # libraries linked
        self.live = 0  # of which not unloaded yet
        self.retired = False

    def link(self, builder, name: str) -> _Library:
        tracker = builder.link(self.lljit, name)
        self.linked += 1
        self.live += 1
        return _Library(self, tracker)

    def retire(self) -> None:
        self.retired = True
        self._dispose_if_unused()

    def unloaded(self) -> None:
        self.live -= 1
        self._dispose_if_unused()

    def _dispose_if_unused(self) -> None:
        if self.retired and self.live == 0 and not self.lljit.closed:
            self.lljit.close()
            self.context = None


class _Library:
    """One module's compiled code (its ORC resource tracker); `close` unloads it."""

    __slots__ = ("jit", "tracker")

    def __init__(self, jit: _Jit, tracker):
        self.jit = jit
        self.tracker = tracker

    def close(self) -> None:
        if self.tracker is not None:
            self.tracker.close()
            self.tracker = None
            self.jit.unloaded()


class CodeGen:
    """Turns queued blocks into one LLVM module, compiles it and links it as one ORC library."""

    def __init__(self):
        import llvmlite.binding as llvm

        self.llvm = llvm
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        from emu.translate import tier1_rt

        self.rt = tier1_rt.addresses()
        self.serial = 0
        # Code is linked by ORC (LLJIT), a module a library: the IR and the optimiser are gone once
        # the object is emitted, and a library is unloaded when its tracker is closed. (MCJIT kept
        # each module's IR and ~0.7 MiB of engine: 133 KiB a compiled block against ~20 here.)
        for option in filter(None, os.environ.get("PYEMU_T1_LLVM_OPTIONS", "").split(",")):
            llvm.set_option("pyemu", option)  # LLVM's own switches (e.g. -fast-isel), for experiments
        self.tm = llvm.Target.from_default_triple().create_target_machine(
            opt=codegen_opt(), reloc="pic")
        self.jit = _Jit(llvm)
        self._passes = None  # [pass builder, module pass manager, runs of the builder]: see `build`

    # ---------------------------------------------------------------- one region
    def region_ir(self, members: list[_Member], hflags: int, name: str) -> tuple[str, int]:
        """IR of the function entered at `members[0]`'s block; returns (text, rows of that block
        compiled). 0 rows: nothing to gain.

        The other members are blocks the loop has chained from it, directly or through one
        another, on the same physical page with the same mode bits (`Tier1._region`). A direct
        branch to one of them goes to its header inside this function (the registers and flags stay
        SSA values) instead of returning or tail-calling: a loop of several blocks runs as one
        native loop. A member whose rows run out compiles a prefix and leaves as a single block's
        function does."""
        b = _Block(self, name, members, hflags)
        first = 0
        while b.todo:
            k = b.todo.pop(0)
            if k:
                b.start(k)
            done, ended = self._member_rows(b)
            if k == 0:
                if done == 0:
                    return "", 0
                first = done
            if not ended and done == b.nrows:
                # It falls off its end (its last row is no control transfer: the row cap or a page
                # end stopped the decoder). For the loop that is a direct jump to the next byte, which
                # it chains through way 0: so go on there as after a JMP.
                rb = (b.row0 + done - 1) * ROW_WIDTH
                end = int(b.rows[rb + R_OFF]) + int(b.rows[rb + R_LEN])
                _jump(b, b.op("and", b.op("add", b.beip, end), b.ipmask), done, True, "0")
            elif not ended:
                b.leave(done)
        out = [f"define i64 @{name}(i64 %sp, i64 %cp, i64 %acc_in) {{", "entry:"]
        if b.uses_ccbuf:
            out.append("  %ccbuf = alloca [4 x i64], align 8")
            out.append("  %ccp = ptrtoint ptr %ccbuf to i64")

        def ld(dst: str, addr_expr: str) -> None:
            out.append(f"  {dst}.a = add i64 {addr_expr}")
            out.append(f"  {dst}.p = inttoptr i64 {dst}.a to ptr")
            out.append(f"  {dst} = load i64, ptr {dst}.p, align 8")

        ld("%mem", f"%cp, {CTX_MEM * 8}")
        ld("%tlb", f"%cp, {CTX_TLB * 8}")
        for i in range(8):
            ld(f"%r{i}_in", f"%sp, {i * 8}")
        for j, nm in enumerate(("op", "dst", "src", "src2")):
            ld(f"%cc_{nm}_in", f"%sp, {(S.CC_OP + j) * 8}")
        ld("%beip", f"%sp, {S.EIP * 8}")
        ld("%budget", f"%sp, {S.BUDGET * 8}")
        ld("%csbase", f"%sp, {(S.SEGBASE + S.CS * S.SEG_STRIDE) * 8}")
        ld("%bcp", f"%cp, {CTX_BLOCKS * 8}")
        ld("%tbs", f"%bcp, {B.BC_TBS_PTR * 8}")
        for s, o in b.g_seg_loads:
            ld(f"%sb{s}", f"%sp, {(o + S.SEG_BASE) * 8}")
            ld(f"%sl{s}", f"%sp, {(o + S.SEG_LIMIT) * 8}")
            ld(f"%sa{s}", f"%sp, {(o + S.SEG_ATTR) * 8}")
        m0 = members[0]
        for m in members[1:]:
            if m.line >= 0:  # (no mask: an offset that wraps the IP never equals a masked target)
                out.append(f"  {m.beip} = add i64 %beip, {m.phys - m0.phys}")
        out.append("  br label %h0")
        m0.incoming.insert(0, ("entry", [f"%r{i}_in" for i in range(8)],
                               tuple(f"%cc_{nm}_in" for nm in ("op", "dst", "src", "src2")), "%acc_in", "0"))
        body = b.lines
        for k in sorted((k for k, m in enumerate(members) if m.line >= 0), key=lambda k: -members[k].line):
            inc = members[k].incoming

            def hphi(name: str, field: int, j: int | None = None, inc=inc) -> str:
                vals = [f"[ {e[field] if j is None else e[field][j]}, %{e[0]} ]" for e in inc]
                return f"  {name} = phi i64 " + ", ".join(vals)

            phis = [hphi(f"%r{i}_h{k}", 1, i) for i in range(8)]
            phis += [hphi(f"%cc_{nm}_h{k}", 2, j) for j, nm in enumerate(("op", "dst", "src", "src2"))]
            phis += [hphi(f"%accp{k}", 3), hphi(f"%hbase{k}", 4)]
            body[members[k].line + 1: members[k].line + 1] = phis
        out.extend(body)
        # the shared exit: one phi per register written, per flag word, the result and the hits
        out.append("exit:")
        preds = b.exits

        def phi(name: str, vals: list) -> None:
            out.append(f"  {name} = phi i64 " + ", ".join(f"[ {v}, %{lbl} ]" for v, lbl in vals))

        stores = [(f"%x{r}", r) for r in sorted(b.written)]
        for r in sorted(b.written):
            phi(f"%x{r}", [(e[1][r], e[0]) for e in preds])
        if b.cc_written:
            for j in range(4):
                phi(f"%xc{j}", [(e[2][j], e[0]) for e in preds])
                stores.append((f"%xc{j}", S.CC_OP + j))
        phi("%xhits", [(e[4], e[0]) for e in preds])
        phi("%xret", [(e[3], e[0]) for e in preds])
        phi("%xeip", [(e[5], e[0]) for e in preds])
        phi("%xnext", [(e[6], e[0]) for e in preds])
        phi("%xacc", [(e[7], e[0]) for e in preds])
        if _PROFILE:
            phi("%xsite", [(e[8], e[0]) for e in preds])
        stores.append(("%xeip", S.EIP))
        for val, slot in stores:
            out.append(f"  {val}.a = add i64 %sp, {slot * 8}")
            out.append(f"  {val}.p = inttoptr i64 {val}.a to ptr")
            out.append(f"  store i64 {val}, ptr {val}.p, align 8")
        out.append(f"  %st.a = add i64 %cp, {CTX_STATS * 8}")
        out.append("  %st.p = inttoptr i64 %st.a to ptr")
        out.append("  %st = load i64, ptr %st.p, align 8")

        def bump(stat: int, by: str, tag: str) -> None:
            out.append(f"  %{tag}.a = add i64 %st, {stat * 8}")
            out.append(f"  %{tag}.p = inttoptr i64 %{tag}.a to ptr")
            out.append(f"  %{tag} = load i64, ptr %{tag}.p, align 8")
            out.append(f"  %{tag}.n = add i64 %{tag}, {by}")
            out.append(f"  store i64 %{tag}.n, ptr %{tag}.p, align 8")

        def bump_state(slot: int, by: str, tag: str) -> None:
            out.append(f"  %{tag}.a = add i64 %sp, {slot * 8}")
            out.append(f"  %{tag}.p = inttoptr i64 %{tag}.a to ptr")
            out.append(f"  %{tag} = load i64, ptr %{tag}.p, align 8")
            out.append(f"  %{tag}.n = add i64 %{tag}, {by}")
            out.append(f"  store i64 %{tag}.n, ptr %{tag}.p, align 8")

        bump(K.TLB_HITS, "%xhits", "th")
        out.append("  %chain = icmp ne i64 %xnext, 0")
        out.append("  br i1 %chain, label %tail, label %fin")
        # a compiled successor on the same page: go on in it (no stack growth: a tail call)
        out.append("tail:")
        bump(K.CHAINED, "1", "tch")
        bump(K.LOOKUPS, "1", "tlk")
        bump(K.TIER1_CHAINED, "1", "tt1")
        out.append("  %tfp = inttoptr i64 %xnext to ptr")
        out.append("  %tr = musttail call i64 %tfp(i64 %sp, i64 %cp, i64 %xacc)")
        out.append("  ret i64 %tr")
        # back to the loop: the instructions of earlier blocks and passes are counted here, the
        # last block's rows by the loop (it may go on interpreting that block)
        out.append("fin:")
        if _PROFILE:
            out.append("  %xs.a = mul i64 %xsite, 8")
            out.append(f"  %xs.b = add i64 %xs.a, {_EXIT_COUNTS.ctypes.data}")
            out.append("  %xs.p = inttoptr i64 %xs.b to ptr")
            out.append("  %xs = load i64, ptr %xs.p, align 8")
            out.append("  %xs.n = add i64 %xs, 1")
            out.append("  store i64 %xs.n, ptr %xs.p, align 8")
        bump_state(S.ICOUNT, "%xacc", "ic")
        bump_state(S.BUDGET, "%xacc.neg", "bu")
        out.insert(len(out) - 5, "  %xacc.neg = sub i64 0, %xacc")
        bump(K.INSNS, "%xacc", "in")
        bump(K.COMPILED_INSNS, "%xacc", "ci")
        out.append("  ret i64 %xret")
        out.append("}")
        return "\n".join(out), first

    @staticmethod
    def _member_rows(b: _Block) -> tuple[int, bool]:
        """Generate the current member's rows up to its end or the first one with no generator:
        (rows generated, whether the last one ended the block)."""
        done = 0
        ended = False
        for i in range(b.nrows):
            rb = (b.row0 + i) * ROW_WIDTH
            r = b.rows[rb: rb + ROW_WIDTH]
            b.row = i
            b._snap = (list(b.regs), b.cc, b.hits)
            saved = (len(b.lines), b.n, list(b.regs), b.cc, b.cc_static, set(b.written), b.cc_written,
                     b.hits, len(b.exits), dict(b.segs), len(b.g_seg_loads), b.cur, b.uses_ccbuf, list(b.todo),
                     [len(m.incoming) for m in b.members])
            try:
                ended = _gen_row(b, r, i)
            except Unsupported:
                (nl, b.n, b.regs, b.cc, b.cc_static, b.written, b.cc_written, b.hits, ne, b.segs, ns, b.cur,
                 b.uses_ccbuf, b.todo, ninc) = saved
                del b.lines[nl:]
                del b.exits[ne:]
                del b.g_seg_loads[ns:]
                for m, n in zip(b.members, ninc, strict=True):
                    del m.incoming[n:]
                break
            done = i + 1
            if ended:
                break
        return done, ended

    # ---------------------------------------------------------------- a batch
    def compile(self, blocks) -> tuple[dict[int, tuple[int, int]], object]:
        """Compile `blocks` [(tb, row0, nrows, hflags, phys, rows)] as one module: ({tb: (address,
        rows)}, the `_Library` that owns the code, or None). A block with no compilable prefix maps
        to (0, 0)."""
        return self.build(self.generate(blocks))

    def generate(self, blocks) -> list[tuple[int, str, str, int]]:
        """The IR of each block: [(tb, function name, text, rows compiled)] (Python: it holds the GIL,
        so a background compile generates on the main thread and hands the worker only LLVM work).
        A block is (tb, row0, nrows, hflags, phys, rows[, region]): `region` lists the blocks it
        chains to that its function includes, [(tb, phys, rows, nrows, succ)] with itself first
        (`Tier1._region`)."""
        funcs = []
        for tb, row0, nrows, hflags, phys, rows, *region in blocks:
            self.serial += 1
            name = f"tb{self.serial}"
            members = [_Member(0, tb, phys, rows, row0, nrows)]
            if region and region[0]:
                members[0].succ = region[0][0][4]
                members += [_Member(k, t, p, r, 0, n, succ) for k, (t, p, r, n, succ) in enumerate(region[0][1:], 1)]
            text, n = self.region_ir(members, hflags, name)
            funcs.append((tb, name, text, n))
        return funcs

    def build(self, funcs: list[tuple[int, str, str, int]]) -> tuple[dict[int, tuple[int, int]], object]:
        """Optimise, emit and link the functions `generate` made as one library (LLVM calls, which
        release the GIL)."""
        from emu.translate import tier1_rt

        llvm = self.llvm
        result = {tb: (0, 0) for tb, _name, _text, n in funcs if n == 0}
        funcs = [f for f in funcs if f[3]]
        if not funcs:
            return result, None
        decls = [f"declare i64 @{n}({', '.join(['i64'] * nargs)})" + (" #0" if n in tier1_rt.PURE else "")
                 for n, nargs in tier1_rt.ARITY.items()]
        decls.append("attributes #0 = { nounwind willreturn memory(none) }")
        src = "\n".join(decls + [f[2] for f in funcs]) + "\n"
        if self.jit.linked >= JIT_MODULES:
            self.jit.retire()
            self.jit = _Jit(llvm)
        mod = llvm.parse_assembly(src, context=self.jit.context)
        mod.verify()
        if self._passes is None:  # one pass manager for every module: a new one a module leaked
            mpm = llvm.create_new_module_pass_manager()  # ~10 KiB a module (a 1-hour soak: +200 MiB)
            for p in os.environ.get("PYEMU_T1_PASSES", ",".join(T1_PASSES)).split(","):
                getattr(mpm, f"add_{p}_pass")()
            self._passes = [None, mpm, 0]
        pb, mpm, runs = self._passes
        if pb is None or runs >= PB_MODULES:  # each run adds instrumentation callbacks to the pass
            if pb is not None:  # builder, all called before every pass: with one builder for every
                pb.close()  # module, the passes of the 8,000th took 20 times as long as the first's
            pb = llvm.create_pass_builder(self.tm, llvm.create_pipeline_tuning_options(speed_level=0))
            runs = 0  # (a builder per module would leak ~1.5 KiB each instead)
        self._passes[0], self._passes[2] = pb, runs + 1
        mpm.run(mod, pb)
        lib = llvm.JITLibraryBuilder().add_object_img(self.tm.emit_object(mod))
        for name, addr in self.rt.items():
            lib.import_symbol(name, addr)
        for _tb, name, _text, _n in funcs:
            lib.export_symbol(name)
        library = self.jit.link(lib, f"m{funcs[0][1]}")
        for tb, name, _text, n in funcs:
            result[tb] = (library.tracker[name], n)
        return result, library


# ---------------------------------------------------------------------------- the generators
def _ea(b: _Block, r) -> str:
    ea = str(int(r[R_DISP]))
    base, index = int(r[R_BASE]), int(r[R_INDEX])
    if base >= 0:
        ea = b.op("add", ea, b.regs[base])
    if index >= 0:
        ea = b.op("add", ea, b.op("shl", b.regs[index], int(r[R_SCALE])))
    return b.op("and", ea, M32 if int(r[R_ASIZE]) == 4 else 0xFFFF)


def _eips(b: _Block, r):
    ieip = b.op("and", b.op("add", b.beip, int(r[R_OFF])), b.ipmask)
    neip = b.op("and", b.op("add", ieip, int(r[R_LEN])), b.ipmask)
    return ieip, neip


def _branch(b: _Block, taken: str, target, neip, ret: int) -> None:
    """End the block at a conditional direct transfer: to `target` when `taken`, else to `neip`.
    Where a region member follows either way, the two ways are separate paths (each a direct
    branch to its member's header); else one exit with the target selected."""
    if b.m.succ == (-1, -1):
        _jump(b, b.sel(taken, target, neip), ret, True, b.zext(b.emit(f"xor i1 {taken}, true")))
        return
    tk, fall = b.new_label(), b.new_label()
    b.lines.append(f"  br i1 {taken}, label %{tk}, label %{fall}")
    b.label(tk)
    _jump(b, target, ret, True, "0", way_static=0)
    b.label(fall)
    _jump(b, neip, ret, True, "1", way_static=1)


def _jump(b: _Block, target, ret, chain: bool, way="0", way_static: int | None = None) -> None:
    """End the block at a control transfer to `target`.

    A direct branch (`chain`) at the block's end may go on without returning to the loop: to a
    member of the region (`CodeGen.region_ir`) the loop has chained this exit to, or to the region's
    first block (a one-block loop: a back edge to its header), while that whole block fits in the
    budget and its record is still valid; else to a compiled successor the loop has already chained
    this exit to (`TB_NEXT0 + way`), checked as the loop checks a link: still valid, same physical
    page and mode bits, compiled, within the budget, no interrupt shadow."""
    flags = T1_ENDED | (T1_CHAIN if chain else 0)
    ret_v = b.op("or", b.op("shl", way, T1_WAY_SHIFT), ret | flags)
    if not (chain and ret == b.nrows):
        b.leave(ret_v, eip=target)
        return
    cands = [k for w, k in enumerate(b.m.succ) if k >= 0 and way_static in (None, w)]
    if 0 not in cands:
        cands.append(0)
    acc = b.op("add", b.accp, b.nrows)
    for k in cands:
        m = b.members[k]
        ok = b.emit(f"and i1 {b.icmp('eq', target, m.beip)}, "
                    f"{b.icmp('sge', b.op('sub', b.op('sub', '%budget', acc), m.nrows), 0)}")
        if k:  # (the first block is valid: nothing invalidates a block while compiled code runs)
            live = b.load64(b.op("add", "%tbs", (m.tb * B.TB_WIDTH + B.TB_PHYS) * 8))
            ok = b.emit(f"and i1 {ok}, {b.icmp('eq', live, m.phys)}")
        go, other = b.new_label(), b.new_label()
        b.lines.append(f"  br i1 {ok}, label %{go}, label %{other}")
        b.label(go)
        b.goto(k, acc)
        b.label(other)
    # the loop links only on a page (TB_NEXT0 + way); a target on another page is looked up
    ok, want, cand = _target_block(b, target, lambda: b.load64(
        b.op("add", "%tbs", b.op("add", (b.tb * B.TB_WIDTH + B.TB_NEXT0) * 8, b.op("shl", way, 3)))))
    _leave_linked(b, ret_v, target, ok, want, cand)


def _target_block(b: _Block, target, link=None) -> tuple[str, str, str]:
    """(is the physical address of `target` known, that address, the block to check there: -1 for
    none). On the block's own linear page the address is on its physical page and the block is
    `link` (the loop's link of this exit) or, without one, the table's; on another page (a path of
    its own: the same-page case costs nothing more) the address comes from the execute TLB's entry
    when that hits (the loop's own lookup: a page the guest has remapped since has a new entry or
    none) and the block from the table."""
    tlin = b.op("and", b.op("add", "%csbase", target), M32)
    blin = b.op("and", b.op("add", "%csbase", b.beip), M32)
    same = b.icmp("eq", b.op("lshr", tlin, 12), b.op("lshr", blin, 12))
    off = b.op("and", tlin, 0xFFF)
    on, other, join = b.new_label(), b.new_label(), b.new_label()
    b.lines.append(f"  br i1 {same}, label %{on}, label %{other}")
    b.label(on)
    want_on = b.op("or", b.phys & ~0xFFF, off)
    cand_on = _table_candidate(b, want_on) if link is None else link()
    end_on = b.cur
    b.lines.append(f"  br label %{join}")
    b.label(other)
    e = b.op("add", "%tlb", b.op("mul", b.op("add", b.op("and", b.op("lshr", tlin, 12), TLB_INDEX_MASK),
                                             ACC_EXEC << TLB_BITS), TLB_STRIDE * 8))
    hit = b.icmp("eq", b.load64(e), b.op("or", b.op("and", tlin, 0xFFFF_F000), b.user))
    want_other = b.op("or", b.op("shl", b.op("and", b.load64(b.op("add", e, TE_PHYS * 8)), TEF_PPN_MASK), 12), off)
    cand_other = _table_candidate(b, want_other)
    b.lines.append(f"  br label %{join}")
    b.label(join)
    ok = b.emit(f"phi i1 [ true, %{end_on} ], [ {hit}, %{other} ]")
    want = b.emit(f"phi i64 [ {want_on}, %{end_on} ], [ {want_other}, %{other} ]")
    cand = b.emit(f"phi i64 [ {cand_on}, %{end_on} ], [ {cand_other}, %{other} ]")
    return ok, want, cand


def _table_candidate(b: _Block, want) -> str:
    """The block the loop's table holds for physical address `want` (the most recent way of its
    set: the hash of `blockcache.table_set`), -1 for none."""
    mix = b.op("xor", b.op("xor", want, b.op("lshr", want, B.TABLE_BITS)), b.hflags * B.TABLE_HFLAGS_MIX)
    slot = b.op("mul", b.op("and", mix, B.TABLE_SETS - 1), B.TABLE_WAYS * 8)
    return b.load64(b.op("add", b.load64(b.op("add", "%bcp", B.BC_TABLE_PTR * 8)), slot))


def _leave_linked(b: _Block, ret_v, target, ok, want, cand) -> None:
    """Leave for `target`, tail-calling block `cand` (-1: none) where `ok` and the record passes the
    loop's checks of a link: still valid at `want` with the same mode bits, compiled, within the
    budget, no interrupt shadow."""
    has = b.icmp("sge", cand, 0)
    rec = b.op("add", "%tbs", b.op("mul", b.sel(has, cand, 0), B.TB_WIDTH * 8))
    fn = b.load64(b.op("add", rec, B.TB_FN * 8))
    acc2 = b.op("add", b.accp, b.nrows)
    room = b.op("sub", b.op("sub", "%budget", acc2), b.load64(b.op("add", rec, B.TB_NROWS * 8)))
    inh = b.load64(b.slot(S.INHIBIT_IRQ))
    for c in (has, b.icmp("eq", b.load64(b.op("add", rec, B.TB_PHYS * 8)), want),
              b.icmp("eq", b.load64(b.op("add", rec, B.TB_HFLAGS * 8)), b.hflags),
              b.icmp("sgt", fn, 0), b.icmp("sge", room, 0), b.icmp("eq", inh, 0)):
        ok = b.emit(f"and i1 {ok}, {c}")
    b.leave(ret_v, eip=target, nextfn=b.sel(ok, fn, 0), acc=b.sel(ok, acc2, b.accp))


def _jump_indirect(b: _Block, target, ret) -> None:
    """End the block at an indirect transfer (RET, JMP/CALL r/m), or a CALL (which the loop does
    not link), to `target`.

    Where the target is on the block's own physical page, its block is looked up in the block
    cache's table as the loop looks it up (the most recent way of its set: the hash of
    `blockcache.table_set`) and, when the record passes the checks of a direct link (`_jump`),
    tail-called; else back to the loop, which looks it up itself. A bytecode interpreter's
    dispatch or a call-heavy workload's RETs then stay in compiled code instead of making a
    round trip through the loop on every transfer."""
    ret_v = ret | T1_ENDED
    if ret != b.nrows:
        b.leave(ret_v, eip=target)
        return
    _leave_linked(b, ret_v, target, *_target_block(b, target))


def _stack_push(b: _Block, value, size: int, bail: int) -> None:
    esp = b.regs[S.ESP]
    nsp = b.op("and", b.op("sub", esp, size), b.smask)
    host = b.access(S.SS, nsp, size, (ACC_WRITE,), bail)
    b.host_store(host, size, value)
    _set_sp(b, nsp)


def _set_sp(b: _Block, value) -> None:
    if b.smask == 0xFFFF:
        b.regs[S.ESP] = b.op("or", b.op("and", b.regs[S.ESP], 0xFFFF_0000), b.op("and", value, 0xFFFF))
    else:
        b.regs[S.ESP] = b.op("and", value, M32)
    b.written.add(S.ESP)


def _operand(b: _Block, op: int, seg: int, ea, size: int, i: int, imm: int | None = None):
    """A source operand: register `op`, memory (read-checked, else leave at row `i`), or the
    immediate (masked to the operand size; None: this row has no immediate form)."""
    if op >= 0:
        return b.rget(op, size)
    if op == RM_MEM:
        return b.host_load(b.access(seg, ea, size, (ACC_READ,), i), size)
    if imm is None:
        raise Unsupported
    return str(imm & _mask(size))


def _rmw_load(b: _Block, dst: int, seg: int, ea, size: int, i: int, write: bool = True):
    """The destination operand of a read-modify-write (or compare) row: a register, or memory whose
    read (and write) permission is checked before anything changes. Returns (value, host address)."""
    if dst >= 0:
        return b.rget(dst, size), None
    host = b.access(seg, ea, size, (ACC_READ, ACC_WRITE) if write else (ACC_READ,), i)
    return b.host_load(host, size), host


def _rmw_store(b: _Block, dst: int, host, size: int, value) -> None:
    if dst >= 0:
        b.rset(dst, size, value)
    else:
        b.host_store(host, size, value)


def _gen_row(b: _Block, r, i: int) -> bool:
    """Generate one row; True when it ends the block (a control transfer). Raises Unsupported."""
    h = int(r[R_H])
    size = int(r[R_SIZE])
    dst, src = int(r[R_DST]), int(r[R_SRC])
    aux, imm, x, seg = int(r[R_AUX]), int(r[R_IMM]), int(r[R_X]), int(r[R_SEG])
    if size not in (1, 2, 4) and h not in (H.H_NOP, H.H_JCC, H.H_JMP_REL):
        raise Unsupported
    mem = bool(x & X_MEM)
    ea = _ea(b, r) if mem and h != H.H_POP else None
    m = _mask(size) if size in (1, 2, 4) else M32
    if h == H.H_NOP:
        return False
    if h == H.H_MOV:
        v = _operand(b, src, seg, ea, size, i, imm)
        if dst >= 0:
            b.rset(dst, size, v)
        else:
            b.host_store(b.access(seg, ea, size, (ACC_WRITE,), i), size, v)
        return False
    if h == H.H_LEA:
        b.rset(dst, size, ea)
        return False
    if h == H.H_ALU:
        a, host = _rmw_load(b, dst, seg, ea, size, i, aux not in (_ALU_CMP, _ALU_TEST))
        v = _operand(b, src, seg, ea, size, i, imm)
        res, cc = _alu(b, aux, a, v, size)
        if aux not in (_ALU_CMP, _ALU_TEST):
            _rmw_store(b, dst, host, size, res)
        b.set_cc(*cc)
        return False
    if h == H.H_UNARY:
        a, host = _rmw_load(b, dst, seg, ea, size, i)
        if aux == 0 or aux == 1:
            cf = b.cf()
            res = b.op("and", b.op("add" if aux == 0 else "sub", a, 1), m)
            cc = (F.cc_op_of(F.K_INC if aux == 0 else F.K_DEC, size), res, "1", cf)
        elif aux == 2:
            res = b.op("and", b.op("xor", a, -1), m)
            cc = None
        else:
            res = b.op("and", b.op("sub", 0, a), m)
            cc = (F.cc_op_of(F.K_SUB, size), res, a, "0")
        _rmw_store(b, dst, host, size, res)
        if cc:
            b.set_cc(*cc)
        return False
    if h == H.H_SHIFT:
        a, host = _rmw_load(b, dst, seg, ea, size, i)
        count = imm & 31 if imm >= 0 else None
        if count == 0:
            return False
        if count is not None and aux in (0, 1):
            # ROL/ROR inline: CF and OF from the result, the other four kept from the lazy state
            # (rt_flags is pure: LLVM drops it when the next flag-setter overwrites them).
            bits = _BITS[size]
            n = count & (bits - 1)
            if aux == 1:
                n = (bits - n) & (bits - 1)
            res = a if n == 0 else b.op("or", b.op("shl", b.op("and", a, (1 << (bits - n)) - 1), n),
                                        b.op("lshr", a, bits - n))
            if aux == 0:
                cf = b.op("and", res, 1)
                of = b.op("and", b.op("xor", b.op("lshr", res, bits - 1), cf), 1)
            else:
                cf = b.op("and", b.op("lshr", res, bits - 1), 1)
                of = b.op("and", b.op("xor", cf, b.op("lshr", res, bits - 2)), 1)
            kept = b.op("and", b.flags(), ~(F.CF | F.OF))
            b.set_cc(F.CC_OP_EFLAGS, "0", b.op("or", b.op("or", kept, cf), b.op("shl", of, 11)), "0")
        elif count is not None and aux in (4, 5, 6, 7):
            if aux in (4, 6):
                t = b.op("and", b.op("shl", a, count - 1), m)
                res = b.op("and", b.op("shl", t, 1), m)
                cc = (F.cc_op_of(F.K_SHL, size), res, t, "0")
            elif aux == 5:
                t = b.op("lshr", a, count - 1)
                res = b.op("lshr", t, 1)
                cc = (F.cc_op_of(F.K_SAR, size), res, t, "0")
            else:
                sv = b.sext(a, size)
                t = b.op("and", b.op("ashr", sv, count - 1), m)
                res = b.op("and", b.op("ashr", sv, count), m)
                cc = (F.cc_op_of(F.K_SAR, size), res, t, "0")
            b.set_cc(*cc)
        else:
            cnt = str(count) if count is not None else b.rget(1, 1)
            b.uses_ccbuf = True
            for j in range(4):
                b.store64(b.op("add", "%ccp", 8 * j), b.cc[j])
            res = b.call("rt_shift", [aux, a, cnt, size, "%ccp"])
            cc = tuple(b.load64(b.op("add", "%ccp", 8 * j)) for j in range(4))
            b.cc = cc
            b.cc_static = None
            b.cc_written = True
        _rmw_store(b, dst, host, size, res)
        return False
    if h == H.H_SCALAR:
        _scalar(b, aux, dst, src, seg, ea, size, imm, i)
        return False
    if h == H.H_IMUL2:
        v = _operand(b, src, seg, ea, size, i)
        if aux == 1:
            a, v = v, str(imm & m)
        else:
            a = b.rget(dst, size)
        p = b.op("mul", b.sext(a, size), b.sext(v, size))
        lo = b.op("and", p, m)
        ovf = b.zext(b.icmp("ne", p, b.sext(lo, size)))
        b.rset(dst, size, lo)
        b.set_cc(F.cc_op_of(F.K_IMUL, size), lo, ovf, "0")
        return False
    if h == H.H_MULDIV:
        _muldiv(b, aux, _operand(b, dst, seg, ea, size, i), size, i)
        return False
    if h == H.H_MOVX:
        size2 = (x >> X_SIZE2_SHIFT) & 0xFF
        if size2 not in (1, 2):
            raise Unsupported
        if src >= 0:
            v = b.rget(src, size2)
        else:
            v = b.host_load(b.access(seg, ea, size2, (ACC_READ,), i), size2)
        if aux == 1:
            v = b.op("and", b.sext(v, size2), m)
        b.rset(dst, size, v)
        return False
    if h == H.H_XCHG:
        if dst < 0:
            raise Unsupported
        a, c = b.rget(src, size), b.rget(dst, size)
        b.rset(dst, size, a)
        b.rset(src, size, c)
        return False
    if h == H.H_CMOVCC:
        v = _operand(b, src, seg, ea, size, i)
        c = b.cond(aux)
        if size == 4:
            b.rset(dst, 4, b.sel(c, v, b.regs[dst]))
        else:
            b.rset(dst, size, b.sel(c, v, b.rget(dst, size)))
        return False
    if h == H.H_SETCC:
        v = b.zext(b.cond(aux))
        if dst >= 0:
            b.rset(dst, 1, v)
        else:
            b.host_store(b.access(seg, ea, 1, (ACC_WRITE,), i), 1, v)
        return False
    if h == H.H_CBW:
        if size == 2:
            b.rset(0, 2, b.op("and", b.sext(b.rget(0, 1), 1), 0xFFFF))
        else:
            b.rset(0, 4, b.op("and", b.sext(b.rget(0, 2), 2), M32))
        return False
    if h == H.H_CWD:
        a = b.rget(0, size)
        neg = b.icmp("ne", b.op("lshr", a, size * 8 - 1), 0)
        b.rset(2, size, b.sel(neg, m, 0))
        return False
    if h == H.H_PUSH:
        v = _operand(b, dst, seg, ea, size, i, imm)  # PUSH r, PUSH m (read first), PUSH imm
        _stack_push(b, v, size, i)
        return False
    if h == H.H_POP:
        if dst < 0:
            raise Unsupported
        osp = b.regs[S.ESP]
        host = b.access(S.SS, b.op("and", osp, b.smask), size, (ACC_READ,), i)
        v = b.host_load(host, size)
        _set_sp(b, b.op("add", osp, size))
        b.rset(dst, size, v)  # POP ESP: the popped value wins (written after the increment)
        return False
    # ---- control transfers: they end the block
    if h == H.H_JCC:
        _ieip, neip = _eips(b, r)
        tmask = 0xFFFF if size == 2 else M32
        taken = b.cond(aux)
        _branch(b, taken, b.op("and", b.op("add", neip, imm), tmask), neip, i + 1)
        return True
    if h == H.H_JMP_REL:
        _ieip, neip = _eips(b, r)
        _jump(b, b.op("and", b.op("add", neip, imm), 0xFFFF if size == 2 else M32), i + 1, True, "0")
        return True
    if h == H.H_LOOP:
        asz = int(r[R_ASIZE])
        cmask = 0xFFFF if asz == 2 else M32
        _ieip, neip = _eips(b, r)
        cnt = b.op("and", b.regs[1], cmask)
        if aux == 3:
            take = b.icmp("eq", cnt, 0)
        else:
            cnt = b.op("and", b.op("sub", cnt, 1), cmask)
            b.rset(1, asz, cnt)
            take = b.icmp("ne", cnt, 0)
            if aux in (0, 1):
                z = b.cond(F.CC_Z)
                if aux == 0:
                    z = b.emit(f"xor i1 {z}, true")
                take = b.emit(f"and i1 {take}, {z}")
        _branch(b, take, b.op("and", b.op("add", neip, imm), 0xFFFF if size == 2 else M32), neip, i + 1)
        return True
    if h == H.H_CALL_REL:
        _ieip, neip = _eips(b, r)
        _stack_push(b, neip, size, i)
        _jump_indirect(b, b.op("and", b.op("add", neip, imm), 0xFFFF if size == 2 else M32), i + 1)
        return True
    if h == H.H_JMP_IND or h == H.H_CALL_IND:
        v = _operand(b, dst, seg, ea, size, i)
        if h == H.H_CALL_IND:
            _ieip, neip = _eips(b, r)
            _stack_push(b, neip, size, i)
        _jump_indirect(b, v, i + 1)
        return True
    if h == H.H_RET:
        osp = b.regs[S.ESP]
        host = b.access(S.SS, b.op("and", osp, b.smask), size, (ACC_READ,), i)
        v = b.host_load(host, size)
        _set_sp(b, b.op("add", osp, size + (imm & 0xFFFF)))
        _jump_indirect(b, v, i + 1)
        return True
    raise Unsupported


def _scalar(b: _Block, aux: int, dst: int, src: int, seg: int, ea, size: int, imm: int, i: int) -> None:
    """A semantic function (H_SCALAR): the same operand layer as the interpreter's exec_scalar
    (emu/cpu/scalar_dispatch.py) around a call of the function itself through rt_scalar."""
    _name, _number, writes, defines = SCALAR_ENTRIES[aux]
    a, host = _rmw_load(b, dst, seg, ea, size, i, writes)
    v = _operand(b, src, seg, ea, size, i, imm)
    packed = b.call("rt_scalar", [aux, a, v, size])
    flags = b.op("and", b.op("lshr", packed, SCALAR_FLAGS_SHIFT), F.STATUS_MASK)
    if defines != F.STATUS_MASK:
        kept = b.op("and", b.flags(), F.STATUS_MASK & ~defines)
        flags = b.op("or", kept, b.op("and", flags, defines))
    if writes:
        _rmw_store(b, dst, host, size, b.op("and", packed, _mask(size)))
    b.set_cc(F.CC_OP_EFLAGS, "0", flags, "0")


def _alu(b: _Block, aux: int, a, v, size: int):
    m = _mask(size)
    if aux == _ALU_ADD:
        res = b.op("and", b.op("add", a, v), m)
        return res, (F.cc_op_of(F.K_ADD, size), res, v, "0")
    if aux in (_ALU_SUB, _ALU_CMP):
        res = b.op("and", b.op("sub", a, v), m)
        return (res if aux == _ALU_SUB else a), (F.cc_op_of(F.K_SUB, size), res, v, "0")
    if aux in (_ALU_AND, _ALU_TEST, _ALU_OR, _ALU_XOR):
        opc = {_ALU_AND: "and", _ALU_TEST: "and", _ALU_OR: "or", _ALU_XOR: "xor"}[aux]
        res = b.op(opc, a, v)
        return res, (F.cc_op_of(F.K_LOGIC, size), res, "0", "0")
    cf = b.cf()
    if aux == _ALU_ADC:
        res = b.op("and", b.op("add", b.op("add", a, v), cf), m)
        return res, (F.cc_op_of(F.K_ADC, size), res, v, cf)
    res = b.op("and", b.op("sub", b.op("sub", a, v), cf), m)
    return res, (F.cc_op_of(F.K_SBB, size), res, v, cf)


_AH = 4  # byte register 4 (ModRM encoding)


def _muldiv(b: _Block, aux: int, v, size: int, i: int) -> None:
    """One-operand MUL, IMUL (aux 4, 5): AX / DX:AX / EDX:EAX = the accumulator times `v`; DIV, IDIV
    (aux 6, 7): the double-width dividend by `v`. Whatever would raise #DE (a zero divisor, a
    quotient that does not fit) leaves at row `i` before any effect, and the interpreter raises it;
    so does INT64_MIN / -1, which would trap the host (SDM Vol. 2 "DIV", "IDIV")."""
    bits = size * 8
    m = _mask(size)
    a = b.rget(S.EAX, size)
    if aux in (4, 5):
        if aux == 4:
            p = b.op("mul", a, v)  # < 2**64: the low 64 bits of the i64 product are exact
            lo, hi = b.op("and", p, m), b.op("and", b.op("lshr", p, bits), m)
            b.set_cc(F.cc_op_of(F.K_MUL, size), lo, hi, "0")
        else:
            p = b.op("mul", b.sext(a, size), b.sext(v, size))
            lo, hi = b.op("and", p, m), b.op("and", b.op("ashr", p, bits), m)
            b.set_cc(F.cc_op_of(F.K_IMUL, size), lo, b.zext(b.icmp("ne", p, b.sext(lo, size))), "0")
        if size == 1:
            b.rset(S.EAX, 2, b.op("or", b.op("shl", hi, 8), lo))
        else:
            b.rset(S.EAX, size, lo)
            b.rset(S.EDX, size, hi)
        return
    hi = b.rget(_AH, 1) if size == 1 else b.rget(S.EDX, size)
    n = b.op("or", b.op("shl", hi, bits), a)  # the dividend's bits (64 of them for EDX:EAX)
    if aux == 6:
        b.leave(i, b.emit(f"and i1 {b.icmp('ne', v, 0)}, {b.icmp('ult', hi, v)}"), snapshot=b._snap)
        q, r = b.op("udiv", n, v), b.op("urem", n, v)
    else:
        d = b.sext(v, size)
        nn = n if size == 4 else b.sext(n, 2 * size)
        host_trap = b.emit(f"and i1 {b.icmp('eq', nn, -(1 << 63))}, {b.icmp('eq', d, -1)}")
        ok = b.emit(f"and i1 {b.icmp('ne', d, 0)}, {b.emit(f'xor i1 {host_trap}, true')}")
        b.leave(i, ok, snapshot=b._snap)
        q, r = b.op("sdiv", nn, d), b.op("srem", nn, d)
        b.leave(i, b.emit(f"and i1 {b.icmp('sge', q, -(1 << (bits - 1)))}, {b.icmp('slt', q, 1 << (bits - 1))}"),
                snapshot=b._snap)
    q, r = b.op("and", q, m), b.op("and", r, m)
    if size == 1:
        b.rset(S.EAX, 2, b.op("or", b.op("shl", r, 8), q))
    else:
        b.rset(S.EAX, size, q)
        b.rset(S.EDX, size, r)


# ---------------------------------------------------------------------------- the driver
class Tier1:
    """Owns the code generator and compiles what the loop has queued (CpuCore calls `drain`).

    By default compiling runs on a worker thread while the guest goes on in the interpreter
    (llvmlite releases the GIL while LLVM works and the compiled loop runs without it): `drain`
    hands the queued blocks over, with a copy of their rows, and `install` (on the main thread, at
    every exit of the loop, when no compiled code runs) stores each finished function's address in
    its record, but only if the record still holds the very block that was compiled (same physical
    address, rows and hflags): one invalidated, flushed or retranslated meanwhile keeps its new
    state. With `background=False` (`-icount`, tests that compile everything) `drain` compiles and
    installs before it returns, so blocks turn compiled at the same points on every run.
    """

    def __init__(self, blocks: B.BlockCache, stats: np.ndarray, background: bool = True):
        self.blocks = blocks
        self.stats = stats
        self.background = background and not os.environ.get("PYEMU_T1_SYNC")
        self.gen: CodeGen | None = None
        self._jobs: list = []  # batches waiting for the worker
        self._done: list = []  # (batch, {tb: (address, rows)}, ns) the worker finished
        self._cv = threading.Condition()
        self._worker: threading.Thread | None = None
        self._busy = False  # the worker is compiling a batch
        self._stopping = False
        # compiled code is unloaded with its library once no record calls any of its functions
        self.libraries: list[tuple[_Library, list[tuple[int, int]]]] = []  # (library, [(tb, address)])
        self._sweep_at = LIBRARY_SWEEP_MIN
        self._flushes = int(blocks.bc[B.BC_FLUSHES])  # block-cache flushes as of the last sweep
        self._unload: list[_Library] = []  # libraries the worker unloads before its next compile
        self._inside: dict[int, int] = {}  # blocks some region includes: tb -> its TB_PHYS then
        self._untrimmed = 0  # libraries unloaded since the last trim_heap
        self._built = 0  # modules the worker built since the last trim_heap

    def _take_queue(self) -> list:
        """The blocks the loop queued, each with a copy of its rows (the loop may retranslate into
        the same rows while a worker compiles) and its region (`_region`)."""
        bc, tbs = self.blocks.bc, self.blocks.tbs
        n = int(bc[B.BC_T1_QLEN])
        bc[B.BC_T1_QLEN] = 0
        batch = []
        for q in bc[B.BC_T1_QUEUE: B.BC_T1_QUEUE + n]:
            tb = int(q)
            base = tb * B.TB_WIDTH
            if tbs[base + B.TB_PHYS] < 0 or tbs[base + B.TB_FN] != B.TB_FN_QUEUED:
                continue  # invalidated (or flushed) since it was queued
            row0, nrows, copy = self._rows_of(tb)
            batch.append((tb, row0, nrows, int(tbs[base + B.TB_HFLAGS]), int(tbs[base + B.TB_PHYS]), copy,
                          self._region(tb, copy)))
        return batch

    def _region(self, tb: int, copy: np.ndarray) -> list:
        """The blocks block `tb`'s function includes (`CodeGen.region_ir`), itself first:
        [(tb, phys, rows, nrows, (member the taken way leads to, member the other way leads to))].

        They are the blocks the loop has chained from it (TB_NEXT0/1), and from those, breadth
        first, up to REGION_MAX: on its physical page and no other (a write that drops one of them
        must not leave stale code of it here: compiled code checks each one's record before it
        enters it), with its mode bits, run hot (TB_EXECS at least 1/REGION_HOT_DIV of the
        threshold) and with something to compile."""
        bc, tbs = self.blocks.bc, self.blocks.tbs
        base = tb * B.TB_WIDTH
        page, hflags = int(tbs[base + B.TB_PHYS]) >> 12, int(tbs[base + B.TB_HFLAGS])
        hot = int(bc[B.BC_T1_THRESHOLD]) / REGION_HOT_DIV
        order, index = [tb], {tb: 0}
        if self._inside.get(tb) == tbs[base + B.TB_PHYS]:
            order = []  # a block another region includes gets a function of its own alone: a loop's
        for t in order:  # blocks all turn hot together, and one region of them is enough
            for w in (0, 1):
                nxt = int(tbs[t * B.TB_WIDTH + B.TB_NEXT0 + w])
                if nxt < 0 or nxt in index or len(order) >= REGION_SCAN:
                    continue
                nb = nxt * B.TB_WIDTH
                if (tbs[nb + B.TB_PHYS] >= 0 and int(tbs[nb + B.TB_PHYS]) >> 12 == page and tbs[nb + B.TB_PAGE1] < 0
                        and tbs[nb + B.TB_HFLAGS] == hflags and tbs[nb + B.TB_EXECS] >= hot
                        and tbs[nb + B.TB_FN] != B.TB_FN_NEVER):
                    index[nxt] = len(order)
                    order.append(nxt)
        # keep the blocks on a loop through this one (those that lead back to it): a path that
        # leaves the loop runs once per exit and is not worth compiling again here
        back = {tb}
        grew = True
        while grew:
            grew = False
            for t in order:
                if t not in back and any(int(tbs[t * B.TB_WIDTH + B.TB_NEXT0 + w]) in back for w in (0, 1)):
                    back.add(t)
                    grew = True
        order = [t for t in order if t in back][:REGION_MAX]
        index = {t: k for k, t in enumerate(order)}
        for t in order[1:]:
            self._inside[t] = int(tbs[t * B.TB_WIDTH + B.TB_PHYS])
        region = []
        for t in order:
            b = t * B.TB_WIDTH
            succ = tuple(index.get(int(tbs[b + B.TB_NEXT0 + w]), -1) for w in (0, 1))
            if t == tb:
                region.append((t, int(tbs[b + B.TB_PHYS]), copy, int(tbs[b + B.TB_NROWS]), succ))
                continue
            _row0, nrows, rows_copy = self._rows_of(t)
            region.append((t, int(tbs[b + B.TB_PHYS]), rows_copy, nrows, succ))
        return region

    def _rows_of(self, tb: int) -> tuple[int, int, np.ndarray]:
        """Block `tb`'s (first row, rows, a copy of its rows): the loop may retranslate into the same
        rows while a worker compiles."""
        base = tb * B.TB_WIDTH
        row0, nrows = int(self.blocks.tbs[base + B.TB_ROW]), int(self.blocks.tbs[base + B.TB_NROWS])
        return row0, nrows, self.blocks.rows[row0 * ROW_WIDTH: (row0 + nrows) * ROW_WIDTH].copy()

    def drain(self) -> None:
        """Compile what the loop queued: on the worker, or here and now (`background=False`)."""
        batch = self._take_queue()
        if not batch:
            return
        if not self.background:
            t0 = time.perf_counter_ns()
            done = self._compile(batch)
            self._install(batch, done, time.perf_counter_ns() - t0)
            return
        t0 = time.perf_counter_ns()
        funcs = self._generator().generate(self._as_blocks(batch))  # here: Python holds the GIL
        if _LOG:
            print(f"tier1: IR of {len(batch)} blocks ({sum(max(1, len(b[6])) for b in batch)} with their regions, "
                  f"{sum(len(f[2]) for f in funcs) >> 10} KiB) in {(time.perf_counter_ns() - t0) / 1e6:.1f} ms",
                  file=sys.stderr)
        with self._cv:
            self._jobs.append((batch, funcs))
            self._cv.notify()
            if self._worker is None:  # (the worker leaves after a second with nothing to do)
                self._worker = threading.Thread(target=self._work, name="pyemu-tier1", daemon=True)
                self._worker.start()
                _RUNNING.add(self)

    def install(self) -> None:
        """Store the addresses the worker has finished (main thread, between two runs of the loop)."""
        if not self._done:
            return
        with self._cv:
            done, self._done = self._done, []
        for batch, result, ns in done:
            self._install(batch, result, ns)

    def wait(self) -> None:
        """Let the worker finish everything handed to it, and install it (tests, benchmarks)."""
        with self._cv:
            self._cv.wait_for(lambda: not self._jobs and not self._busy)
        self.install()

    def _generator(self) -> CodeGen:
        if self.gen is None:
            self.gen = CodeGen()
        return self.gen

    @staticmethod
    def _as_blocks(batch: list) -> list:
        return [(tb, 0, nrows, hflags, phys, rows, region) for tb, _row0, nrows, hflags, phys, rows, region in batch]

    def _compile(self, batch: list) -> tuple[dict, object]:
        return self._generator().compile(self._as_blocks(batch))

    def stop(self) -> None:
        """Drop what waits and let the worker finish its module and leave (at exit: LLVM must not be
        compiling while the process tears it down)."""
        with self._cv:
            self._stopping = True
            self._jobs.clear()
            self._cv.notify_all()
            worker = self._worker
        if worker is not None:
            worker.join()

    def _work(self) -> None:
        while True:
            with self._cv:
                if not self._cv.wait_for(lambda: self._jobs or self._stopping, WORKER_IDLE_S) or self._stopping:
                    self._worker = None  # idle (or stopping): a later drain starts a new worker
                    _RUNNING.discard(self)
                    return
                batch, funcs = [], []
                while self._jobs and len(funcs) < MODULE_MAX:  # what waits, up to a module's worth
                    b, f = self._jobs.pop(0)
                    batch += b
                    funcs += f
                self._busy = True
                unload, self._unload = self._unload, []
            for library in unload:
                library.close()
            self._untrimmed += len(unload)
            self._built += 1
            if self._untrimmed >= TRIM_UNLOADS or self._built >= TRIM_MODULES:
                self._untrimmed = self._built = 0
                t0 = time.perf_counter_ns()
                trim_heap()  # what the unloads and the compiles since the last trim freed
                if _LOG:
                    print(f"tier1: malloc_trim in {(time.perf_counter_ns() - t0) / 1e6:.1f} ms", file=sys.stderr)
            t0 = time.perf_counter_ns()
            try:
                result = self.gen.build(funcs)
            except Exception:  # noqa: BLE001 - a generator bug must not stop the guest: interpret them
                if os.environ.get("PYEMU_DEBUG"):
                    import traceback

                    traceback.print_exc()
                result = ({}, None)
            if _LOG:
                print(f"tier1: {len(batch)} blocks in {(time.perf_counter_ns() - t0) / 1e6:.0f} ms", file=sys.stderr)
            with self._cv:
                self._done.append((batch, result, time.perf_counter_ns() - t0))
                self._busy = False
                self._cv.notify_all()

    def _install(self, batch: list, result: tuple[dict, object], ns: int) -> None:
        tbs, rows = self.blocks.tbs, self.blocks.rows
        addrs, library = result
        used = []
        for tb, row0, nrows, hflags, phys, copy, _region in batch:
            base = tb * B.TB_WIDTH
            if (tbs[base + B.TB_FN] != B.TB_FN_QUEUED or tbs[base + B.TB_PHYS] != phys
                    or tbs[base + B.TB_ROW] != row0 or tbs[base + B.TB_NROWS] != nrows
                    or tbs[base + B.TB_HFLAGS] != hflags
                    or not np.array_equal(rows[row0 * ROW_WIDTH: (row0 + nrows) * ROW_WIDTH], copy)):
                continue  # the record holds something else now
            addr = addrs.get(tb, (0, 0))[0]
            tbs[base + B.TB_FN] = addr if addr else B.TB_FN_NEVER
            if addr:
                used.append((tb, addr))
        if library is not None:
            if used:
                self.libraries.append((library, used))
            else:
                self._free(library)  # every block it compiled went stale meanwhile
        self.stats[K.COMPILED_BLOCKS] += len(used)
        self.stats[K.COMPILE_NS] += ns
        flushes = int(self.blocks.bc[B.BC_FLUSHES])
        if len(self.libraries) >= self._sweep_at or flushes != self._flushes:
            if flushes != self._flushes:
                self._inside.clear()  # (records are reused after a flush)
            self._flushes = flushes  # a flush leaves every library before it dead: free them now
            self.sweep()

    def sweep(self) -> int:
        """Unload the libraries none of whose functions a live record holds any more (their blocks
        were invalidated, flushed or retranslated): compiled code stays bounded by the block cache.
        Runs on the main thread between two runs of the loop, so no compiled code is running, and a
        function no record holds is never called (chaining goes through the records). Returns how
        many libraries were let go."""
        tbs = self.blocks.tbs
        ntbs = int(self.blocks.bc[B.BC_NTBS])
        keep = []
        for library, fns in self.libraries:
            if any(tb < ntbs and tbs[tb * B.TB_WIDTH + B.TB_FN] == addr and tbs[tb * B.TB_WIDTH + B.TB_PHYS] >= 0
                   for tb, addr in fns):
                keep.append((library, fns))
            else:
                self._free(library)
        freed = len(self.libraries) - len(keep)
        if not self.background:
            self._untrimmed += freed
            if self._untrimmed >= TRIM_UNLOADS:  # (in the background the worker trims after its unloads)
                self._untrimmed = 0
                trim_heap()
        self.libraries = keep
        self._sweep_at = max(LIBRARY_SWEEP_MIN, 2 * len(keep))
        return freed

    def _free(self, library) -> None:
        """Unload a library: here, or (background) on the worker, which holds LLVM's lock anyway."""
        if not self.background:
            library.close()
            return
        with self._cv:
            self._unload.append(library)


_RUNNING: weakref.WeakSet = weakref.WeakSet()  # Tier1s whose worker runs


@atexit.register
def _print_exit_profile() -> None:
    """$PYEMU_T1_PROFILE: the most taken ways out of compiled code (registered first: runs last)."""
    if not _PROFILE:
        return
    names = {v: k for k, v in vars(H).items() if k.startswith("H_") and isinstance(v, int)}
    total = int(_EXIT_COUNTS.sum())
    print(f"tier1 profile: {total} returns to the loop from {len(_EXIT_SITES)} exit sites", file=sys.stderr)
    for site in np.argsort(-_EXIT_COUNTS)[:_PROFILE]:
        if _EXIT_COUNTS[site] == 0:
            break
        tb, addr, row, h, kind = _EXIT_SITES[site]
        print(f"  {int(_EXIT_COUNTS[site]):12d}  tb {tb:5d} phys {addr:#010x} row {row:2d} "
              f"{names.get(h, h)!s:14s} {kind}", file=sys.stderr)


@atexit.register
def _stop_workers() -> None:
    """At exit, before Python tears down: no worker may be inside LLVM then (an LLVM assertion
    aborted a process that exited while a module compiled)."""
    for tier1 in list(_RUNNING):
        tier1.stop()
