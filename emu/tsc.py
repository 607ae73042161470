"""The time-stamp counter kept in step with guest time.

Inside the compiled loop RDTSC is `(ICOUNT * TSC_RATE >> 8) + TSC_OFFSET` (emu/cpu/system.py):
ticks per retired instruction. No fixed rate is right: how many instructions a guest nanosecond
holds depends on what the guest does (a loop polling the PIT exits to Python on every read and runs
at a fraction of a decompressor's speed). A guest that calibrates its TSC against the PIT and then
checks one against the other (Linux's clocksource watchdog: "Marking clocksource 'tsc' as unstable
because the skew is too large") must see them agree, or it falls back to a tick-based clock.

So at every exit the main loop calls `TscSync.sync`, which keeps the TSC at one tick per nanosecond
of guest time (the virtual clock: the host clock, or instructions under -icount, which keeps it
deterministic):

- when the TSC has fallen behind guest time since the anchor, TSC_OFFSET moves it forward to meet
  it; it never moves back, so the TSC is monotonic;
- every RATE_WINDOW_NS of guest time, TSC_RATE is set a little below the rate just measured
  (RATE_UNDERSHOOT), so that within a run slice it rises smoothly and lags guest time slightly,
  to be caught up at the next exit;
- at any exit that finds the TSC ahead of guest time, the rate drops to RATE_MIN there and then,
  until the next window measures it again: when the guest suddenly runs faster (its loop just
  became compiled code) its lead is the one slice that ran at the old rate, not seconds;
- a window that spans a halt does not measure anything (`idle`): guest time that passed with no
  instructions retired would make the rate thousands of ticks per instruction, and the next busy
  slices would push the TSC seconds ahead of guest time. A Linux guest then sees time jump: its
  timeouts fire early ("Problem loading in-kernel X.509 certificate (-110)") and its watchdog
  reports soft lockups.

A guest write to the TSC (WRMSR 10h) or a machine reset moves the anchor.

When guest time is host time, the rate windows are measured in the main thread's CPU time, not in
wall time: time the host spent running other processes is guest time that passed with no
instructions retired, like a halt, and measured in wall time it made the rate too high. On a loaded
host (six pyemus on two cores) the next slice then pushed the TSC milliseconds ahead of guest time,
where it crawled at RATE_MIN until guest time caught up; SeaBIOS, calibrating its TSC against PIT
channel 2 in that time, measured "CPU Mhz=0", its floppy timeouts fired at once, and the boot
ended in "No bootable device" (found by the image-test matrix). A preemption now only leaves the
TSC behind, to be caught up at the next exit.
"""

from __future__ import annotations

import time

from emu.cpu import state as S

RATE_WINDOW_NS = 10_000_000  # how much guest time one rate measurement spans
RATE_UNDERSHOOT = (3, 4)  # run slices at 3/4 of the measured rate: lag a little, never run ahead
RATE_MIN = 1 << (S.TSC_RATE_SHIFT - 4)  # 1/16 tick per instruction
RATE_MAX = 4096 << S.TSC_RATE_SHIFT  # 4096 ticks (4 us at 1 GHz) per instruction


def tsc_value(icount: int, offset: int, rate: int) -> int:
    return ((icount * rate) >> S.TSC_RATE_SHIFT) + offset


class TscSync:
    def __init__(self, st, clock):
        self.st = st
        self.clock = clock
        # what rate windows are measured in: the clock under -icount (deterministic), else this
        # thread's CPU time (see the module docstring)
        self.busy_ns = clock.now if getattr(clock, "icount", True) else time.thread_time_ns
        self._anchor()

    def _anchor(self) -> None:
        st = self.st
        self.icount = int(st[S.ICOUNT])
        self.offset = int(st[S.TSC_OFFSET])
        self.rate = int(st[S.TSC_RATE])
        self.anchor_ns = self.clock.now()
        self.window_ns = self.busy_ns()
        self.window_icount = self.icount
        self.anchor_tsc = tsc_value(self.icount, self.offset, self.rate)

    def idle(self) -> None:
        """The guest halted and the main loop waited for an interrupt: start a new rate window
        here, so the wait (guest time with no instructions) is not taken for slow instructions."""
        self.window_ns, self.window_icount = self.busy_ns(), int(self.st[S.ICOUNT])

    def sync(self) -> None:
        st = self.st
        icount, offset, rate = int(st[S.ICOUNT]), int(st[S.TSC_OFFSET]), int(st[S.TSC_RATE])
        if offset != self.offset or rate != self.rate or icount < self.icount:
            self._anchor()  # the guest wrote the TSC, or the machine was reset
            return
        self.icount = icount
        now = self.clock.now()
        tsc = tsc_value(icount, offset, rate)
        target = self.anchor_tsc + (now - self.anchor_ns)
        if target > tsc:
            tsc = target
        busy = self.busy_ns()
        span, insns = busy - self.window_ns, icount - self.window_icount
        if span >= RATE_WINDOW_NS and insns > 0:
            measured = (span << S.TSC_RATE_SHIFT) // insns
            rate = measured * RATE_UNDERSHOOT[0] // RATE_UNDERSHOOT[1]
            self.window_ns, self.window_icount = busy, icount
        if tsc > target:  # ahead of guest time: all but stop it now (it is never pulled back)
            rate = RATE_MIN
        rate = max(RATE_MIN, min(RATE_MAX, rate))
        offset = tsc - ((icount * rate) >> S.TSC_RATE_SHIFT)
        if offset != self.offset or rate != self.rate:
            st[S.TSC_OFFSET], st[S.TSC_RATE] = offset, rate
            self.offset, self.rate = offset, rate
