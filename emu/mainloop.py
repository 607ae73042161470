"""The run loop: the compiled CPU loop, its exits, the virtual clock and the terminal.

Nothing is polled per instruction. Each turn runs the CPU with an instruction budget that ends at
the next timer deadline (and, under host time, after a bounded slice so that terminal input and the
screen stay live), then handles the one exit that came back:

    budget        advance the clock by the instructions retired and fire the due timers
    io_in/io_out  the port bus; an IN's value goes back through IO_VALUE/IO_PENDING
    mmio          the device region's handlers, likewise through MMIO_VALUE/MMIO_PENDING
    irq           the 8259's INTA cycle and delivery of its vector
    hlt           IF=0 and no NMI: the guest has stopped for good (exit 0); else sleep until the
                  next deadline or terminal input (under -icount: jump the clock to the deadline)
    triple fault  reset the machine, or exit 0 with -no-reboot (`pyemu: guest reset (triple fault)...`)
    unimplemented a one-line error, exit 1
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from emu.cpu import state as S
from emu.tsc import HostTsc, TscSync, new_tsc

if TYPE_CHECKING:
    from emu.gdbstub import GdbStub
    from emu.hooks import AddressWatch, TranslationHook
    from emu.monitor import Control

EXIT_TIMEOUT = 124
LIMIT_REACHED = -1  # run() status when `run_limit` instructions have retired (the Python API's run)
HOOK_STOP = -2  # run() status when an address hook (emu.Machine.on_address) asked to stop
HOST_SLICE = 200_000  # instructions between looks at the terminal and the wall clock (host time)
ICOUNT_SLICE = 200_000  # also bounds the wait for terminal input and --timeout
FRONTEND_PERIOD_S = 0.02
IF_FLAG = 1 << 9


class GuestError(Exception):
    """The guest did something pyemu cannot continue from; reported as `pyemu: error: ...`."""


class MainLoop:
    def __init__(self, machine, frontend=None, timeout: float | None = None, no_reboot: bool = False,
                 trace=None):
        self.m = machine
        self.trace: Any = trace  # emu.cpu.tracelog.TraceLog for -d, drained at every exit
        self.log_out: Any = None  # the -D file (the monitor's `log` writes there, else to stderr)
        self.insn_hook: Any = None  # -one-insn-per-tb: runs one instruction per core.run, hook.before() first
        self.watch: AddressWatch | None = None  # emu.Machine.on_address: may shorten each turn
        self.tb_hook: TranslationHook | None = None  # emu.Machine.on_translate: fed at each exit
        self.hook_log_bits = 0  # the LOG_MASK bits those two need, kept set whatever -d/`log` set
        self.frontend = frontend
        self.timeout = timeout
        self.no_reboot = no_reboot
        self.exits = [0] * (len(S.EXIT_REASON_NAMES) + 8)
        self.resets = 0
        self.retired = 0  # guest instructions over all runs (ICOUNT restarts at a reset)
        self.halted_message = False
        self.reset_message = ""  # set when -no-reboot turned a guest reset into the end of the run
        self.wall_start = time.monotonic()
        self.wall_end: float | None = None
        self.gdb: GdbStub | None = None  # emu.gdbstub.GdbStub (-s/-gdb): called before and after each run
        self.control: Control | None = None  # emu.monitor.Control (-monitor/-qmp): polled between runs
        self.start_paused = False  # -S with a monitor: "prelaunch" until `cont`
        self.pause_reason: str | None = None  # "prelaunch", "paused": the guest does not run
        self._paused_at: float | None = None
        self._frozen_clock: int | None = None
        self.reset_cause: str | None = None  # QMP's RESET reason of a reset asked for from outside
        self.shutdown_reason: str | None = None  # QMP's SHUTDOWN reason, set by what ends the run
        self.run_limit: int | None = None  # return LIMIT_REACHED once `retired` reaches this
        self.keep_open = False  # the Python API runs the loop again and again: no goodbyes at return
        self._warm = False
        self.irq_counts = [0] * 16  # interrupts delivered per 8259 input (the monitor's `info irq`)
        self.state_loaded = False  # set by loadvm (emu/snapshot.py): ICOUNT and the TSC moved under the loop

    # -- helpers ---------------------------------------------------------------------------------
    def _unimplemented(self) -> GuestError:
        st, core = self.m.st, self.m.core
        cs = int(st[S.seg_slot(S.CS, S.SEG_SEL)])
        eip = int(st[S.EIP])
        base = int(st[S.seg_slot(S.CS, S.SEG_BASE)])
        try:
            code = core.read_phys((base + eip) & 0xFFFFFFFF, 8)
        except Exception:  # noqa: BLE001
            code = b""
        return GuestError(f"unimplemented instruction at {cs:04x}:{eip:08x} (bytes {code.hex(' ')})")

    def _budget(self) -> int:
        clock = self.m.clock
        slice_ = ICOUNT_SLICE if clock.icount else HOST_SLICE
        nd = clock.next_deadline()
        if nd is None:
            return slice_
        return max(1, min(slice_, clock.ns_to_instructions(nd - clock.now())))

    def _sleep_until_interrupt(self, tsc: TscSync | HostTsc | None = None) -> bool:
        """HLT with IF=1: wait for an interrupt. False when the wall-clock timeout ran out."""
        try:
            return self._wait_for_interrupt()
        finally:
            if tsc is not None:
                tsc.idle()  # the wait measures no instruction rate

    def _wait_for_interrupt(self) -> bool:
        m, clock, fe = self.m, self.m.clock, self.frontend
        st = m.st
        ctl = self.control
        while not st[S.INTR_LINE]:
            if self._timed_out():
                return False
            if ctl is not None:
                ctl.poll()
                if self.pause_reason is not None or self.state_loaded:
                    return True
            if self.gdb is not None:
                self.gdb.idle(0)  # Ctrl-C while halted: gdb is served here, the CPU stays halted
            if m.exit_status is not None or m.reset_requested:
                return True
            nd = clock.next_deadline()
            if clock.icount:
                if fe is not None:
                    fe.poll()
                if st[S.INTR_LINE]:
                    break
                if nd is None:
                    if fe is None or not fe.wait(0.05):
                        if fe is None or fe.input_closed:
                            return True  # nothing can ever wake it: treated as halted
                    continue
                target = -(-nd >> clock.shift)
                if m.icount_sleep:
                    # QEMU's -icount sleep=on: while the guest idles, time follows the host clock
                    # (so a guest waiting for keys does not spin through hours of virtual time)
                    full = delay = (nd - clock.now()) / 1e9
                    if ctl is not None:
                        delay = min(delay, 0.02)  # the monitor is served between short sleeps
                    if self.wall_end is not None:
                        delay = min(delay, max(0.0, self.wall_end - time.monotonic()))
                    t0 = time.monotonic_ns()
                    woke = False
                    if fe is not None:
                        woke = fe.wait(delay)
                    else:
                        time.sleep(max(0.0, delay))
                    if woke or delay < full:  # a short sleep: the clock moves by the time slept
                        waited = time.monotonic_ns() - t0
                        target = min(target, clock.instructions + (waited >> clock.shift))
                if target > clock.instructions:
                    clock.instructions = target
                clock.run_due()
            else:
                delay = 0.05 if nd is None else max(0.0, (nd - clock.now()) / 1e9)
                if self.wall_end is not None:
                    delay = min(delay, max(0.0, self.wall_end - time.monotonic()))
                if self.gdb is not None:
                    delay = min(delay, 0.05)
                if ctl is not None:
                    delay = min(delay, 0.02)
                if fe is not None:
                    fe.wait(delay)
                elif delay > 0:
                    time.sleep(delay)
                clock.run_due()
        return True

    def _timed_out(self) -> bool:
        return self.wall_end is not None and time.monotonic() >= self.wall_end

    # -- run state (the monitor's stop/cont/system_reset/quit) -----------------------------------
    def pause(self, reason: str = "paused", event: bool = True) -> bool:
        """Stop the guest between two runs: guest time and --timeout stand still (as under gdb)."""
        if self.pause_reason is not None:
            return False
        self.pause_reason = reason
        self._paused_at = time.monotonic()
        clock = self.m.clock
        if not clock.icount and clock._frozen_ns is None:
            clock._frozen_ns = clock.now()
            self._frozen_clock = clock._frozen_ns
        if event and self.control is not None:
            self.control.event("STOP")
        return True

    def resume(self) -> bool:
        if self.pause_reason is None:
            return False
        self.pause_reason = None
        paused = time.monotonic() - (self._paused_at or time.monotonic())
        self._paused_at = None
        if self.wall_end is not None:
            self.wall_end += paused
        if self._frozen_clock is not None:
            clock = self.m.clock
            clock._host_start = time.monotonic_ns() - self._frozen_clock
            clock._frozen_ns = None
            self._frozen_clock = None
        if self.control is not None:
            self.control.event("RESUME")
        return True

    def request_reset(self, cause: str) -> None:
        self.reset_cause = cause
        self.m.reset_requested = True

    def request_quit(self, reason: str) -> None:
        self.shutdown_reason = reason
        self.m.request_exit(0)

    def _handle_reset(self) -> bool:
        """A reset was requested: do it (False: -no-reboot, pyemu ends instead)."""
        cause = self.reset_cause or "guest-reset"
        self.reset_cause = None
        if self.no_reboot:
            self.shutdown_reason = self.shutdown_reason or cause
            self.reset_message = f"guest reset ({self.m.reset_cause or 'reset'})"
            return False
        self.resets += 1
        self.m.reset()
        if self.control is not None:
            self.control.event("RESET", {"guest": cause.startswith("guest"), "reason": cause})
        return True

    def _serve_paused(self) -> None:
        """The guest is stopped: serve the monitors (and the terminal's Ctrl-A x) until `cont`."""
        m, fe = self.m, self.frontend
        while self.pause_reason is not None and m.exit_status is None:
            if m.reset_requested and not self._handle_reset():
                m.request_exit(0)
                return
            self._wait_for_monitor(0.05)
            if fe is not None:
                fe.poll()
                if fe.quit_requested:
                    self.request_quit("host-ui")

    def _wait_for_monitor(self, seconds: float) -> None:
        if self.control is not None:
            self.control.wait(seconds)
        else:
            time.sleep(seconds)

    def _hold_halted(self) -> None:
        """Halted for good with a monitor present: the machine stays up for its commands (`info
        registers`, `system_reset`, `quit`), as QEMU's does."""
        m, fe = self.m, self.frontend
        while m.exit_status is None and not m.reset_requested and not self._timed_out() \
                and not self.state_loaded:
            if self.pause_reason is not None:
                self._serve_paused()
                continue
            self._wait_for_monitor(0.05)
            if fe is not None:
                fe.poll()
                if fe.quit_requested:
                    self.request_quit("host-ui")

    # -- the loop --------------------------------------------------------------------------------
    @staticmethod
    def warm_up() -> None:
        """Load (or, on a cold cache, compile) the engine's entry points before the wall clock
        starts, so that `--timeout` and host-time devices do not count numba's compile time."""
        from emu import enginebuild
        from emu.cpu.core import CpuCore

        helper = None
        try:
            with CompileNotice():  # its last line counts the helper's compiles too: it ends first
                if not enginebuild.engine_cached():  # cold: a second process compiles half (enginebuild.py)
                    helper = enginebuild.start_helper()
                if helper is not None:
                    enginebuild.build_main_half_first()
                scratch = CpuCore(1 << 20)
                scratch.deliver_interrupt(0x08)
                scratch.run(0)
        finally:
            if helper is not None:
                enginebuild.finish_helper(helper)

    def run(self) -> int:
        try:
            status = self._run()
            if self.keep_open:
                return status
        except BaseException:
            if self.control is not None and not self.keep_open:
                self.control.finish(self.shutdown_reason or "host-error")
            raise
        if self.gdb is not None:
            self.gdb.finish(status)
        if self.control is not None:
            reason = self.shutdown_reason
            if reason is None:
                reason = "host-signal" if status == EXIT_TIMEOUT else "guest-shutdown"
            self.control.finish(reason)
        return status

    def _run(self) -> int:
        if not self._warm:
            self.warm_up()
            self._warm = True
        self.wall_start = time.monotonic()
        if not self.m.clock.icount and self.retired == 0:
            # guest time starts now, not when the machine was built (before the warm-up)
            self.m.clock._host_start = time.monotonic_ns()
        m = self.m
        core, st, clock, bus, pic = m.core, m.st, m.clock, m.bus, m.pic
        fe = self.frontend
        exits = self.exits
        trace = self.trace
        tsc = new_tsc(st, clock)
        if self.timeout is not None:
            self.wall_end = self.wall_start + self.timeout
        st[S.INTR_LINE] = 1 if pic.pending() else 0
        last_ic = int(st[S.ICOUNT])
        next_fe = time.monotonic() + FRONTEND_PERIOD_S
        gdb = self.gdb
        ctl = self.control
        if ctl is not None:
            if self.start_paused:
                self.pause("prelaunch", event=False)
            ctl.start()
        while True:
            gdb, trace = self.gdb, self.trace  # (the monitor's `gdbserver` and `log` change them)
            if self.pause_reason is not None:
                self._serve_paused()
                last_ic = int(st[S.ICOUNT])
            if self.state_loaded:  # a loadvm between two runs
                self.state_loaded = False
                last_ic = int(st[S.ICOUNT])
                tsc = new_tsc(st, clock)
            if m.exit_status is not None:
                return m.exit_status
            budget = self._budget()
            if self.run_limit is not None:
                if self.retired >= self.run_limit:
                    return LIMIT_REACHED
                budget = max(1, min(budget, self.run_limit - self.retired))
            if gdb is not None:
                budget = gdb.before_run(budget)  # blocks while gdb holds the guest stopped
                if m.exit_status is not None:
                    return m.exit_status
            if self.insn_hook is not None:
                budget = 1
                self.insn_hook.before()
            if self.hook_log_bits:
                st[S.LOG_MASK] |= self.hook_log_bits
                if self.watch is not None:
                    budget = self.watch.before_run(budget)
                    if self.watch.stop_requested:
                        self.watch.stop_requested = False
                        return HOOK_STOP
            reason = core.run(budget)
            if self.insn_hook is not None:
                self.insn_hook.after(reason)
            ic = int(st[S.ICOUNT])
            clock.advance_instructions(ic - last_ic)
            tsc.sync()
            self.retired += ic - last_ic
            last_ic = ic
            exits[reason] += 1
            if self.tb_hook is not None:
                self.tb_hook.collect()
                if trace is None:
                    st[S.LOG_POS] = 0
            if trace is not None:
                trace.drain()
            if self.tb_hook is not None:
                self.tb_hook.report()
            if reason == S.EXIT_IO_OUT:
                bus.write(int(st[S.EXIT_ARG0]), int(st[S.EXIT_ARG1]), int(st[S.EXIT_ARG2]))
            elif reason == S.EXIT_IO_IN:
                st[S.IO_VALUE] = bus.read(int(st[S.EXIT_ARG0]), int(st[S.EXIT_ARG1]))
                st[S.IO_PENDING] = 1
            elif reason == S.EXIT_IRQ:
                if pic.pending():
                    vector = pic.acknowledge()
                    core.deliver_interrupt(vector)
                    base = pic.master.vector_base
                    if base <= vector < base + 8:
                        self.irq_counts[vector - base] += 1
                    elif pic.slave.vector_base <= vector < pic.slave.vector_base + 8:
                        self.irq_counts[8 + vector - pic.slave.vector_base] += 1
            elif reason == S.EXIT_HLT:
                if not (int(st[S.EFLAGS]) & IF_FLAG) and not st[S.NMI_PENDING]:
                    while gdb is not None and gdb.attached and m.exit_status is None \
                            and not self._timed_out():
                        gdb.idle(0.05)  # halted for good: gdb may still stop it and look (as QEMU)
                    if ctl is not None and ctl.holds_machine:
                        self._hold_halted()
                    if m.exit_status is not None:
                        return m.exit_status
                    if self._timed_out():
                        return EXIT_TIMEOUT
                    if not m.reset_requested and not self.state_loaded:
                        self.halted_message = True
                        return 0
                elif not self._sleep_until_interrupt(tsc):
                    return EXIT_TIMEOUT
                elif not st[S.INTR_LINE] and m.exit_status is None and not m.reset_requested \
                        and self.pause_reason is None and not self.state_loaded:
                    if ctl is None or not ctl.holds_machine:
                        self.halted_message = True
                        return 0
                    self._hold_halted()
                    if m.exit_status is None and not m.reset_requested and not self.state_loaded:
                        return EXIT_TIMEOUT
            elif reason == S.EXIT_MMIO_READ:
                st[S.MMIO_VALUE] = core.phys.exit_read(st)
                st[S.MMIO_PENDING] = 1
            elif reason == S.EXIT_MMIO_WRITE:
                core.phys.exit_write(st)
            elif reason == S.EXIT_TRIPLE_FAULT:
                m.request_reset("triple fault")
            elif reason == S.EXIT_RESET:
                m.request_reset()
            elif reason == S.EXIT_UNIMPLEMENTED:
                raise self._unimplemented()
            if m.exit_status is not None:
                return m.exit_status
            if m.reset_requested:
                if not self._handle_reset():
                    return 0
                last_ic = int(st[S.ICOUNT])
            clock.run_due()
            if gdb is not None:
                gdb.after_run()
            now = time.monotonic()
            if ctl is not None:
                ctl.poll_due(now)
            if now >= next_fe:
                next_fe = now + FRONTEND_PERIOD_S
                if fe is not None:
                    fe.poll()
                    if fe.quit_requested:
                        self.shutdown_reason = self.shutdown_reason or "host-ui"
                        return 0
                if self.wall_end is not None and now >= self.wall_end:
                    return EXIT_TIMEOUT

    # -- statistics ------------------------------------------------------------------------------
    def stats(self) -> dict:
        d = dict(self.m.core.stats_dict())
        wall = max(1e-9, time.monotonic() - self.wall_start)
        insns = self.retired
        d["guest_instructions"] = insns
        d["wall_seconds"] = round(wall, 3)
        d["mips"] = round(insns / wall / 1e6, 3)
        d["resets"] = self.resets
        for i, name in enumerate(S.EXIT_REASON_NAMES):
            if name != "none":
                d[f"exits_{name}"] = self.exits[i]
        lookups = d.get("lookups", 0)
        if lookups:
            # every block entry is a lookup; chained ones are hits that skipped the table
            d["lookup_hit_rate"] = round(1 - d.get("lookup_misses", 0) / lookups, 4)
        tlb = d.get("tlb_hits", 0) + d.get("tlb_misses", 0)
        if tlb:
            d["tlb_hit_rate"] = round(d.get("tlb_hits", 0) / tlb, 4)
        if insns:
            d["compiled_share"] = round(d.get("compiled_insns", 0) / insns, 4)
        return d


class CompileNotice:
    """Say so on stderr when loading the engine takes long: numba compiles it after an install or an
    update (minutes, once; the cache makes later starts take well under a second). Nothing is
    printed for a warm start. On a terminal the line counts the seconds as it goes."""

    QUIET_SECONDS = 2.0  # a warm start loads in well under this
    LOG_SECONDS = 10.0  # not a terminal (a log file): one progress line this often
    TEXT = "pyemu: compiling the engine for this machine (once after an install or update, about a minute)"

    def __init__(self, out=None):
        import sys
        import threading

        self.out = out or sys.stderr
        self.done = threading.Event()
        self.compiled = 0  # engine functions numba has compiled so far (see _count_compiles)
        self.total = 0
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.shown = False
        self.t0 = 0.0

    def _watch(self) -> None:
        if self.done.wait(self.QUIET_SECONDS):
            return
        tty = getattr(self.out, "isatty", lambda: False)()
        self.shown = True
        try:
            self.out.write(self.TEXT + ("" if tty else "...\n"))
            self.out.flush()
            while not self.done.wait(1.0 if tty else self.LOG_SECONDS):
                line = f"{self.TEXT}: {self.progress()}"
                self.out.write(f"\r{line}" if tty else f"{line}\n")
                self.out.flush()
        except (OSError, ValueError):
            pass

    def progress(self) -> str:
        """`41 s, 57 of ~190 functions`: the compile so far, against the engine's function count."""
        text = f"{time.monotonic() - self.t0:.0f} s"
        if self.total:
            from emu.enginebuild import helper_compiles

            done = self.compiled + helper_compiles()
            text += f", {min(done, self.total)} of ~{self.total} functions"
        return text

    def _count_compiles(self) -> None:
        """Count numba's compiles in this process (its `numba:compile` event) and the engine's functions
        (the total): every jitted function in `emu`."""
        import sys

        try:
            from numba.core.dispatcher import Dispatcher
        except ImportError:
            return
        from emu.enginebuild import on_compile
        from emu.numbaload import is_engine_function

        def one_more() -> None:
            self.compiled += 1

        self.listener = on_compile(one_more)
        seen = set()
        for name, module in list(sys.modules.items()):
            if not name.startswith("emu.") or module is None:
                continue
            for value in vars(module).values():
                if isinstance(value, Dispatcher) and is_engine_function(value):
                    seen.add(id(value))
        self.total = len(seen)

    def __enter__(self):
        self.t0 = time.monotonic()
        self.listener = None
        self._count_compiles()
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.thread.join()
        if self.listener is not None:
            from numba.core import event

            event.unregister("numba:compile", self.listener)
        if self.shown:
            try:
                tty = getattr(self.out, "isatty", lambda: False)()
                self.out.write(("\r" if tty else "") + f"{self.TEXT}: done in {self.progress()}\n")
                self.out.flush()
            except (OSError, ValueError):
                pass
