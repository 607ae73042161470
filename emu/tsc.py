"""The time-stamp counter kept in step with guest time: a 1 GHz TSC, one tick per guest nanosecond.

Two ways, as the clock (emu/clock.py) has two kinds of guest time:

- **Host time** (the default): `HostTsc`. RDTSC reads the host's monotonic clock itself, through the
  C library's `clock_gettime` (its address is in the state array, TSC_HOST_FN; emu/cpu/system.py),
  minus the clock's origin: it is guest time, to the nanosecond, at the moment of the read, as QEMU
  reads the host's clock without -icount. A guest that calibrates its TSC against the PIT (SeaBIOS,
  Linux) measures exactly 1,000 MHz however fast or slow the code around the read runs, and the two
  never drift apart (Linux's clocksource watchdog). Time pyemu spends compiling, which guest time
  leaves out (`VirtualClock.skip_host`), pauses the TSC too (`skip_host` below). The TSC never moves
  back: when the clock's origin moves (a debugger or monitor pause ends), TSC_OFFSET takes up the
  difference.
- **Instructions** (-icount, or a host without a usable clock_gettime): `TscSync`. Inside the
  compiled loop RDTSC is `(ICOUNT * TSC_RATE >> 8) + TSC_OFFSET`: ticks per retired instruction,
  which keeps -icount deterministic. Under -icount guest time is instructions, so the rate is exact.

The instruction-rated TSC needs a rate, and none is right in host time: how many instructions a
guest nanosecond holds depends on what the guest does. So there, at every exit, `TscSync.sync`
keeps the TSC near guest time:

- when the TSC has fallen behind guest time since the anchor, TSC_OFFSET moves it forward to meet
  it; it never moves back, so the TSC is monotonic;
- every RATE_WINDOW_NS of guest time, TSC_RATE is set a little below the rate just measured
  (RATE_UNDERSHOOT), so that within a run slice it rises smoothly and lags guest time slightly,
  to be caught up at the next exit;
- at any exit that finds the TSC ahead of guest time, the rate drops to RATE_MIN there and then,
  until the next window measures it again;
- a window that spans a halt does not measure anything (`idle`).

That model is why host time now reads the host clock: a slice that ran faster than the window
before it (Python work in the window, compiled code in the slice) put the TSC milliseconds ahead
of guest time, where it crawled at RATE_MIN; SeaBIOS, calibrating its TSC against PIT channel 2
in that time, measured "CPU Mhz=0", its floppy timeouts fired at once and the boot ended in "No
bootable device" for 60 seconds (seen with a higher tier-1 threshold, and on loaded hosts).

A guest write to the TSC (WRMSR 10h) moves TSC_OFFSET in both ways; a machine reset clears the
host-clock slots and the TSC starts again from 0.
"""

from __future__ import annotations

import ctypes
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


def host_clock() -> tuple[int, int] | None:
    """(address of the C library's clock_gettime, CLOCK_MONOTONIC) where compiled code can call it
    with a 16-byte struct timespec (64-bit Linux and macOS); None elsewhere (Windows)."""
    clock_id = getattr(time, "CLOCK_MONOTONIC", None)
    if clock_id is None or not hasattr(time, "clock_gettime_ns"):
        return None
    if ctypes.sizeof(ctypes.c_void_p) != 8 or ctypes.sizeof(ctypes.c_long) != 8:
        return None
    try:
        fn = ctypes.CDLL(None).clock_gettime
    except (OSError, AttributeError, TypeError):
        return None
    fn.argtypes, fn.restype = (ctypes.c_int, ctypes.c_void_p), ctypes.c_int
    ts = (ctypes.c_int64 * 2)()
    if fn(clock_id, ctypes.addressof(ts)) != 0:
        return None
    return ctypes.cast(fn, ctypes.c_void_p).value, clock_id


class HostTsc:
    """RDTSC reads the host clock (host time; see the module docstring). `sync` and `idle` have
    TscSync's interface; `sync` only keeps the clock's origin in the state array."""

    def __init__(self, st, clock, fn: int, clock_id: int):
        self.st, self.clock, self.fn, self.clock_id = st, clock, fn, clock_id
        # the clock reads time.monotonic_ns; compiled code reads clock_gettime(clock_id): the same
        # clock on Linux, and on any host the same rate (nanoseconds), so one difference relates them
        self.delta = min((time.clock_gettime_ns(clock_id) - time.monotonic_ns() for _ in range(3)), key=abs)
        self.sync()

    def _origin(self) -> int:
        """The host clock's (clock_gettime's) reading at guest time 0."""
        return self.clock.host_origin_ns() + self.delta

    def sync(self) -> None:
        st = self.st
        if int(st[S.TSC_HOST_FN]) != self.fn:
            # first run, or a RESET cleared the slots: go on from the TSC the instructions counted
            counted = tsc_value(int(st[S.ICOUNT]), int(st[S.TSC_OFFSET]), int(st[S.TSC_RATE]))
            st[S.TSC_HOST_CLOCK] = self.clock_id
            st[S.TSC_HOST_ORIGIN] = self._origin()
            st[S.TSC_OFFSET] = counted - self.clock.now()
            st[S.TSC_HOST_FN] = self.fn
            return
        old = int(st[S.TSC_HOST_ORIGIN])
        origin = self._origin()
        if origin == old:
            return
        if origin > old:  # guest time jumped back (a pause ended): the TSC must not
            st[S.TSC_OFFSET] += origin - old
        st[S.TSC_HOST_ORIGIN] = origin

    def idle(self) -> None:
        pass


def skip_host(st, ns: int) -> None:
    """The clock left `ns` of host time out of guest time (pyemu compiled code, the guest did not
    run): a TSC on the host's clock pauses for it too (the machine's compile hook calls this)."""
    if st[S.TSC_HOST_FN]:
        st[S.TSC_HOST_ORIGIN] += ns


def new_tsc(st, clock):
    """The TSC model for this clock: the host clock in host time where it can be read, else
    instructions at a rate."""
    if not getattr(clock, "icount", True):
        hc = host_clock()
        if hc is not None:
            return HostTsc(st, clock, *hc)
    return TscSync(st, clock)
