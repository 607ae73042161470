"""Per-instruction `-d exec,cpu` lines in the exact layout of `qemu-system-i386 -one-insn-per-tb` (issue 12).

With `-one-insn-per-tb` (QEMU 7.2 calls it `-singlestep`) the main loop runs the CPU with a budget of
one instruction per `core.run` call and, before each instruction, this module writes what QEMU writes
before each one-instruction block: the `exec` line

    Trace 0: 0x0 [CSBASE/LINEAR_PC/HFLAGS/ff000201]

and, with `cpu`, the register dump (QEMU's `x86_cpu_dump_state` layout, 32-bit target). pyemu has no
host code pointer, so the pointer is 0x0, and the third field is pyemu's HFLAGS, not QEMU's tb flags:
`pyemu trace-diff` (emu/tracediff.py) reads neither. QEMU's CCS/CCO lane (lazy flags) is not written.
Slow (Python per instruction), exact, and no engine change.
"""

from __future__ import annotations

from emu.cpu import state as S

EFLAGS_FIXED = 0x2


def qemu_flag_text(fl: int) -> str:
    """QEMU's `[DOSZAPC]` flag letters."""
    bits = (("D", 10), ("O", 11), ("S", 7), ("Z", 6), ("A", 4), ("P", 2), ("C", 0))
    return "".join(ch if fl >> b & 1 else "-" for ch, b in bits)


def _seg_desc(st, seg: int, pe: bool, vm: bool) -> str:
    """QEMU's per-segment line: in protected mode the attribute word and the DPL/type suffix."""
    sel = int(st[S.seg_slot(seg, S.SEG_SEL)])
    base = int(st[S.seg_slot(seg, S.SEG_BASE)]) & 0xFFFFFFFF
    limit = int(st[S.seg_slot(seg, S.SEG_LIMIT)]) & 0xFFFFFFFF
    attr = int(st[S.seg_slot(seg, S.SEG_ATTR)]) & 0xFFFF
    raw_limit = limit >> 12 if attr & 0x8000 else limit  # as in the descriptor (G set: in 4 KiB units)
    # QEMU keeps the descriptor's high dword: access byte, limit bits 19:16, G/DB/L/AVL
    flags = (attr & 0xFF) << 8 | (raw_limit >> 16 & 0xF) << 16 | (attr >> 8 & 0xF0) << 16
    name = ("ES ", "CS ", "SS ", "DS ", "FS ", "GS ", "LDT", "TR ")[seg]
    line = f"{name}={sel:04x} {base:08x} {limit:08x} {flags:08x}"
    if not pe or vm:
        return line
    if not attr & S.ATTR_P:
        return line
    dpl = attr >> 5 & 3
    line += f" DPL={dpl}"
    if attr & S.ATTR_S:
        if attr & S.ATTR_CODE:
            size = "CS32" if attr & S.ATTR_DB else "CS16"
            line += f" {size} [{'C' if attr & 4 else '-'}{'R' if attr & 2 else '-'}{'A' if attr & 1 else '-'}]"
        else:
            size = "DS  " if attr & S.ATTR_DB else "DS16"
            line += f" {size} [{'E' if attr & 4 else '-'}{'W' if attr & 2 else '-'}{'A' if attr & 1 else '-'}]"
    else:
        kind = attr & 0xF
        names = {2: "LDT", 1: "TSS16-avl", 3: "TSS16-busy", 9: "TSS32-avl", 11: "TSS32-busy"}
        line += f" {names.get(kind, f'type={kind:x}')}"
    return line


def cpu_dump(core) -> str:
    """The registers in the layout of QEMU 7.2's `-d cpu` (i386 target)."""
    st = core.st
    r = [int(st[i]) & 0xFFFFFFFF for i in range(8)]
    fl = core.get_flags() | EFLAGS_FIXED
    cr0 = int(st[S.CR0])
    pe, vm = bool(cr0 & 1), bool(fl & 0x20000)
    lines = [f"EAX={r[0]:08x} EBX={r[3]:08x} ECX={r[1]:08x} EDX={r[2]:08x}",
             f"ESI={r[6]:08x} EDI={r[7]:08x} EBP={r[5]:08x} ESP={r[4]:08x}",
             f"EIP={int(st[S.EIP]) & 0xFFFFFFFF:08x} EFL={fl:08x} [{qemu_flag_text(fl)}] CPL={int(st[S.CPL])} "
             f"II=0 A20={int(st[S.A20_MASK]) >> 20 & 1} SMM=0 HLT={int(st[S.HALTED])}"]
    lines += [_seg_desc(st, seg, pe, vm) for seg in range(8)]
    lines.append(f"GDT=     {int(st[S.GDTR_BASE]) & 0xFFFFFFFF:08x} {int(st[S.GDTR_LIMIT]):08x}")
    lines.append(f"IDT=     {int(st[S.IDTR_BASE]) & 0xFFFFFFFF:08x} {int(st[S.IDTR_LIMIT]):08x}")
    lines.append(f"CR0={cr0:08x} CR2={int(st[S.CR2]) & 0xFFFFFFFF:08x} CR3={int(st[S.CR3]) & 0xFFFFFFFF:08x} "
                 f"CR4={int(st[S.CR4]):08x}")
    return "\n".join(lines) + "\n"


def exec_line(core) -> str:
    st = core.st
    base = int(st[S.seg_slot(S.CS, S.SEG_BASE)]) & 0xFFFFFFFF
    pc = (base + int(st[S.EIP])) & 0xFFFFFFFF
    return f"Trace 0: 0x0 [{base:08x}/{pc:08x}/{int(st[S.HFLAGS]) & 0xFFFFFFFF:08x}/ff000201] \n"


class InsnTrace:
    """Writes the exec line (and the cpu dump) before each instruction of a one-instruction-per-run loop."""

    def __init__(self, core, out, exec_: bool, cpu: bool, dfilter: tuple[int, int] | None = None):
        self.core, self.out, self.exec_, self.cpu = core, out, exec_, cpu
        self.dfilter = dfilter
        self._last = None
        self.lines = 0

    def before(self) -> None:
        """Called before each `core.run(1)`; an instruction resumed after an I/O exit is not written twice."""
        st = self.core.st
        key = (int(st[S.ICOUNT]), int(st[S.EIP]), int(st[S.seg_slot(S.CS, S.SEG_SEL)]))
        if key == self._last:
            return
        self._last = key
        if self.dfilter is not None:
            pc = (int(st[S.seg_slot(S.CS, S.SEG_BASE)]) + int(st[S.EIP])) & 0xFFFFFFFF
            if not self.dfilter[0] <= pc < self.dfilter[1]:
                return
        if self.exec_:
            self.out.write(exec_line(self.core))
        if self.cpu:
            self.out.write(cpu_dump(self.core))
        self.lines += 1

    def after(self, reason: int) -> None:
        pass
