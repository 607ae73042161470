"""`-d in_asm,exec,cpu,int` logging, in QEMU's style, without slowing the loop when it is off.

The compiled loop records events in a ring (an int64 array whose address is in the context array,
CTX_LOG) only for the items whose bit is set in the state's LOG_MASK: a block translated
(in_asm), a block run (exec), an interrupt or exception delivered (int). When the ring fills, the
loop leaves with EXIT_LOG; Python drains the ring at every exit and writes the lines. `cpu` needs
the registers before each block, so with it the loop leaves before every block (slow, as in QEMU).

The exec trace of two runs can be compared line by line: that is how a pyemu run is checked
against another pyemu build (or, with the same format, another emulator).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from emu.cpu import state as S
from emu.rawptr import load_i64, store_i64

CTX_LOG = 7  # the ring's address in the context array (emu/mmu/softmmu.py: CTX_*, below CTX_SIZE)
RING_EVENTS = 4096
EVENT_WIDTH = 5
EV_TB = 1  # a: block number, b: physical address, c: EIP, d: HFLAGS
EV_EXEC = 2  # a: block number, b: physical address, c: EIP, d: CS base
EV_INT = 3  # a: vector | soft << 8, b: error code (-1 none), c: EIP returned to, d: CS selector
EV_UNIMP = 4  # a: opcode (map * 256 + byte) or UNIMP_FETCH, b: linear address, c: EIP, d: CS selector
UNIMP_FETCH = -1  # EV_UNIMP: code fetched from open bus or device memory

LOG_ITEMS = {"in_asm": S.LOG_IN_ASM, "exec": S.LOG_EXEC, "cpu": S.LOG_CPU, "int": S.LOG_INT,
             "unimp": S.LOG_UNIMP}
IGNORED_ITEMS = ("guest_errors", "nochain")  # accepted for QEMU compatibility (blocks chain either way)


def new_ring() -> np.ndarray:
    return np.zeros(RING_EVENTS * EVENT_WIDTH, dtype=np.int64)


@njit(cache=True)
def log_event(ring_ptr, sp, kind, a, b, c, d):
    """Append one event; returns True when the ring is now full (the loop should leave)."""
    pos = load_i64(sp + S.LOG_POS * 8)
    if pos >= RING_EVENTS:
        return True
    p = ring_ptr + pos * EVENT_WIDTH * 8
    store_i64(p, kind)
    store_i64(p + 8, a)
    store_i64(p + 16, b)
    store_i64(p + 24, c)
    store_i64(p + 32, d)
    store_i64(sp + S.LOG_POS * 8, pos + 1)
    return pos + 1 >= RING_EVENTS


def parse_items(spec: str) -> int:
    """`-d` argument → LOG_MASK; raises ValueError naming an unknown item."""
    mask = 0
    for item in filter(None, (x.strip() for x in spec.split(","))):
        if item in LOG_ITEMS:
            mask |= LOG_ITEMS[item]
        elif item not in IGNORED_ITEMS:
            raise ValueError(f"-d: unknown log item {item!r} (known: {', '.join([*LOG_ITEMS, *IGNORED_ITEMS])})")
    return mask


class TraceLog:
    """Formats the ring's events (and per-block register dumps) to a text stream."""

    def __init__(self, core, mask: int, out):
        self.core = core
        self.out = out
        self.mask = mask  # its items (hooks of emu/hooks.py may add bits to the state's LOG_MASK)
        core.st[S.LOG_MASK] = mask
        core.st[S.LOG_POS] = 0

    def drain(self) -> None:
        st = self.core.st
        n = int(st[S.LOG_POS])
        ring = self.core.log_ring
        write = self.out.write
        for i in range(n):
            kind, a, b, c, d = (int(x) for x in ring[i * EVENT_WIDTH:(i + 1) * EVENT_WIDTH])
            if kind == EV_TB:
                if self.mask & S.LOG_IN_ASM:
                    write(self._in_asm(b, c, d, a))
            elif kind == EV_EXEC:
                write(f"Trace {a:#x}: [{b:08x}/{c:08x}]\n")
            elif kind == EV_INT:
                vec, soft = a & 0xFF, a >> 8
                err = f"{b:04x}" if b >= 0 else "----"
                write(f"     v={vec:02x} e={err} i={soft} cpl={int(st[S.CPL])} IP={d:04x}:{c:08x} "
                      f"SP={int(st[S.seg_slot(S.SS, S.SEG_SEL)]):04x}:{int(st[S.ESP]):08x} CR2={int(st[S.CR2]):08x}\n")
            elif kind == EV_UNIMP:
                what = "no memory to fetch from" if a == UNIMP_FETCH else f"opcode {a:#x} not implemented"
                write(f"unimplemented: {d:04x}:{c:08x} (linear {b:08x}): {what}: raising #UD\n")
        st[S.LOG_POS] = 0
        if st[S.EXIT_REASON] == S.EXIT_LOG and self.mask & S.LOG_CPU and st[S.LOG_ACK]:
            write(self.cpu_state())

    def _in_asm(self, phys: int, eip: int, hflags: int, tb: int) -> str:
        from emu.translate.blockcache import TB_BYTES, TB_WIDTH
        from emu.translate.disasm import disassemble_lines

        nbytes = int(self.core.blocks.tbs[tb * TB_WIDTH + TB_BYTES]) or 16
        code = self.core.read_phys(phys, nbytes)
        bits = 32 if hflags & S.HF_CS32 else 16
        lines = "\n".join(disassemble_lines(code, bits=bits, org=eip))
        return f"----------------\nIN: [phys {phys:08x}]\n{lines}\n\n"

    def cpu_state(self) -> str:
        """A register dump in the layout of QEMU's `-d cpu`."""
        core = self.core
        st = core.st
        r = [int(st[i]) for i in range(8)]
        fl = core.get_flags()
        names = "ODITSZAPC"
        bits = (11, 10, 9, 8, 7, 6, 4, 2, 0)
        flag_text = "".join(n if fl >> b & 1 else "-" for n, b in zip(names, bits, strict=True))
        lines = [f"EAX={r[0]:08x} EBX={r[3]:08x} ECX={r[1]:08x} EDX={r[2]:08x}",
                 f"ESI={r[6]:08x} EDI={r[7]:08x} EBP={r[5]:08x} ESP={r[4]:08x}",
                 f"EIP={int(st[S.EIP]):08x} EFL={fl:08x} [{flag_text}] CPL={int(st[S.CPL])} "
                 f"A20={int(st[S.A20_MASK] >> 20 & 1)} HLT={int(st[S.HALTED])}"]
        for seg in range(8):
            name = S.SEG_NAMES[seg].upper()
            lines.append(f"{name:<4}={int(st[S.seg_slot(seg, S.SEG_SEL)]):04x} "
                         f"{int(st[S.seg_slot(seg, S.SEG_BASE)]):08x} {int(st[S.seg_slot(seg, S.SEG_LIMIT)]):08x} "
                         f"{int(st[S.seg_slot(seg, S.SEG_ATTR)]) & 0xFFFF:04x}")
        lines.append(f"GDT=     {int(st[S.GDTR_BASE]):08x} {int(st[S.GDTR_LIMIT]):08x}")
        lines.append(f"IDT=     {int(st[S.IDTR_BASE]):08x} {int(st[S.IDTR_LIMIT]):08x}")
        lines.append(f"CR0={int(st[S.CR0]):08x} CR2={int(st[S.CR2]):08x} CR3={int(st[S.CR3]):08x} "
                     f"CR4={int(st[S.CR4]):08x}")
        return "\n".join(lines) + "\n"
