"""The TSC follows guest time: on the host clock in host time (HostTsc); under -icount at a rate per
instruction, with TscSync's catch-up."""

from __future__ import annotations

import time

import pytest

from emu.clock import VirtualClock
from emu.cpu import state as S
from emu.cpu.system import read_tsc
from emu.tsc import RATE_WINDOW_NS, HostTsc, TscSync, host_clock, new_tsc, skip_host, tsc_value


class FakeClock:
    def __init__(self):
        self.ns = 0

    def now(self) -> int:
        return self.ns


def fresh():
    st, clock = S.new_state(), FakeClock()
    return st, clock, TscSync(st, clock)


def tsc(st) -> int:
    return tsc_value(int(st[S.ICOUNT]), int(st[S.TSC_OFFSET]), int(st[S.TSC_RATE]))


def run(st, clock, sync, insns, ns, steps):
    """`steps` run slices of `insns` instructions taking `ns` of guest time each; TSC per slice."""
    seen = []
    for _ in range(steps):
        st[S.ICOUNT] += insns
        clock.ns += ns
        sync.sync()
        seen.append(tsc(st))
    return seen


def test_a_slow_guest_tsc_catches_up_with_guest_time_and_never_goes_back():
    st, clock, sync = fresh()
    seen = [tsc(st)] + run(st, clock, sync, 100, 10_000, 100)  # 10 MIPS: slower than 8 ns/insn
    assert seen == sorted(seen)
    assert tsc(st) == clock.ns  # one tick per guest nanosecond


def test_a_fast_guest_tsc_is_not_pulled_back_but_its_rate_comes_down():
    st, clock, sync = fresh()
    seen = run(st, clock, sync, 1_000_000, 1_000_000, 20)  # 1000 MIPS: 8 ticks/insn runs ahead
    assert seen == sorted(seen)
    assert int(st[S.TSC_RATE]) < 8 << S.TSC_RATE_SHIFT  # slowed down once a window was measured
    lead_early = seen[0] - 1_000_000
    seen = run(st, clock, sync, 1_000_000, 1_000_000, 200)
    assert seen == sorted(seen)
    assert abs(tsc(st) - clock.ns) < lead_early  # guest time caught up with the early lead


def test_within_a_slice_the_tsc_counts_at_about_the_measured_rate():
    """A calibration loop that reads the TSC between exits sees it rise smoothly, just below
    one tick per nanosecond (it is caught up at each exit)."""
    st, clock, sync = fresh()
    run(st, clock, sync, 20_000, 1_000_000, 3 * RATE_WINDOW_NS // 1_000_000)  # 50 ns per insn
    before = tsc(st)
    st[S.ICOUNT] += 1000  # 1000 instructions, no exit yet
    rise = tsc(st) - before
    assert 30_000 <= rise <= 50_000  # 3/4 of 50 ticks per instruction


def test_a_guest_tsc_write_moves_the_anchor():
    st, clock, sync = fresh()
    clock.ns = 5_000_000
    st[S.ICOUNT] = 100
    st[S.TSC_OFFSET] = 7 - tsc_value(100, 0, int(st[S.TSC_RATE]))  # WRMSR 10h, 7
    sync.sync()
    assert tsc(st) == 7  # kept as written
    st[S.ICOUNT] += 10
    clock.ns += 1000
    sync.sync()
    assert tsc(st) == 7 + 1000  # then it follows guest time from there


def test_a_halt_does_not_make_the_next_busy_slices_run_the_tsc_ahead_of_guest_time():
    """A window that spans a halt (guest time, no instructions) must not be taken for slow
    instructions: a busy stretch after it would push the TSC seconds ahead and a Linux guest's
    timeouts would fire early."""
    st, clock, sync = fresh()
    run(st, clock, sync, 20_000, 1_000_000, 20)  # busy at 50 ns per instruction
    st[S.ICOUNT] += 10  # HLT, then a 50 ms wait for the timer interrupt
    sync.sync()
    clock.ns += 50_000_000
    sync.idle()
    leads = lead(st, clock, sync, 200_000, 1_000_000, 50)  # then 200 MIPS: a compiled loop
    assert max(leads) <= 10_000_000  # the one slice at the old rate (before the fix: 372 ms)
    assert leads[-1] == 0


def test_a_guest_that_suddenly_runs_faster_leads_guest_time_by_one_slice_at_most():
    st, clock, sync = fresh()
    run(st, clock, sync, 1_000, 1_000_000, 30)  # 1 MIPS: 1000 ticks per instruction
    leads = lead(st, clock, sync, 100_000, 1_000_000, 100)  # then 100 MIPS
    assert max(leads) <= 75_000_000  # the first slice: 100,000 instructions at 3/4 of 1000 ticks
    assert leads[-1] == 0  # and guest time catches up


def lead(st, clock, sync, insns, ns, steps) -> list[int]:
    """run(), but each slice's TSC lead over guest time; it must never go back either."""
    out, last = [], tsc(st)
    for _ in range(steps):
        st[S.ICOUNT] += insns
        clock.ns += ns
        sync.sync()
        assert tsc(st) >= last
        last = tsc(st)
        out.append(last - clock.ns)
    return out


# ---------------------------------------------------------------- host time: RDTSC reads the host clock

needs_host_clock = pytest.mark.skipif(host_clock() is None, reason="no clock_gettime to call (Windows)")
CLOCK_SLACK_NS = 50_000  # clock_gettime and time.monotonic_ns related by one measured difference


def host_fresh():
    st, clock = S.new_state(), VirtualClock()
    return st, clock, new_tsc(st, clock)


def rdtsc(st) -> int:
    return int(read_tsc(st.ctypes.data))


@needs_host_clock
def test_in_host_time_rdtsc_is_guest_nanoseconds_whatever_the_instruction_count():
    """A guest calibrating its TSC against the PIT (SeaBIOS, Linux) sees 1 tick per guest ns, however
    many instructions the loop around the reads retired: here none. Each read, minus TSC_OFFSET,
    lies between the guest times taken just before and just after it."""
    st, clock, tsc_model = host_fresh()
    assert isinstance(tsc_model, HostTsc)
    rdtsc(st)  # (loads the compiled function)
    assert abs(int(st[S.TSC_OFFSET])) < 50_000_000  # it starts at 0 with guest time
    for _ in range(3):
        before = clock.now()
        t = rdtsc(st) - int(st[S.TSC_OFFSET])
        after = clock.now()
        assert before - CLOCK_SLACK_NS <= t <= after + CLOCK_SLACK_NS
        time.sleep(0.01)


@needs_host_clock
def test_host_tsc_pauses_while_pyemu_compiles_and_never_goes_back():
    st, clock, tsc_model = host_fresh()
    h0, before = time.monotonic_ns(), rdtsc(st)
    time.sleep(0.03)  # pyemu compiling: the clock and the TSC both leave it out
    clock.skip_host(30_000_000)
    skip_host(st, 30_000_000)  # (the machine's compile hook calls both)
    after, h1 = rdtsc(st), time.monotonic_ns()
    assert before <= after <= before + (h1 - h0) - 30_000_000 + CLOCK_SLACK_NS
    # a pause whose end moves guest time's origin: the TSC does not jump back
    clock._frozen_ns = clock.now()
    time.sleep(0.01)
    tsc_model.sync()
    frozen = rdtsc(st)
    clock._host_start = time.monotonic_ns() - clock._frozen_ns
    clock._frozen_ns = None
    tsc_model.sync()
    assert rdtsc(st) >= frozen


@needs_host_clock
def test_host_tsc_follows_a_guest_write_and_restarts_at_reset():
    st, clock, tsc_model = host_fresh()
    from emu.cpu.system import wrmsr_value

    wrmsr_value(st.ctypes.data, 0x10, 1 << 40)  # WRMSR IA32_TIME_STAMP_COUNTER
    assert 1 << 40 <= rdtsc(st) < (1 << 40) + 50_000_000
    time.sleep(0.005)
    S.reset_state(st)  # RESET clears the host-clock slots ...
    tsc_model.sync()  # ... and the next exit puts the TSC on the host clock again, from 0
    assert 0 <= rdtsc(st) < 50_000_000


def test_icount_keeps_the_counted_tsc():
    assert isinstance(new_tsc(S.new_state(), VirtualClock(icount=True)), TscSync)
