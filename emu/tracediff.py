"""`pyemu trace-diff A B`: the first instruction where two `-d exec,cpu -one-insn-per-tb` logs disagree (issue 12).

Both logs may come from pyemu or from `qemu-system-i386 -d exec,cpu,nochain -singlestep` (7.2; later
versions call the option -one-insn-per-tb). A record is one `Trace` line and the register dump after it:
the state *before* that instruction (a record identical to the one before it is dropped). The two
record streams are aligned at the first instruction whose
linear PC is `--start` (or, without it, the first PC of B that A also has, so that QEMU's SeaBIOS
prologue and pyemu's BIOS drop out), then compared record by record: the PC sequence, the GPRs, EIP,
EFLAGS (less `--ignore-flags`) and the segment selectors. The first difference is printed with both
states side by side and the instruction before it (the one that made the difference) disassembled.
Exit status 0: identical over the compared range; 1: they diverge; 2: a log could not be read.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field

GPRS = ("EAX", "EBX", "ECX", "EDX", "ESI", "EDI", "EBP", "ESP")
SEGS = ("ES", "CS", "SS", "DS", "FS", "GS")
TRACE_RE = re.compile(r"^Trace \d+: 0x[0-9a-f]+ \[([0-9a-f]+)/([0-9a-f]+)/")
REG_RE = re.compile(r"\b([A-Z][A-Z0-9]{1,2})=([0-9a-f]{8})\b")
SEG_RE = re.compile(r"^(ES|CS|SS|DS|FS|GS) =([0-9a-f]{4}) ([0-9a-f]{8})")


@dataclass
class Record:
    line_no: int
    pc: int | None = None
    regs: dict[str, int] = field(default_factory=dict)
    text: list[str] = field(default_factory=list)
    code32: bool = False

    def linear_pc(self) -> int | None:
        if self.pc is not None:
            return self.pc
        if "EIP" in self.regs and "CS_BASE" in self.regs:
            return (self.regs["CS_BASE"] + self.regs["EIP"]) & 0xFFFFFFFF
        return None


def parse(lines) -> list[Record]:
    """Records from a log: each starts at a `Trace` line (or, for a `-d cpu`-only log, at an EAX= line)."""
    recs: list[Record] = []
    cur: Record | None = None
    for no, line in enumerate(lines, 1):
        line = line.rstrip("\n")
        m = TRACE_RE.match(line)
        if m:
            cur = Record(no, pc=int(m.group(2), 16))
            recs.append(cur)
            continue
        if line.startswith("EAX="):
            if cur is None or "EAX" in cur.regs:
                cur = Record(no)
                recs.append(cur)
        if cur is None:
            continue
        if line.startswith(("EAX=", "ESI=", "EIP=")):
            cur.regs.update((k, int(v, 16)) for k, v in REG_RE.findall(line))
            cur.text.append(line)
        elif (s := SEG_RE.match(line)) is not None:
            cur.regs[s.group(1)] = int(s.group(2), 16)
            if s.group(1) == "CS":
                cur.regs["CS_BASE"] = int(s.group(3), 16)
                cur.code32 = " CS32 " in line + " "
            cur.text.append(line)
        elif line.startswith(("CR0=", "GDT=", "IDT=")):
            cur.text.append(line)
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


def differences(ra: Record, rb: Record, ignore_flags: int) -> list[str]:
    out = []
    if ra.linear_pc() != rb.linear_pc():
        out.append("PC")
    for k in (*GPRS, "EIP", *SEGS):
        if k in ra.regs and k in rb.regs and ra.regs[k] != rb.regs[k]:
            out.append(k)
    if "EFL" in ra.regs and "EFL" in rb.regs and (ra.regs["EFL"] ^ rb.regs["EFL"]) & ~ignore_flags:
        out.append("EFL")
    return out


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
            limit: int | None = None, code_at=None, name_a: str = "A", name_b: str = "B", out=sys.stdout) -> int:
    """Print the result; returns 0 (identical over the range), 1 (diverged) or 2 (no common start)."""
    pos = _align(a, b, start)
    if pos is None:
        where = f"{start:#x}" if start is not None else "a common instruction"
        print(f"trace-diff: the logs never meet at {where} ({len(a)} and {len(b)} instructions)", file=out)
        return 2
    ia, ib = pos
    n = min(len(a) - ia, len(b) - ib)
    if limit is not None:
        n = min(n, limit)
    print(f"trace-diff: aligned at {a[ia].linear_pc():#010x} ({name_a} instruction {ia}, {name_b} instruction {ib})",
          file=out)
    for k in range(skip, n):
        ra, rb = a[ia + k], b[ib + k]
        diff = differences(ra, rb, ignore_flags)
        if not diff:
            continue
        print(f"trace-diff: DIVERGED at instruction {k} after the alignment point ({k - skip} matched); "
              f"differs: {' '.join(diff)}", file=out)
        print(f"  {name_a} log line {ra.line_no}, {name_b} log line {rb.line_no}", file=out)
        if k > 0:
            prev = a[ia + k - 1]
            pc = prev.linear_pc()
            code = code_at(pc) if code_at is not None and pc is not None else None
            if code:
                print(f"  after: {disassemble(code, pc, prev.code32)}", file=out)
            else:
                print(f"  after the instruction at {pc:#010x} (give --image to disassemble it)", file=out)
        print(side_by_side(ra, rb, f"{name_a} (state before {ra.linear_pc():#010x})",
                           f"{name_b} (state before {rb.linear_pc():#010x})"), file=out)
        return 1
    print(f"trace-diff: identical over {n - skip} instructions ({len(a) - ia - n} more in {name_a}, "
          f"{len(b) - ib - n} more in {name_b})", file=out)
    return 0


def _range(text: str) -> tuple[int, int]:
    lo, _, hi = text.partition("..")
    return int(lo, 0), int(hi, 0)


def main(args) -> int:
    """`pyemu trace-diff` (argparse namespace from emu/cli.py)."""
    recs = []
    for path in (args.a, args.b):
        try:
            with open(path, encoding="utf-8", errors="replace") as fh:
                r = parse(fh)
        except OSError as exc:
            print(f"pyemu: error: {path}: {exc.strerror or exc}", file=sys.stderr)
            return 2
        if args.range:
            lo, hi = _range(args.range)
            r = [x for x in r if x.linear_pc() is not None and lo <= x.linear_pc() < hi]
        recs.append(r)
    code_at = None
    if args.image:
        with open(args.image, "rb") as fh:
            image = fh.read()
        org = args.org

        def code_at(pc: int) -> bytes:
            off = pc - org
            return image[off:off + 16] if 0 <= off < len(image) else b""

    return compare(recs[0], recs[1], start=args.start, ignore_flags=args.ignore_flags, skip=args.skip,
                   limit=args.limit, code_at=code_at, name_a=args.a, name_b=args.b)


def add_parser(sub, int_auto) -> None:
    p = sub.add_parser("trace-diff", help="first divergent instruction of two -d exec,cpu -one-insn-per-tb logs")
    p.add_argument("a", help="a log (pyemu's or QEMU's)")
    p.add_argument("b", help="the other log")
    p.add_argument("--start", type=int_auto, help="align at the first instruction at this linear address (0x7c00)")
    p.add_argument("--ignore-flags", type=int_auto, default=0, metavar="MASK", help="EFLAGS bits not compared")
    p.add_argument("--skip", type=int, default=0, metavar="N",
                   help="do not compare the first N instructions after the alignment point")
    p.add_argument("--limit", type=int, metavar="N", help="compare at most N instructions")
    p.add_argument("--range", metavar="LO..HI", help="keep only instructions with LO <= linear PC < HI, in both logs")
    p.add_argument("--image", help="raw code (a boot sector) to disassemble the divergent instruction from")
    p.add_argument("--org", type=int_auto, default=0x7C00, help="linear address of --image's first byte (0x7c00)")
