"""`pyemu trace-diff A B`: the first instruction where two `-d exec,cpu -one-insn-per-tb` logs disagree (issue 12).

Both logs may come from pyemu or from `qemu-system-i386 -d exec,cpu,nochain -singlestep` (7.2; later
versions call the option -one-insn-per-tb). A record is one `Trace` line and the register dump after it:
the state *before* that instruction (a record identical to the one before it is dropped). The two
record streams are aligned at the first instruction whose
linear PC is `--start` (or, without it, the first PC of B that A also has, so that QEMU's SeaBIOS
prologue and pyemu's BIOS drop out), then compared record by record: the PC sequence, the GPRs, EIP,
EFLAGS (less `--ignore-flags`) and the segment selectors. The first difference is printed with both
states side by side and the instruction before it (the one that made the difference) disassembled.
For a real boot, `--exclude` leaves both BIOSes out and `Resync` (--bios-resync, --adopt-after,
--resync-window; off by default, every use reported) gets past what two different BIOSes do differently.
Exit status 0: identical over the compared range; 1: they diverge; 2: a log could not be read.
"""

from __future__ import annotations

import itertools
import re
import sys
from dataclasses import dataclass, field

GPRS = ("EAX", "EBX", "ECX", "EDX", "ESI", "EDI", "EBP", "ESP")
SEGS = ("ES", "CS", "SS", "DS", "FS", "GS")
TRACE_RE = re.compile(r"^Trace \d+: 0x[0-9a-f]+ \[([0-9a-f]+)/([0-9a-f]+)/")
REG_RE = re.compile(r"\b([A-Z][A-Z0-9]{1,2})=([0-9a-f]{8})\b")
_REG_LINES = ("EAX", "ESI", "EIP")
_SEG_LINES = ("ES ", "CS ", "SS ", "DS ", "FS ", "GS ")
SEG_RE = re.compile(r"^(ES|CS|SS|DS|FS|GS) =([0-9a-f]{4}) ([0-9a-f]{8})")


@dataclass(slots=True)
class Record:
    line_no: int
    pc: int | None = None
    regs: dict[str, int] = field(default_factory=dict)
    text: list[str] = field(default_factory=list)
    code32: bool = False
    after_gap: bool = False  # records were dropped (--range/--exclude) right before this one

    def linear_pc(self) -> int | None:
        if self.pc is not None:
            return self.pc
        if "EIP" in self.regs and "CS_BASE" in self.regs:
            return (self.regs["CS_BASE"] + self.regs["EIP"]) & 0xFFFFFFFF
        return None


def parse(lines, keep_text: bool = True) -> list[Record]:
    """Records from a log: each starts at a `Trace` line (or, for a `-d cpu`-only log, at an EAX= line).
    Without keep_text the dump lines are not kept (a million records); `fill_text` reads them back."""
    recs: list[Record] = []
    cur: Record | None = None
    for no, line in enumerate(lines, 1):
        head = line[:3]
        if head == "Tra":
            if (m := TRACE_RE.match(line)) is not None:
                cur = Record(no, pc=int(m.group(2), 16))
                recs.append(cur)
            continue
        if head in _REG_LINES:
            line = line.rstrip("\n")
            if head == "EAX" and (cur is None or "EAX" in cur.regs):
                cur = Record(no)
                recs.append(cur)
            if line[12:13] == " " and line[16:17] == "=":  # the fixed layout: no regex for a million records
                regs = cur.regs
                for at in range(0, len(line) - 11, 13):
                    if line[at + 3] != "=":
                        break
                    regs[line[at:at + 3]] = int(line[at + 4:at + 12], 16)
            else:
                cur.regs.update((k, int(v, 16)) for k, v in REG_RE.findall(line))
            if keep_text:
                cur.text.append(line)
        elif cur is None:
            continue
        elif head in _SEG_LINES:
            line = line.rstrip("\n")
            seg = line[:2]
            cur.regs[seg] = int(line[4:8], 16)
            if seg == "CS":
                cur.regs["CS_BASE"] = int(line[9:17], 16)
                cur.code32 = " CS32 " in line + " "
            if keep_text:
                cur.text.append(line)
        elif keep_text and head in ("CR0", "GDT", "IDT"):
            cur.text.append(line.rstrip("\n"))
    return collapse(recs)


def collapse(recs: list[Record]) -> list[Record]:
    """Drops a record identical (PC and registers) to the one before it: QEMU logs a block again when it
    left it before its instruction ran (an exit request at the block's start), and so would a `jmp $`."""
    out: list[Record] = []
    for r in recs:
        if out and out[-1].linear_pc() == r.linear_pc() and out[-1].regs == r.regs:
            continue
        out.append(r)
    return out


def select(recs: list[Record], ranges=(), excludes=()) -> list[Record]:
    """The records whose linear PC is in one of `ranges` (all, without any) and in none of `excludes`
    (LO <= PC < HI); a kept record that follows dropped ones is marked `after_gap`."""
    out: list[Record] = []
    gap = False
    for r in recs:
        pc = r.linear_pc()
        if pc is None or (ranges and not any(lo <= pc < hi for lo, hi in ranges)) \
                or any(lo <= pc < hi for lo, hi in excludes):
            gap = True
            continue
        r.after_gap, gap = gap, False
        out.append(r)
    return collapse(out)


def _align(a: list[Record], b: list[Record], start: int | None) -> tuple[int, int] | None:
    if start is not None:
        ia = next((i for i, r in enumerate(a) if r.linear_pc() == start), None)
        ib = next((i for i, r in enumerate(b) if r.linear_pc() == start), None)
        return None if ia is None or ib is None else (ia, ib)
    first_a: dict[int, int] = {}
    for i, r in enumerate(a):
        first_a.setdefault(r.linear_pc(), i)
    for ib, r in enumerate(b):
        if r.linear_pc() in first_a:
            return first_a[r.linear_pc()], ib
    return None


def _allowed(va: int, vb: int, allow: tuple[int, int] | None) -> bool:
    """An adopted difference still holds: only the bits that differed then differ, or B - A is as it was."""
    return allow is not None and (not (va ^ vb) & ~allow[0] or (vb - va) & 0xFFFFFFFF == allow[1])


def differences(ra: Record, rb: Record, ignore_flags: int, allowed: dict | None = None) -> list[str]:
    """The fields that differ; `allowed` maps a field to an adopted (xor mask, B - A) difference."""
    allowed = allowed or {}
    out = []
    if ra.linear_pc() != rb.linear_pc():
        out.append("PC")
    for k in (*GPRS, "EIP", *SEGS):
        if k in ra.regs and k in rb.regs and ra.regs[k] != rb.regs[k] \
                and not _allowed(ra.regs[k], rb.regs[k], allowed.get(k)):
            out.append(k)
    if "EFL" in ra.regs and "EFL" in rb.regs and (ra.regs["EFL"] ^ rb.regs["EFL"]) & ~ignore_flags \
            and not _allowed(ra.regs["EFL"] & ~ignore_flags, rb.regs["EFL"] & ~ignore_flags, allowed.get("EFL")):
        out.append("EFL")
    return out


class Resync:
    """The documented ways past an allowed difference (both off by default, every use counted and reported).

    bios: a register difference at the first record after dropped (excluded BIOS) code, or after an
    instruction at one of `after` (e.g. one that loads a BIOS pointer from the vector table), or one where
    both values are real-mode far pointers into `pointers_into` (a vector read), is taken as what the
    two BIOSes set up and adopted: while only those bits differ, or B - A stays the same (a
    pointer stepped through), it is not counted; once both agree it is compared again, but the same B - A
    is still taken (a saved value popped back). Never the PC/EIP.
    window: at a PC difference, up to `window` records of one log are skipped when that brings both logs
    to the same PC and registers again (an interrupt the guest's own handler took at another instruction).
    """

    def __init__(self, bios: bool = False, window: int = 0, after=(), pointers_into=(), out=sys.stdout,
                 quiet_after: int = 20):
        self.bios, self.window, self.out, self.quiet_after = bios, window, out, quiet_after
        self.after = set(after)
        self.pointers_into = list(pointers_into)
        self.allowed: dict[str, tuple[int, int]] = {}
        self.adopted = self.skips = self.skipped_a = self.skipped_b = 0

    def _note(self, text: str, count: int) -> None:
        if count <= self.quiet_after:
            print(f"  resync: {text}", file=self.out)

    def settle(self, ra: Record, rb: Record) -> None:
        """A field both logs agree on again is compared again, but for its old B - A (a value restored)."""
        for k, (mask, delta) in list(self.allowed.items()):
            if mask and ra.regs.get(k) == rb.regs.get(k):
                if k == "EFL":
                    del self.allowed[k]
                else:
                    self.allowed[k] = (0, delta)

    def adopt(self, ra: Record, rb: Record, prev_pc: int | None, diff: list[str], k: int) -> bool:
        if not self.bios or "PC" in diff or "EIP" in diff:
            return False
        if not (ra.after_gap or rb.after_gap or prev_pc in self.after or self._bios_pointers(ra, rb, diff)):
            return False
        for d in diff:
            self.allowed[d] = (ra.regs[d] ^ rb.regs[d], (rb.regs[d] - ra.regs[d]) & 0xFFFFFFFF)
        self.adopted += 1
        why = ("after BIOS code" if ra.after_gap or rb.after_gap else f"after {prev_pc:#x}" if prev_pc in self.after
               else "BIOS far pointers")
        self._note(f"instruction {k} at {ra.linear_pc():#010x}, {why}: "
                   + ", ".join(f"{d} {ra.regs[d]:08x}/{rb.regs[d]:08x}" for d in diff) + " adopted", self.adopted)
        return True

    def _bios_pointers(self, ra: Record, rb: Record, diff: list[str]) -> bool:
        """Every difference is a GPR holding, in both logs, a real-mode far pointer into the BIOS (a vector)."""
        def into(v: int) -> bool:
            lin = (v >> 16 << 4) + (v & 0xFFFF)
            return v >> 16 != 0 and any(lo <= lin < hi for lo, hi in self.pointers_into)

        return bool(self.pointers_into) and all(d in GPRS and into(ra.regs[d]) and into(rb.regs[d]) for d in diff)

    def skip(self, a: list[Record], b: list[Record], ia: int, ib: int, ignore_flags: int, k: int):
        """(new ia, new ib) past an interrupt stretch in one log, or None."""
        if not self.window:
            return None

        def find(recs, i, target):
            for j in range(i + 1, min(len(recs), i + 1 + self.window)):
                if recs[j].linear_pc() == target.linear_pc() and not differences(recs[j], target, ignore_flags,
                                                                               self.allowed):
                    return j
            return None

        ja, jb = find(a, ia, b[ib]), find(b, ib, a[ia])
        if ja is None and jb is None:
            return None
        self.skips += 1
        if jb is None or (ja is not None and ja - ia <= jb - ib):
            self.skipped_a += ja - ia
            self._note(f"instruction {k}: {ja - ia} records of A from {a[ia].linear_pc():#010x} skipped", self.skips)
            return ja, ib
        self.skipped_b += jb - ib
        self._note(f"instruction {k}: {jb - ib} records of B from {b[ib].linear_pc():#010x} skipped", self.skips)
        return ia, jb

    def summary(self) -> str:
        if not (self.bios or self.window):
            return ""
        return (f"; resyncs: {self.adopted} BIOS-returned differences adopted, {self.skips} interrupt stretches "
                f"skipped ({self.skipped_a} records of A, {self.skipped_b} of B)")


def disassemble(code: bytes, pc: int, code32: bool) -> str:
    try:
        import capstone
    except ImportError:
        return f"{pc:08x}: {code[:8].hex(' ')} (capstone not installed)"
    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_32 if code32 else capstone.CS_MODE_16)
    for insn in md.disasm(code, pc):
        return f"{pc:08x}: {insn.bytes.hex(' '):<24} {insn.mnemonic} {insn.op_str}"
    return f"{pc:08x}: {code[:8].hex(' ')} (not decodable)"


def side_by_side(ra: Record, rb: Record, name_a: str, name_b: str) -> str:
    width = max([len(name_a), *(len(t) for t in ra.text)]) + 2
    rows = [f"{name_a:<{width}}| {name_b}", "-" * width + "+" + "-" * width]
    for i in range(max(len(ra.text), len(rb.text))):
        la = ra.text[i] if i < len(ra.text) else ""
        lb = rb.text[i] if i < len(rb.text) else ""
        mark = "" if la == lb else "   <--"
        rows.append(f"{la:<{width}}| {lb}{mark}")
    return "\n".join(rows)


def compare(a: list[Record], b: list[Record], *, start: int | None = None, ignore_flags: int = 0, skip: int = 0,
            limit: int | None = None, code_at=None, name_a: str = "A", name_b: str = "B", out=sys.stdout,
            resync: Resync | None = None, fill_text=None) -> int:
    """Print the result; returns 0 (identical over the range), 1 (diverged) or 2 (no common start)."""
    pos = _align(a, b, start)
    if pos is None:
        where = f"{start:#x}" if start is not None else "a common instruction"
        print(f"trace-diff: the logs never meet at {where} ({len(a)} and {len(b)} instructions)", file=out)
        return 2
    resync = resync or Resync(out=out)
    resync.out = out
    ia, ib = pos
    print(f"trace-diff: aligned at {a[ia].linear_pc():#010x} ({name_a} instruction {ia}, {name_b} instruction {ib})",
          file=out)
    ia, ib, k = ia + skip, ib + skip, skip
    repeats = 0  # records at the PC of the one before: REP iterations (QEMU logs each one)
    while ia < len(a) and ib < len(b) and (limit is None or k < limit):
        ra, rb = a[ia], b[ib]
        diff = differences(ra, rb, ignore_flags, resync.allowed)
        if diff and "PC" in diff and (pos := resync.skip(a, b, ia, ib, ignore_flags, k)) is not None:
            ia, ib = pos
            continue
        if not diff or resync.adopt(ra, rb, a[ia - 1].linear_pc() if ia else None, diff, k):
            resync.settle(ra, rb)
            repeats += ia > 0 and a[ia - 1].linear_pc() == ra.linear_pc()
            ia, ib, k = ia + 1, ib + 1, k + 1
            continue
        print(f"trace-diff: DIVERGED at instruction {k} after the alignment point ({k - skip} matched, {repeats} "
              f"of them REP iterations); differs: {' '.join(diff)}{resync.summary()}", file=out)
        print(f"  {name_a} log line {ra.line_no}, {name_b} log line {rb.line_no}", file=out)
        if ia > 0:
            prev = a[ia - 1]
            pc = prev.linear_pc()
            code = code_at(pc) if code_at is not None and pc is not None else None
            if code:
                print(f"  after: {disassemble(code, pc, prev.code32)}", file=out)
            else:
                print(f"  after the instruction at {pc:#010x} (give --image to disassemble it)", file=out)
            if fill_text is not None:
                fill_text(0, prev)
            print(f"  {name_a} before it:\n    " + "\n    ".join(prev.text), file=out)
        if fill_text is not None:
            fill_text(0, ra)
            fill_text(1, rb)
        print(side_by_side(ra, rb, f"{name_a} (state before {ra.linear_pc():#010x})",
                           f"{name_b} (state before {rb.linear_pc():#010x})"), file=out)
        return 1
    print(f"trace-diff: identical over {k - skip} instructions ({repeats} of them REP iterations; "
          f"{len(a) - ia} more in {name_a}, {len(b) - ib} more in {name_b}){resync.summary()}", file=out)
    return 0


def _range(text: str) -> tuple[int, int]:
    lo, _, hi = text.partition("..")
    return int(lo, 0), int(hi, 0)


def _text_filler(paths):
    def fill(which: int, rec: Record) -> None:
        if rec.text:
            return
        with open(paths[which], encoding="utf-8", errors="replace") as fh:
            for n, line in enumerate(itertools.islice(fh, rec.line_no - 1, rec.line_no + 20)):
                line = line.rstrip("\n")
                if n and (line.startswith("Trace ") or (line.startswith("EAX=") and rec.text)):
                    break
                if line.startswith(("EAX=", "ESI=", "EIP=", "CR0=", "GDT=", "IDT=")) or SEG_RE.match(line):
                    rec.text.append(line)
    return fill


def main(args) -> int:
    """`pyemu trace-diff` (argparse namespace from emu/cli.py)."""
    ranges = [_range(t) for t in args.range or ()]
    excludes = [_range(t) for t in args.exclude or ()]
    recs = []
    for path in (args.a, args.b):
        try:
            with open(path, encoding="utf-8", errors="replace") as fh:
                r = parse(fh, keep_text=False)
        except OSError as exc:
            print(f"pyemu: error: {path}: {exc.strerror or exc}", file=sys.stderr)
            return 2
        recs.append(select(r, ranges, excludes))
    code_at = None
    if args.image:
        with open(args.image, "rb") as fh:
            image = fh.read()
        org = args.org

        def code_at(pc: int) -> bytes:
            off = pc - org
            return image[off:off + 16] if 0 <= off < len(image) else b""

    resync = Resync(bios=args.bios_resync or bool(args.adopt_after), window=args.resync_window,
                    after=args.adopt_after or (), pointers_into=excludes if args.bios_resync else ())
    return compare(recs[0], recs[1], start=args.start, ignore_flags=args.ignore_flags, skip=args.skip,
                   limit=args.limit, code_at=code_at, name_a=args.a, name_b=args.b, resync=resync,
                   fill_text=_text_filler((args.a, args.b)))


def add_parser(sub, int_auto) -> None:
    p = sub.add_parser("trace-diff", help="first divergent instruction of two -d exec,cpu -one-insn-per-tb logs")
    p.add_argument("a", help="a log (pyemu's or QEMU's)")
    p.add_argument("b", help="the other log")
    p.add_argument("--start", type=int_auto, help="align at the first instruction at this linear address (0x7c00)")
    p.add_argument("--ignore-flags", type=int_auto, default=0, metavar="MASK", help="EFLAGS bits not compared")
    p.add_argument("--skip", type=int, default=0, metavar="N",
                   help="do not compare the first N instructions after the alignment point")
    p.add_argument("--limit", type=int, metavar="N", help="compare at most N instructions")
    p.add_argument("--range", action="append", metavar="LO..HI",
                   help="keep only instructions with LO <= linear PC < HI, in both logs (repeatable: any of them)")
    p.add_argument("--exclude", action="append", metavar="LO..HI",
                   help="drop instructions with LO <= linear PC < HI, in both logs (repeatable; e.g. the BIOS)")
    p.add_argument("--bios-resync", action="store_true",
                   help="adopt register differences at the first instruction after excluded code (what the "
                        "BIOSes returned), or that are real-mode far pointers into excluded code in both logs "
                        "(an interrupt vector read), while they last; each is reported")
    p.add_argument("--adopt-after", type=int_auto, action="append", metavar="PC",
                   help="as --bios-resync, after the instruction at linear PC too (e.g. one loading a BIOS "
                        "pointer); repeatable")
    p.add_argument("--resync-window", type=int, default=0, metavar="N",
                   help="at a PC difference, skip up to N records of one log to where both agree again "
                        "(an interrupt taken at another instruction); each is reported")
    p.add_argument("--image", help="raw code (a boot sector) to disassemble the divergent instruction from")
    p.add_argument("--org", type=int_auto, default=0x7C00, help="linear address of --image's first byte (0x7c00)")
