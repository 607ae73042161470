"""The time-stamp counter kept in step with guest time.

The compiled loop computes RDTSC as `ICOUNT * TSC_PER_INSN + TSC_OFFSET` (emu/cpu/system.py): one
nominal nanosecond per tick, 8 per instruction, a 1 GHz TSC if the guest ran at 125 MIPS. It does
not: the real rate depends on what the guest does (a loop polling the PIT exits to Python on every
read and runs at a fraction of that). A guest that calibrates its TSC against the PIT and then checks
one against the other (Linux's clocksource watchdog: "Marking clocksource 'tsc' as unstable because
the skew is too large") would see the two drift apart by the ratio.

So at every exit the main loop calls `TscSync.sync`: when the TSC has fallen behind guest time
(the virtual clock: the host clock, or instructions under -icount, which keeps it deterministic)
since the anchor, TSC_OFFSET moves it forward to meet it. It never moves back: within one run slice
the TSC counts instructions, so it stays monotonic and within one slice (at most a few ms) of guest
time. A guest write to the TSC (WRMSR 10h) or a machine reset moves the anchor.
"""

from __future__ import annotations

from emu.cpu import state as S
from emu.cpu.system import TSC_PER_INSN


class TscSync:
    def __init__(self, st, clock):
        self.st = st
        self.clock = clock
        self._anchor()

    def _anchor(self) -> None:
        st = self.st
        self.icount = int(st[S.ICOUNT])
        self.offset = int(st[S.TSC_OFFSET])
        self.anchor_ns = self.clock.now()
        self.anchor_tsc = self.icount * TSC_PER_INSN + self.offset

    def sync(self) -> None:
        st = self.st
        icount, offset = int(st[S.ICOUNT]), int(st[S.TSC_OFFSET])
        if offset != self.offset or icount < self.icount:  # the guest wrote the TSC, or a reset
            self._anchor()
            return
        self.icount = icount
        tsc = icount * TSC_PER_INSN + offset
        behind = (self.clock.now() - self.anchor_ns) - (tsc - self.anchor_tsc)
        if behind > 0:
            self.offset = offset + behind
            st[S.TSC_OFFSET] = self.offset
