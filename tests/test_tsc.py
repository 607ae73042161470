"""The TSC follows guest time: RDTSC's instruction-count formula plus TscSync's catch-up."""

from __future__ import annotations

import numpy as np

from emu.cpu import state as S
from emu.cpu.system import TSC_PER_INSN
from emu.tsc import TscSync


class FakeClock:
    def __init__(self):
        self.ns = 0

    def now(self) -> int:
        return self.ns


def tsc(st) -> int:
    return int(st[S.ICOUNT]) * TSC_PER_INSN + int(st[S.TSC_OFFSET])


def test_a_slow_guest_tsc_catches_up_with_guest_time_and_never_goes_back():
    st = np.zeros(S.STATE_SIZE, dtype=np.int64)
    clock = FakeClock()
    sync = TscSync(st, clock)
    seen = [tsc(st)]
    for _ in range(100):  # 10 us of guest time per 100 instructions: 10 MIPS, slower than 125
        st[S.ICOUNT] += 100
        clock.ns += 10_000
        sync.sync()
        seen.append(tsc(st))
    assert seen == sorted(seen)
    assert tsc(st) == clock.ns  # 1 GHz: one tick per guest nanosecond


def test_a_fast_guest_tsc_keeps_counting_instructions():
    st = np.zeros(S.STATE_SIZE, dtype=np.int64)
    clock = FakeClock()
    sync = TscSync(st, clock)
    st[S.ICOUNT] += 1000
    clock.ns += 1000  # 1000 MIPS: the TSC (8000 ticks) is ahead of guest time; it is not pulled back
    sync.sync()
    assert tsc(st) == 8000
    clock.ns += 20_000  # time passes with no instructions (HLT): the TSC meets it again
    sync.sync()
    assert tsc(st) == 21_000


def test_a_guest_tsc_write_moves_the_anchor():
    st = np.zeros(S.STATE_SIZE, dtype=np.int64)
    clock = FakeClock()
    sync = TscSync(st, clock)
    clock.ns = 5_000_000
    st[S.ICOUNT] = 100
    st[S.TSC_OFFSET] = 7 - 100 * TSC_PER_INSN  # WRMSR 10h, 7
    sync.sync()
    assert tsc(st) == 7  # kept as written
    st[S.ICOUNT] += 10
    clock.ns += 1000
    sync.sync()
    assert tsc(st) == 7 + 1000  # then it follows guest time from there
