"""SingleStepTests 80286 (real mode) runner: drives `emu.cpu.core.CpuCore` through the MOO tests.

Usage (the engine developers' tool):

    python -m tests.cpu.sst286                     # every form, every test
    python -m tests.cpu.sst286 --form F6.4 --form 00 --verbose
    python -m tests.cpu.sst286 --limit 40 --max-show 3

Data: ``$SST_DIR`` or the repository's copy, ``tests/data/singlestep-80286`` (README.md, MOO-FORMAT.md,
metadata.json and revocation_list.txt live there; tests/data/README.md says where it came from).

How a test is run (README "Using the Tests")
--------------------------------------------
Each test is the instruction under test followed by HLT (F4). We load INIT (registers; FLAGS with
bits 12-15 cleared, see below; RAM bytes), call ``core.step()`` once and compare. The final IP in
the data is the value after the HLT that ended the test (README: "IP is 1 off"), also when the
instruction jumped or raised an exception (a HLT was injected at the first fetch after the jump),
so the expected IP is compared with our IP + 1 -- except in form F4, where the HLT under test ends
the test itself. Registers absent from FINA must equal their INIT value; RAM bytes listed in FINA
must hold their FINA value and every other INIT byte must be unchanged.

Masks
-----
* FLAGS bits 12-15 are never compared. INIT carries random values there (the state given to
  LOADALL); a real-mode 286 cannot set IOPL/NT and always reads bits 12-15 as 0, whereas a P6 in
  real mode keeps whatever POPF/IRET loads into IOPL and NT. The README and its FAQ say to mask them.
* Undefined flags: metadata.json's ``flags-mask`` for the form (the ``reg`` sub-entry for group
  opcodes, e.g. ``F6.4``), plus the SDM-undefined flags metadata does not list (`_sdm_mask`): OF
  of C0 rotates/shifts (defined only for a count of 1) and CF of C0/C1 SHL/SHR/SAL for counts >=
  the operand width.
* When the test raised an exception or interrupt (EXCP chunk), the FLAGS word it pushed is compared
  under the same mask. Its address is computed from the final SS:SP (SS:SP+4); the EXCP chunk's
  address is the even bus address of that word, so it is off by one for an odd SP.

Skip rules (the 286 differs from a P6 by design; each skipped test is counted under its rule)
-------------------------------------------------------------------------------------------------
* ``revoked``: the test's hash is in revocation_list.txt.
* ``too-long``: the instruction is longer than 10 bytes (redundant prefixes). The 286 faults at
  10 bytes (the data shows #GP, vector 13; the README says #UD); a P6 allows 15 (SDM Vol 2, 2.3.11).
* ``lock-ud``: a LOCK prefix on an instruction a P6 cannot lock: the 286 executes it (asserting
  LOCK), a P6 raises #UD (SDM Vol 2, LOCK: only ADD ADC AND BTx CMPXCHG DEC INC NEG NOT OR SBB SUB
  XOR XADD XCHG with a memory destination).
* ``sreg-fs-gs``: 8C/8E with reg field 4 or 5. The 286 has no FS/GS and raises #UD; a P6 moves FS/GS.
* ``fpu-escape``: D8 (ESC). The test rig has no 80287, so the 286 treats ESC as a no-op that reads
  one word of its memory operand (only #GP at offset FFFF); a P6 executes it on its x87 (m32/m64
  operands, FPU exceptions, #NM with CR0.EM).

Checked and *not* skipped, because a P6 behaves the same in real mode: PUSH SP (both push the
value before the decrement; README "54"), shift/rotate counts (both mask to 5 bits), D6 SALC
(undocumented but present on P6), 82 (alias of 80), F6/F7 /1 (alias of TEST), C0/C1/D0-D3 /6
(alias of SHL), 60-62 PUSHA/POPA/BOUND, IDIV quotients 80h/8000h (no #DE on either), the #DE and
other fault return address (the faulting instruction, prefixes included, on both), a word access at
offset FFFF (#GP, or #SS for the stack, on both: SDM "Real-Address Mode Exceptions"), #UD for the
invalid encodings (8D/C4/C5/FF.3/FF.5 with a register operand, 8E reg 1, 8F/C6/C7 reg != 0,
62 mod 3), and the flags after an exception (masked as above).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path

try:  # tests.cpu.moo when imported as a package, moo when run from this directory
    from tests.cpu.moo import parse_file
except ImportError:  # pragma: no cover
    from moo import parse_file  # type: ignore[no-redef]

DEFAULT_DIR = Path(__file__).resolve().parents[1] / "data" / "singlestep-80286"  # tests/data/README.md

# Engine register indices (emu.cpu.state, SDM encoding order). Kept here so the harness does not
# need the engine to load data; checked against emu.cpu.state when a core is driven.
GPR_ORDER = (("ax", 0), ("cx", 1), ("dx", 2), ("bx", 3), ("sp", 4), ("bp", 5), ("si", 6), ("di", 7))
SEG_ORDER = (("es", 0), ("cs", 1), ("ss", 2), ("ds", 3))
EIP_SLOT = 8

FLAG_NAMES = ((0, "CF"), (2, "PF"), (4, "AF"), (6, "ZF"), (7, "SF"), (8, "TF"), (9, "IF"),
              (10, "DF"), (11, "OF"), (1, "b1"), (3, "b3"), (5, "b5"))
CF, AF, OF = 0x001, 0x010, 0x800
FLAGS_COMPARED = 0x0FFF  # bits 12-15 (IOPL, NT, bit 15) ignored: see the module docstring
INIT_FLAGS_MASK = 0x0FFF  # README: mask the top four flag bits of INIT in real mode

PREFIXES = frozenset((0x26, 0x2E, 0x36, 0x3E, 0xF0, 0xF2, 0xF3))
MAX_286_LEN = 10

# P6-lockable encodings (SDM Vol 2, LOCK), as (opcode, allowed reg fields or None = any),
# valid only with a memory destination (mod != 3).
_LOCKABLE = {op: None for op in (0x00, 0x01, 0x08, 0x09, 0x10, 0x11, 0x18, 0x19, 0x20, 0x21, 0x28,
                                 0x29, 0x30, 0x31, 0x86, 0x87)}
_LOCKABLE.update({0x80: range(7), 0x81: range(7), 0x82: range(7), 0x83: range(7),
                  0xF6: (2, 3), 0xF7: (2, 3), 0xFE: (0, 1), 0xFF: (0, 1)})

SKIP_RULES = {
    "revoked": "hash listed in revocation_list.txt",
    "too-long": "instruction > 10 bytes: 286 faults, P6 allows 15",
    "lock-ud": "LOCK on an instruction a P6 cannot lock: 286 ignores it, P6 raises #UD",
    "sreg-fs-gs": "8C/8E reg 4/5: 286 #UD, P6 moves FS/GS",
    "fpu-escape": "ESC without an 80287 is a no-op on the test rig; a P6 has an x87",
    "286-string-gp": "string op past FFFFh: 286 steps SI/DI before its #GP, a P6 faults with them unchanged",
    "286-ss-limit-gp": "SS access past its limit: 286 raises #GP, a P6 #SS",
    "prefetched-code": "the instruction wrote over its own bytes or the HLT: 286 runs its prefetch queue",
}


def data_dir() -> Path:
    return Path(os.environ.get("SST_DIR") or DEFAULT_DIR)


def list_forms(root: Path | None = None) -> list[str]:
    """Form names ('00', 'F6.4', ...) of the MOO files present, in file-name order."""
    root = root or data_dir()
    return sorted(p.name[: -len(".MOO.gz")] for p in root.glob("*.MOO.gz"))


@lru_cache(maxsize=4)
def load_metadata(root: Path) -> dict:
    return json.loads((root / "metadata.json").read_text())["opcodes"]


@lru_cache(maxsize=4)
def load_revoked(root: Path) -> frozenset[str]:
    path = root / "revocation_list.txt"
    if not path.exists():
        return frozenset()
    lines = (ln.strip().lower() for ln in path.read_text().splitlines())
    return frozenset(ln for ln in lines if ln and not ln.startswith("#"))


def form_info(meta: dict, form: str) -> dict:
    """metadata.json entry for a form: 'F6.4' -> opcodes['F6']['reg']['4']."""
    op, _, reg = form.partition(".")
    entry = meta.get(op, {})
    if reg and "reg" in entry:
        entry = entry["reg"].get(reg, {})
    return entry


def _split(insn: bytes) -> tuple[bool, int, bytes]:
    """(has LOCK, prefix count, rest) of an instruction's bytes."""
    i = 0
    lock = False
    while i < len(insn) and insn[i] in PREFIXES:
        lock |= insn[i] == 0xF0
        i += 1
    return lock, i, insn[i:]


def skip_reason(form: str, insn: bytes) -> str | None:
    """The named rule under which a test is skipped, or None. `insn` excludes the final HLT."""
    if len(insn) > MAX_286_LEN:
        return "too-long"
    lock, _, rest = _split(insn)
    if not rest:
        return None
    op = rest[0]
    modrm = rest[1] if len(rest) > 1 else None
    if lock:
        allowed = _LOCKABLE.get(op, ())
        ok = (op in _LOCKABLE and modrm is not None and modrm >> 6 != 3
              and (allowed is None or (modrm >> 3) & 7 in allowed))
        if not ok:
            return "lock-ud"
    if op in (0x8C, 0x8E) and modrm is not None and (modrm >> 3) & 7 in (4, 5):
        return "sreg-fs-gs"
    if op == 0xD8:
        return "fpu-escape"
    return None


STRING_FORMS = {"6C", "6D", "6E", "6F", "A4", "A5", "A6", "A7", "AA", "AB", "AC", "AD", "AE", "AF"}
GP_VECTOR = 13


STACK_FORMS = {"06", "07", "0E", "16", "17", "1E", "1F", "60", "61", "68", "6A", "8F", "9C", "9D", "C2", "C3",
               "C8", "C9", "CA", "CB", "CF", "E8", "9A", "FF.2", "FF.3", "FF.6"}
STACK_FORMS |= {f"{x:02X}" for x in range(0x50, 0x60)}  # PUSH/POP r16
SS_OVERRIDE = 0x36


def _ss_relative(form: str, insn: bytes) -> bool:
    """Does the instruction touch memory through SS (a stack access, a BP-based ModRM address,
    or an SS override)?"""
    if form in STACK_FORMS:
        return True
    _, n, rest = _split(insn)
    prefixes = insn[:n]
    if SS_OVERRIDE in prefixes:
        return True
    if any(p in prefixes for p in (0x26, 0x2E, 0x3E)) or len(rest) < 2 or rest[0] == 0x8D:
        return False
    mod, rm = rest[1] >> 6, rest[1] & 7
    return mod != 3 and (rm in (2, 3) or (rm == 6 and mod != 0))


def skip_by_outcome(form: str, insn: bytes, t) -> str | None:
    """Rules that need the test's outcome, where the 286 differs from a P6 by design:

    * "286-string-gp": a string instruction whose word access runs past offset FFFFh faults
      (#GP) on both, but the 286 has already stepped SI/DI; a P6 reports the fault with the
      registers unchanged, so the instruction can be restarted (SDM Vol 3, 6.5 "faults").
    * "286-ss-limit-gp": an access through SS past its limit raises #GP on the 286; a P6 raises
      #SS (SDM Vol 2, the "Real-Address Mode Exceptions" of each instruction).
    * "prefetched-code": the instruction wrote over its own bytes or the HLT after it; the 286
      executes what its prefetch queue already held, a P6 detects the store (SDM Vol 3, 11.6,
      self-modifying code) and runs the new bytes.
    """
    if form.split(".")[0] in STRING_FORMS and t.exception is not None and t.exception[0] == GP_VECTOR:
        return "286-string-gp"
    if t.exception is not None and t.exception[0] == GP_VECTOR and _ss_relative(form, insn):
        return "286-ss-limit-gp"
    ir = t.init.regs
    start = (ir["cs"] << 4) + ir["ip"]
    code = {(start + i) & 0xFFFFF for i in range(len(insn) + 1)}
    init_ram = dict(t.init.ram)
    if any(a in code and init_ram.get(a) != v for a, v in t.final.ram):
        return "prefetched-code"
    return None


def _sdm_mask(form: str, insn: bytes) -> int:
    """Flags the SDM leaves undefined that metadata.json does not mask (returns bits to ignore)."""
    op, _, reg = form.partition(".")
    if op not in ("C0", "C1") or not reg:
        return 0
    _, _, rest = _split(insn)
    count = rest[-1] & 0x1F if len(rest) >= 3 else 0  # C0/C1 ib: the count is the last byte
    if count == 0:
        return 0  # flags unaffected
    bits = 0
    if op == "C0" and count != 1:
        bits |= OF
    width = 8 if op == "C0" else 16
    if reg in ("4", "5", "6") and count >= width:
        bits |= CF  # SHL/SHR (and the SAL alias /6): CF undefined for counts >= the width
    return bits


def _runs(mem: dict[int, int]) -> list[tuple[int, bytes]]:
    """Group address -> byte into contiguous (start, bytes) runs."""
    out: list[tuple[int, bytes]] = []
    start = prev = None
    buf = bytearray()
    for a in sorted(mem):
        if prev is not None and a == prev + 1:
            buf.append(mem[a])
        else:
            if start is not None:
                out.append((start, bytes(buf)))
            start, buf = a, bytearray((mem[a],))
        prev = a
    if start is not None:
        out.append((start, bytes(buf)))
    return out


@dataclass(slots=True)
class Case:
    """One test, pre-digested for a lean run loop."""

    form: str
    idx: int
    name: str
    insn: bytes
    hash: str
    skip: str | None
    gpr: tuple[int, ...] = ()  # ax cx dx bx sp bp si di (engine order)
    segs: tuple[int, ...] = ()  # es cs ss ds
    ip: int = 0
    flags: int = 0
    init_runs: list[tuple[int, bytes]] = field(default_factory=list)
    check_runs: list[tuple[int, bytes]] = field(default_factory=list)  # expected final bytes
    masked_bytes: list[tuple[int, int, int]] = field(default_factory=list)  # (addr, want, mask)
    clear_runs: list[tuple[int, bytes]] = field(default_factory=list)  # zeroes, after the test
    exp_gpr: tuple[int, ...] = ()
    exp_segs: tuple[int, ...] = ()
    exp_ip: int = 0  # compared with our IP + ip_adj
    ip_adj: int = 1
    exp_flags: int = 0
    flags_mask: int = FLAGS_COMPARED
    exception: int | None = None


def make_case(form: str, t, meta: dict, revoked: frozenset[str]) -> Case:
    """Build a Case from a moo.MooTest."""
    insn = t.bytes[:-1] if t.bytes[-1:] == b"\xf4" else t.bytes  # BYTS ends with the HLT
    reason = "revoked" if t.hash.lower() in revoked else skip_reason(form, insn)
    if reason is None:
        reason = skip_by_outcome(form, insn, t)
    c = Case(form, t.idx, t.name, t.bytes, t.hash, reason)
    if reason:
        return c
    ir, fr = t.init.regs, t.final.regs
    er = {**ir, **fr}
    c.gpr = tuple(ir[n] for n, _ in GPR_ORDER)
    c.segs = tuple(ir[n] for n, _ in SEG_ORDER)
    c.ip = ir["ip"]
    c.flags = ir["flags"] & INIT_FLAGS_MASK
    c.exp_gpr = tuple(er[n] for n, _ in GPR_ORDER)
    c.exp_segs = tuple(er[n] for n, _ in SEG_ORDER)
    c.exp_ip = er["ip"]
    # The HLT that ends a test adds 1 to IP (after a jump or an exception it is the HLT at the
    # first fetch of the target, which `step_instruction` does not run: the exception itself is the
    # step); in form F4 the HLT under test is the end.
    c.ip_adj = 0 if form == "F4" else 1
    c.exp_flags = er["flags"]
    mask = form_info(meta, form).get("flags-mask", 0xFFFF) & ~_sdm_mask(form, insn)
    c.flags_mask = mask & FLAGS_COMPARED

    init_mem = dict(t.init.ram)
    exp_mem = {**init_mem, **dict(t.final.ram)}
    c.init_runs = _runs(init_mem)
    if t.exception is not None:
        c.exception = t.exception[0]
        ss_base = er["ss"] << 4
        lo = ss_base + ((er["sp"] + 4) & 0xFFFF)
        hi = ss_base + ((er["sp"] + 5) & 0xFFFF)
        for addr, m in ((lo, c.flags_mask & 0xFF), (hi, c.flags_mask >> 8)):
            if addr in exp_mem:
                c.masked_bytes.append((addr, exp_mem.pop(addr), m))
    c.check_runs = _runs(exp_mem)
    c.clear_runs = [(a, bytes(len(b))) for a, b in _runs({**init_mem, **dict(t.final.ram)})]
    return c


@cache
def load_form(form: str, root: Path | None = None) -> tuple[Case, ...]:
    """Parse one MOO file once and digest its tests (cached per process)."""
    root = root or data_dir()
    meta = load_metadata(root)
    revoked = load_revoked(root)
    mf = parse_file(root / f"{form}.MOO.gz")
    return tuple(make_case(form, t, meta, revoked) for t in mf.tests)


def _fmt_flags(bits: int) -> str:
    return " ".join(n for b, n in FLAG_NAMES if bits >> b & 1) or "-"


def step_instruction(core) -> None:
    """Run one whole instruction, answering the exits a bare CPU takes on the way: IN reads
    all-ones (the tests' bus has no devices), OUT goes nowhere, and a REP string instruction that
    paused between slices (or between I/O elements) is resumed until it retires or faults."""
    if not hasattr(core, "stats"):  # a stand-in core (the harness's own tests) has no exits
        core.step()
        return
    from emu import stats as K
    from emu.cpu import state as S

    st = core.st
    stats = core.stats
    counters = (K.INSNS, K.EXCEPTIONS, K.INTERRUPTS)
    before = tuple(int(stats[k]) for k in counters)
    for _ in range(1 << 17):
        reason = core.step()
        if tuple(int(stats[k]) for k in counters) != before:
            return
        if reason == S.EXIT_IO_IN:
            st[S.IO_VALUE] = (1 << (8 * int(st[S.EXIT_ARG1]))) - 1
            st[S.IO_PENDING] = 1
        elif reason not in (S.EXIT_IO_OUT, S.EXIT_BUDGET):
            return


def run_case(core, c: Case) -> list[str]:
    """Run one (non-skipped) case on `core`; return the mismatches (empty: passed).

    Memory the test touched is zeroed again afterwards, so one core serves every test.
    """
    st = core.st
    set16 = core.set_reg16
    for (_, r), v in zip(GPR_ORDER, c.gpr, strict=True):
        set16(r, v)
    setseg = core.set_seg_real
    for (_, s), v in zip(SEG_ORDER, c.segs, strict=True):
        setseg(s, v)
    st[EIP_SLOT] = c.ip
    core.set_flags(c.flags)
    wp = core.write_phys
    for a, b in c.init_runs:
        wp(a, b)
    diffs: list[str] = []
    try:
        step_instruction(core)
    except Exception as e:  # an engine crash is a failure of this test, not of the run
        diffs.append(f"step() raised {type(e).__name__}: {e}")
    else:
        get16 = core.get_reg16
        got = tuple(get16(r) & 0xFFFF for _, r in GPR_ORDER)
        if got != c.exp_gpr:
            diffs += [f"{n}: got {g:04x} want {w:04x}"
                      for (n, _), g, w in zip(GPR_ORDER, got, c.exp_gpr, strict=True) if g != w]
        getseg = core.get_seg_sel
        got = tuple(getseg(s) & 0xFFFF for _, s in SEG_ORDER)
        if got != c.exp_segs:
            diffs += [f"{n}: got {g:04x} want {w:04x}"
                      for (n, _), g, w in zip(SEG_ORDER, got, c.exp_segs, strict=True) if g != w]
        ip = (int(st[EIP_SLOT]) + c.ip_adj) & 0xFFFF
        if ip != c.exp_ip:
            diffs.append(f"ip(+{c.ip_adj}): got {ip:04x} want {c.exp_ip:04x}")
        fl = core.get_flags()
        bad = (fl ^ c.exp_flags) & c.flags_mask
        if bad:
            diffs.append(f"flags: got {fl & 0xFFFF:04x} want {c.exp_flags:04x} "
                         f"(differ: {_fmt_flags(bad)}; compared mask {c.flags_mask:03x})")
        rp = core.read_phys
        for a, want in c.check_runs:
            have = bytes(rp(a, len(want)))
            if have != want:
                diffs += [f"ram[{a + i:06x}]: got {h:02x} want {w:02x}"
                          for i, (h, w) in enumerate(zip(have, want, strict=False)) if h != w]
        for a, want, m in c.masked_bytes:
            h = rp(a, 1)[0]
            if (h ^ want) & m:
                diffs.append(f"ram[{a:06x}] (pushed flags, mask {m:02x}): got {h:02x} want {want:02x}")
    for a, z in c.clear_runs:
        wp(a, z)
    return diffs


@dataclass
class FormResult:
    form: str
    passed: int = 0
    failed: int = 0
    skipped: Counter = field(default_factory=Counter)
    failures: list[tuple[Case, list[str]]] = field(default_factory=list)

    @property
    def n_skipped(self) -> int:
        return sum(self.skipped.values())


@dataclass
class Totals:
    passed: int = 0
    failed: int = 0
    skipped: Counter = field(default_factory=Counter)
    failed_forms: Counter = field(default_factory=Counter)
    first_failure: dict = field(default_factory=dict)  # form -> one-line description

    def add(self, r: FormResult) -> None:
        self.passed += r.passed
        self.failed += r.failed
        self.skipped.update(r.skipped)
        if r.failed:
            self.failed_forms[r.form] += r.failed
            c, d = r.failures[0]
            self.first_failure.setdefault(r.form, f"#{c.idx} {c.name} [{c.insn.hex()}]: {'; '.join(d[:3])}")

    @property
    def rate(self) -> float:
        n = self.passed + self.failed
        return self.passed / n if n else 1.0

    def line(self) -> str:
        return f"SST: {self.passed} passed, {self.failed} failed, {sum(self.skipped.values())} skipped"

    def skip_line(self) -> str:
        return "SST skips: " + (", ".join(f"{k}={v}" for k, v in sorted(self.skipped.items())) or "none")


def prepare_core(core) -> None:
    """Clear per-instruction latches a previous test may leave (HLT, interrupt shadow)."""
    st = core.st
    for slot in (77, 81):  # state.HALTED, state.INHIBIT_IRQ
        st[slot] = 0


def check_engine_layout() -> None:
    """The slot numbers used here must match emu.cpu.state."""
    from emu.cpu import state as S

    assert [r for _, r in GPR_ORDER] == [S.EAX, S.ECX, S.EDX, S.EBX, S.ESP, S.EBP, S.ESI, S.EDI]
    assert [s for _, s in SEG_ORDER] == [S.ES, S.CS, S.SS, S.DS]
    assert EIP_SLOT == S.EIP and S.HALTED == 77 and S.INHIBIT_IRQ == 81


def run_form(core, form: str, limit: int | None = None, root: Path | None = None,
             keep_failures: int = 5) -> FormResult:
    """Run the first `limit` tests (all if None) of a form."""
    cases = load_form(form, root or data_dir())
    if limit is not None:
        cases = cases[:limit]
    res = FormResult(form)
    for c in cases:
        if c.skip:
            res.skipped[c.skip] += 1
            continue
        prepare_core(core)
        d = run_case(core, c)
        if d:
            res.failed += 1
            if len(res.failures) < keep_failures:
                res.failures.append((c, d))
        else:
            res.passed += 1
    return res


def flat_ram(core) -> None:
    """Make C0000-FFFFF plain RAM: the tests assume 16 MiB of writable RAM (README), while CpuCore
    maps the PC's ROM area there (writes ignored). A test-rig setting, like the 286 board's."""
    phys = getattr(core, "phys", None)
    if phys is None:
        return
    from emu.mmu import physmap as P

    for ppn in range(P.ROM_AREA >> P.PAGE_SHIFT, P.ROM_AREA_END >> P.PAGE_SHIFT):
        phys.pmap[ppn] = (ppn << P.PAGE_SHIFT) | P.PM_RAM
    core.flush_tlb()


def new_core():
    """A CpuCore set up for the suite: 16 MiB of flat RAM, real mode, A20 on."""
    from emu.cpu.core import CpuCore

    check_engine_layout()
    core = CpuCore(ram_bytes=16 << 20)
    flat_ram(core)
    return core


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.cpu.sst286", description=__doc__.split("\n")[0])
    ap.add_argument("--form", action="append", help="form to run (e.g. F6.4, 00); repeatable")
    ap.add_argument("--limit", type=int, default=None, help="first N tests of each form")
    ap.add_argument("--verbose", "-v", action="store_true", help="print every form, and failure details")
    ap.add_argument("--max-show", type=int, default=3, help="failures shown per form with --verbose")
    ap.add_argument("--dir", type=Path, default=None, help="data directory (default $SST_DIR or tests/data)")
    a = ap.parse_args(argv)
    root = a.dir or data_dir()
    forms = a.form or list_forms(root)
    missing = [f for f in forms if not (root / f"{f}.MOO.gz").exists()]
    if missing:
        print(f"no such form(s) in {root}: {' '.join(missing)}", file=sys.stderr)
        return 2
    try:
        core = new_core()
    except ImportError as e:
        print(f"engine not available: {e}", file=sys.stderr)
        return 2
    tot = Totals()
    for form in forms:
        r = run_form(core, form, a.limit, root, keep_failures=max(a.max_show, 1))
        tot.add(r)
        if a.verbose or r.failed:
            skip = f", skipped {dict(r.skipped)}" if r.skipped else ""
            print(f"{form:6s} {r.passed} passed, {r.failed} failed{skip}")
        if a.verbose:
            for c, d in r.failures[: a.max_show]:
                print(f"  #{c.idx} {c.name}  [{c.insn.hex()}]  hash {c.hash[:12]}"
                      + (f"  (exception {c.exception})" if c.exception is not None else ""))
                for line in d[:12]:
                    print(f"      {line}")
        sys.stdout.flush()
    print(tot.line())
    print(tot.skip_line())
    if tot.failed_forms:
        worst = ", ".join(f"{f}:{n}" for f, n in tot.failed_forms.most_common(20))
        print(f"failing forms: {worst}")
    print(f"pass rate {100 * tot.rate:.2f}% of {tot.passed + tot.failed} run")
    return 0 if tot.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
