"""The virtual clock that drives every device: nanoseconds of guest time and a queue of timers.

Devices are never polled. A device that wants to act later (a PIT reload, an RTC tick, a UART
transmit-done) arms a `Timer` for a guest-time deadline. The main loop asks `next_deadline()`,
converts the gap into an instruction budget for the compiled loop, and calls `run_due()` when the
loop comes back.

Two ways to advance time:
- `-icount` (deterministic): guest time is a pure function of retired instructions,
  `ns = instructions << shift`, as QEMU's `-icount shift=N`. Two runs of the same guest with the same
  input see the same times.
- host time (default): guest time follows the host's monotonic clock from the moment the
  machine started, so a guest's idea of seconds matches the wall clock.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable

NS_PER_SECOND = 1_000_000_000
DEFAULT_ICOUNT_SHIFT = 3  # 2**3 = 8 ns per instruction: a 125 MIPS guest, in QEMU's unit


class Timer:
    """A one-shot callback at a guest-time deadline; re-arm it from the callback for periodic use."""

    __slots__ = ("clock", "callback", "deadline", "_seq", "name")

    def __init__(self, clock: VirtualClock, callback: Callable[[int], None], name: str = ""):
        self.clock = clock
        self.callback = callback
        self.deadline: int | None = None
        self._seq = -1
        self.name = name

    def arm(self, deadline_ns: int) -> None:
        """Fire at `deadline_ns` (replacing any earlier arming)."""
        self.clock._arm(self, int(deadline_ns))

    def arm_in(self, delta_ns: int) -> None:
        self.arm(self.clock.now() + max(0, int(delta_ns)))

    def cancel(self) -> None:
        self.deadline = None
        self._seq = -1  # stale heap entries are skipped

    @property
    def armed(self) -> bool:
        return self.deadline is not None


class VirtualClock:
    """Guest time in nanoseconds, deterministic under icount, plus the timer queue."""

    def __init__(self, icount: bool = False, shift: int = DEFAULT_ICOUNT_SHIFT):
        self.icount = icount
        self.shift = shift
        self.instructions = 0  # retired guest instructions, kept up to date by the main loop
        self._host_start = time.monotonic_ns()
        self._frozen_ns: int | None = None
        self._heap: list[tuple[int, int, Timer]] = []
        self._counter = itertools.count()
        self.timers: list[Timer] = []  # every timer made, in creation order (snapshots name them by index)

    # -- time ------------------------------------------------------------------------------
    def now(self) -> int:
        if self.icount:
            return self.instructions << self.shift
        if self._frozen_ns is not None:
            return self._frozen_ns
        return time.monotonic_ns() - self._host_start

    def host_origin_ns(self) -> int:
        """The host's monotonic clock (time.monotonic_ns) at guest time 0, in host time: guest time
        is that clock minus this (while the clock is frozen, this moves with the host clock)."""
        if self._frozen_ns is not None:
            return time.monotonic_ns() - self._frozen_ns
        return self._host_start

    def skip_host(self, ns: int) -> None:
        """Host time the guest did not live through (pyemu compiling its code): guest time, which
        follows the host clock, leaves it out, so timers and the TSC do not jump over it."""
        if not self.icount and self._frozen_ns is None:
            self._host_start += ns

    def advance_instructions(self, n: int) -> None:
        self.instructions += n

    def ns_to_instructions(self, ns: int) -> int:
        """How many instructions fit in `ns` of guest time (under icount exact, else an estimate)."""
        if ns <= 0:
            return 0
        if self.icount:
            return (ns + (1 << self.shift) - 1) >> self.shift
        return max(1, ns >> DEFAULT_ICOUNT_SHIFT)

    # -- timers ----------------------------------------------------------------------------
    def timer(self, callback: Callable[[int], None], name: str = "") -> Timer:
        t = Timer(self, callback, name)
        self.timers.append(t)
        return t

    def armed_timers(self) -> list[Timer]:
        """The armed timers in firing order (deadline, then arming order)."""
        return [t for _, _, t in sorted((t.deadline, t._seq, t) for t in self.timers if t.armed)]

    def rearm(self, timers: list[tuple[Timer, int]]) -> None:
        """Disarm every timer, then arm `timers` ((timer, deadline) pairs) in that order, so that
        timers with equal deadlines fire in the order given (a snapshot being restored)."""
        for t in self.timers:
            t.cancel()
        self._heap.clear()
        for t, deadline in timers:
            t.arm(deadline)

    def set_now(self, ns: int, instructions: int) -> None:
        """Put the clock at `ns` of guest time with `instructions` retired (a snapshot being
        restored; under icount the two agree). Host time continues from `ns`."""
        self.instructions = int(instructions)
        if self._frozen_ns is not None:
            self._frozen_ns = int(ns)
        else:
            self._host_start = time.monotonic_ns() - int(ns)

    def _arm(self, timer: Timer, deadline: int) -> None:
        timer.deadline = deadline
        timer._seq = next(self._counter)
        heapq.heappush(self._heap, (deadline, timer._seq, timer))

    def _clean(self) -> None:
        heap = self._heap
        while heap and heap[0][2]._seq != heap[0][1]:
            heapq.heappop(heap)

    def next_deadline(self) -> int | None:
        """The earliest armed deadline, or None when no timer is armed."""
        self._clean()
        return self._heap[0][0] if self._heap else None

    def run_due(self) -> int:
        """Fire every timer whose deadline has passed, in deadline order; returns how many fired."""
        fired = 0
        now = self.now()
        heap = self._heap
        while True:
            self._clean()
            if not heap or heap[0][0] > now:
                return fired
            deadline, _, timer = heapq.heappop(heap)
            timer.deadline = None
            timer._seq = -1
            timer.callback(deadline)
            fired += 1
