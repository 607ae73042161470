"""Intel 8254 programmable interval timer (three counters at 40h-42h, control word at 43h) and the
PC/AT system control port B at 61h (counter 2 gate, speaker data, refresh toggle, OUT2).

References: Intel 8254 datasheet (order 231164): "Control word format", "Read operations"
(counter latch command, read-back command, status byte), "Mode definitions" (modes 0-5), "Gate"
table; IBM PC/AT Technical Reference, "System control port B" (61h).

Counters are not stepped. Each loaded counter remembers the virtual time it started (`start_ns`)
and its count and OUT are pure functions of the ticks elapsed since, at `PIT_HZ`. A counter whose
OUT is wired (counter 0 to IRQ0) arms a Timer on the virtual clock for its next OUT transition.

Simplifications (documented): a count takes effect on the write rather than on the next CLK
falling edge; a new count written in mode 2 or 3 restarts the period at once rather than at the
end of the current one.
"""

from __future__ import annotations

from emu.clock import NS_PER_SECOND, VirtualClock
from emu.devices.bus import IoBus, IrqLine

PIT_HZ = 1_193_182  # the PC's 14.31818 MHz crystal divided by 12
COUNTER_PORT_BASE = 0x40
CONTROL_PORT = 0x43
PORT_B = 0x61
NUM_COUNTERS = 3
BINARY_MODULUS = 0x10000  # a count of 0 means 2**16 in binary ...
BCD_MODULUS = 10000  # ... and 10**4 in BCD

# Control word: SC1-SC0 (7-6), RW1-RW0 (5-4), M2-M0 (3-1), BCD (0).
CW_SC_SHIFT = 6
CW_RW_SHIFT = 4
CW_MODE_SHIFT = 1
CW_BCD = 0x01
SC_READ_BACK = 3
RW_LATCH = 0  # counter latch command
RW_LSB, RW_MSB, RW_LSB_MSB = 1, 2, 3
# Read-back command: COUNT (5) and STATUS (4) are active low; CNT2-CNT0 in bits 3-1.
RB_NOT_COUNT = 0x20
RB_NOT_STATUS = 0x10
RB_COUNTER_SHIFT = 1
# Status byte.
STATUS_OUTPUT = 0x80
STATUS_NULL_COUNT = 0x40

# Port 61h (system control port B).
PORTB_GATE2 = 0x01
PORTB_SPEAKER_DATA = 0x02
PORTB_WRITABLE = 0x0F  # gate 2, speaker data, parity and channel check disables
PORTB_REFRESH = 0x10  # toggles with each DRAM refresh request
PORTB_OUT2 = 0x20
REFRESH_PERIOD_NS = 15_085  # the AT's refresh request interval (15.085 us)

# Late timer callbacks evaluate OUT at the missed deadline (so short pulses are not lost) unless
# they are later than this, when they skip to the present.
CATCHUP_LIMIT_NS = 10_000_000


def to_bcd(value: int) -> int:
    return int(str(value % BCD_MODULUS), 16)


def from_bcd(value: int) -> int:
    return sum(((value >> (4 * i)) & 0xF) * 10**i for i in range(4))


def ticks_to_ns(ticks: int) -> int:
    """The first virtual nanosecond at which `ticks` whole ticks have elapsed."""
    return -(-ticks * NS_PER_SECOND // PIT_HZ)


def ns_to_ticks(ns: int) -> int:
    return ns * PIT_HZ // NS_PER_SECOND


class PitCounter:
    """One 8254 counter. `out_line`, if given, follows OUT through virtual-clock timers."""

    _FIELDS = ("mode_bits", "mode", "bcd", "rw", "reload", "next_reload", "gate", "start_ns",
               "frozen", "waiting", "triggered", "hold", "out_idle", "latch", "status_latch",
               "read_msb", "write_msb", "write_lsb", "load_ns")

    def __init__(self, clock: VirtualClock, index: int, out_line: IrqLine | None = None, gate: bool = True):
        self.clock = clock
        self.index = index
        self.out_line = out_line
        self.timer = clock.timer(self._on_timer, f"pit{index}") if out_line is not None else None
        self.gate = gate
        self.reset()

    def reset(self) -> None:
        self.mode_bits = 0
        self.mode = 0
        self.bcd = False
        self.rw = RW_LSB_MSB
        self.reload = BINARY_MODULUS  # active initial count (1..65536)
        self.next_reload = BINARY_MODULUS  # last count written (modes 1/5 pick it up on trigger)
        self.start_ns = 0
        self.frozen: int | None = None  # ticks elapsed while paused, else None
        self.waiting = True  # no count loaded since the control word
        self.triggered = False  # modes 1/5: gate edge seen since the count was written
        self.hold = 0  # what the counting element holds while not counting
        self.out_idle = False  # OUT while waiting: low in mode 0, high otherwise
        self.latch: list[int] = []
        self.status_latch: int | None = None
        self.read_msb = False
        self.write_msb = False
        self.write_lsb = 0
        self.load_ns = -1
        self._sync(self.clock.now())

    # -- the counting model ----------------------------------------------------------------
    @property
    def modulus(self) -> int:
        return BCD_MODULUS if self.bcd else BINARY_MODULUS

    def _counting(self) -> bool:
        return not self.waiting and (self.mode not in (1, 5) or self.triggered)

    def _ticks(self, now: int) -> int:
        if self.frozen is not None:
            return self.frozen
        return ns_to_ticks(now - self.start_ns)

    def _count_at(self, t: int) -> int:
        n = self.reload
        if self.mode == 2:
            return n - t % n
        if self.mode == 3:
            half = (n + 1) // 2
            p = t % n
            return (n & ~1) - 2 * (p if p < half else p - half)
        return (n - t) % self.modulus

    def _out_at(self, t: int) -> bool:
        n = self.reload
        mode = self.mode
        if mode in (0, 1):
            return t >= n
        if mode in (4, 5):
            return t != n
        if mode == 2:
            return n < 2 or t % n != n - 1
        return t % n < (n + 1) // 2  # mode 3

    def _next_transition(self, t: int) -> int | None:
        """The first tick after `t` at which OUT changes, or None."""
        n = self.reload
        mode = self.mode
        if mode in (0, 1):
            return n if t < n else None
        if mode in (4, 5):
            return n if t < n else (n + 1 if t == n else None)
        if n < 2:
            return None
        base = t - t % n
        edge = n - 1 if mode == 2 else (n + 1) // 2
        return base + edge if t % n < edge else base + n

    def count(self, now: int) -> int:
        if not self._counting():
            return self.hold
        return self._count_at(self._ticks(now)) % self.modulus

    def out(self, now: int) -> bool:
        if not self._counting():
            return self.out_idle
        if self.mode in (2, 3) and not self.gate:
            return True  # gate low forces OUT high in modes 2 and 3
        return self._out_at(self._ticks(now))

    def null_count(self, now: int) -> bool:
        """Set from a control word or count write until the count reaches the counting element."""
        if self.waiting or (self.mode in (1, 5) and not self.triggered):
            return True
        return ns_to_ticks(now - self.load_ns) == 0

    # -- OUT and its timer -----------------------------------------------------------------
    def _sync(self, now: int) -> None:
        if self.out_line is None:
            return
        self.out_line.set(self.out(now))
        nxt = None
        if self._counting() and self.frozen is None:
            nxt = self._next_transition(self._ticks(now))
        if nxt is None:
            self.timer.cancel()
        else:
            self.timer.arm(self.start_ns + ticks_to_ns(nxt))

    def _on_timer(self, deadline: int) -> None:
        now = self.clock.now()
        self._sync(deadline if now - deadline < CATCHUP_LIMIT_NS else now)

    def _start(self, now: int) -> None:
        self.start_ns = now
        self.frozen = None

    # -- programming -----------------------------------------------------------------------
    def control(self, rw: int, mode_bits: int, bcd: bool) -> None:
        """A control word: all control logic resets and OUT goes to its initial state."""
        now = self.clock.now()
        self.hold = self.count(now)
        self.rw = rw
        self.mode_bits = mode_bits
        self.mode = mode_bits & 3 if mode_bits & 2 else mode_bits  # 110b, 111b alias modes 2, 3
        self.bcd = bcd
        self.waiting = True
        self.triggered = False
        self.out_idle = self.mode != 0
        self.latch = []
        self.status_latch = None
        self.read_msb = False
        self.write_msb = False
        self._sync(now)

    def latch_count(self) -> None:
        """Counter latch command; a second latch before the first is read is ignored."""
        if self.latch:
            return
        value = self.count(self.clock.now())
        if self.bcd:
            value = to_bcd(value)
        lsb, msb = value & 0xFF, (value >> 8) & 0xFF
        self.latch = {RW_LSB: [lsb], RW_MSB: [msb], RW_LSB_MSB: [lsb, msb]}[self.rw]

    def latch_status(self, now: int) -> None:
        if self.status_latch is not None:
            return
        status = (self.rw << CW_RW_SHIFT) | (self.mode_bits << CW_MODE_SHIFT) | int(self.bcd)
        if self.out(now):
            status |= STATUS_OUTPUT
        if self.null_count(now):
            status |= STATUS_NULL_COUNT
        self.status_latch = status

    def write(self, value: int) -> None:
        now = self.clock.now()
        if self.rw == RW_LSB_MSB and not self.write_msb:
            self.write_lsb = value
            self.write_msb = True
            if self.mode == 0:  # writing the first byte stops the count and drives OUT low
                self.hold = self.count(now)
                self.waiting = True
                self.out_idle = False
                self._sync(now)
            return
        if self.rw == RW_LSB:
            raw = value
        elif self.rw == RW_MSB:
            raw = value << 8
        else:
            raw = self.write_lsb | (value << 8)
            self.write_msb = False
        count = from_bcd(raw) if self.bcd else raw
        self.next_reload = count or self.modulus
        self.load_ns = now
        if self.mode in (1, 5) and not self.waiting:
            return  # takes effect on the next trigger
        if self.mode in (1, 5):
            self.waiting = False
            self.triggered = False
            self.hold = self.count(now)
        else:
            self.reload = self.next_reload
            self.waiting = False
            self._start(now)
            if not self.gate:
                self.frozen = 0  # modes 0/4 wait for the gate; 2/3 hold OUT high until it rises
        self._sync(now)

    def read(self) -> int:
        if self.status_latch is not None:
            value, self.status_latch = self.status_latch, None
            return value
        if self.latch:
            return self.latch.pop(0)
        value = self.count(self.clock.now())
        if self.bcd:
            value = to_bcd(value)
        if self.rw == RW_LSB:
            return value & 0xFF
        if self.rw == RW_MSB:
            return (value >> 8) & 0xFF
        self.read_msb = not self.read_msb
        return (value >> 8) & 0xFF if not self.read_msb else value & 0xFF

    def set_gate(self, gate: bool) -> None:
        """The gate table: modes 0/4 pause while low; 2/3 stop (OUT high) and reload on the rising
        edge; 1/5 trigger (load and start) on the rising edge."""
        gate = bool(gate)
        if gate == self.gate:
            return
        now = self.clock.now()
        if not self.waiting:
            if self.mode in (0, 4):
                if gate:
                    if self.frozen is not None:
                        self.start_ns = now - ticks_to_ns(self.frozen)
                        self.frozen = None
                else:
                    self.frozen = self._ticks(now)
            elif self.mode in (2, 3):
                if gate:
                    self._start(now)
                else:
                    self.frozen = self._ticks(now)
            elif gate:  # modes 1 and 5
                self.reload = self.next_reload
                self.triggered = True
                self._start(now)
        self.gate = gate
        self._sync(now)

    # -- state -----------------------------------------------------------------------------
    def state(self) -> dict:
        out = {}
        for name in self._FIELDS:
            value = getattr(self, name)
            out[name] = list(value) if isinstance(value, list) else (
                value if value is None else int(value))
        return out

    def load_state(self, state: dict) -> None:
        for name in self._FIELDS:
            value = state[name]
            current = getattr(self, name)
            if isinstance(current, bool):
                value = bool(value)
            elif isinstance(value, list):
                value = list(value)
            setattr(self, name, value)
        self._sync(self.clock.now())


class Pit8254:
    """The PC's 8254: counter 0 OUT drives IRQ0, counter 1 is the (unused) refresh counter,
    counter 2's gate and OUT live on port 61h for the speaker and calibration loops."""

    def __init__(self, clock: VirtualClock, irq0: IrqLine | None = None):
        self.clock = clock
        self.counters = [
            PitCounter(clock, 0, irq0),
            PitCounter(clock, 1),
            PitCounter(clock, 2, gate=False),
        ]
        self.port_b = 0

    def attach(self, bus: IoBus) -> None:
        bus.register(COUNTER_PORT_BASE, NUM_COUNTERS + 1, self._io_read, self._io_write, owner=self)
        bus.register(PORT_B, 1, self._port_b_read, self._port_b_write, owner=self)

    def reset(self) -> None:
        self.port_b = 0
        for counter in self.counters:
            counter.reset()
        self.counters[2].set_gate(False)

    # -- 40h-43h ---------------------------------------------------------------------------
    def _io_read(self, port: int, size: int) -> int:
        if port == CONTROL_PORT:
            return 0xFF  # the control word register is write-only
        return self.counters[port - COUNTER_PORT_BASE].read()

    def _io_write(self, port: int, size: int, value: int) -> None:
        value &= 0xFF
        if port != CONTROL_PORT:
            self.counters[port - COUNTER_PORT_BASE].write(value)
            return
        select = value >> CW_SC_SHIFT
        rw = (value >> CW_RW_SHIFT) & 3
        if select == SC_READ_BACK:
            now = self.clock.now()
            for i, counter in enumerate(self.counters):
                if value & (1 << (RB_COUNTER_SHIFT + i)):
                    if not value & RB_NOT_STATUS:
                        counter.latch_status(now)
                    if not value & RB_NOT_COUNT:
                        counter.latch_count()
            return
        counter = self.counters[select]
        if rw == RW_LATCH:
            counter.latch_count()
        else:
            counter.control(rw, (value >> CW_MODE_SHIFT) & 7, bool(value & CW_BCD))

    # -- 61h -------------------------------------------------------------------------------
    def _port_b_read(self, port: int, size: int) -> int:
        now = self.clock.now()
        value = self.port_b & PORTB_WRITABLE
        if (now // REFRESH_PERIOD_NS) & 1:
            value |= PORTB_REFRESH
        if self.counters[2].out(now):
            value |= PORTB_OUT2
        return value

    def _port_b_write(self, port: int, size: int, value: int) -> None:
        self.port_b = value & PORTB_WRITABLE
        self.counters[2].set_gate(bool(value & PORTB_GATE2))

    @property
    def speaker_on(self) -> bool:
        return (self.port_b & (PORTB_GATE2 | PORTB_SPEAKER_DATA)) == PORTB_GATE2 | PORTB_SPEAKER_DATA

    # -- state -----------------------------------------------------------------------------
    def state(self) -> dict:
        return {"counters": [c.state() for c in self.counters], "port_b": self.port_b}

    def load_state(self, state: dict) -> None:
        self.port_b = int(state["port_b"])
        for counter, saved in zip(self.counters, state["counters"], strict=True):
            counter.load_state(saved)
