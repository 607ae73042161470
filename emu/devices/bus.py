"""How devices meet the machine: the I/O port bus, MMIO regions and IRQ lines.

A device is a plain Python object with a small interface:
- ports in: it claims port ranges on the `IoBus` with `io_read(port, size) -> int` and
  `io_write(port, size, value)` handlers (size is 1, 2 or 4 bytes);
- MMIO in: it claims physical ranges with `MmioRegion` handlers of the same shape, by offset;
- IRQ lines out: it holds `IrqLine` objects and calls `raise_()`, `lower()` or `pulse()`;
- time: it arms `emu.clock.Timer`s instead of being polled;
- state as data: `state()` returns plain dicts/lists/ints that `load_state()` takes back.

The compiled CPU loop reaches devices only through exits: on IN/OUT it leaves with the port, size
and value in the state array, Python calls `IoBus.read`/`IoBus.write`, and the loop resumes.
"""

from __future__ import annotations

from collections.abc import Callable

PORT_SPACE = 0x10000  # x86 I/O space: ports 0000h-FFFFh (SDM Vol 1, 18.3)
OPEN_BUS = 0xFFFFFFFF  # what an unclaimed port or unmapped address reads as

ReadFn = Callable[[int, int], int]
WriteFn = Callable[[int, int, int], None]


class IrqLine:
    """One interrupt request wire from a device to an interrupt controller input.

    `sink(line, level)` is the controller's input (e.g. `Pic8259Pair.set_irq`). Edge-triggered inputs
    see the 0→1 transition of `raise_()`; level-triggered ones see the level until `lower()`.
    """

    __slots__ = ("sink", "line", "level")

    def __init__(self, sink: Callable[[int, int], None] | None, line: int):
        self.sink = sink
        self.line = line
        self.level = 0

    def set(self, level: int) -> None:
        level = 1 if level else 0
        if level != self.level:
            self.level = level
            if self.sink is not None:
                self.sink(self.line, level)

    def raise_(self) -> None:
        self.set(1)

    def lower(self) -> None:
        self.set(0)

    def pulse(self) -> None:
        """An edge: raise then lower (what an ISA device does for an edge-triggered IRQ)."""
        self.set(1)
        self.set(0)


class IoBus:
    """The port space: a per-port table of read/write handlers, with open-bus defaults."""

    def __init__(self):
        self._read: list[ReadFn | None] = [None] * PORT_SPACE
        self._write: list[WriteFn | None] = [None] * PORT_SPACE
        self.owner: list[object | None] = [None] * PORT_SPACE
        self.unclaimed_log: Callable[[str], None] | None = None

    def register(self, base: int, count: int, read: ReadFn | None, write: WriteFn | None,
                 owner: object = None) -> None:
        """Claim ports [base, base+count). Claiming a port twice is a wiring bug and raises."""
        for port in range(base, base + count):
            if self.owner[port] is not None and self.owner[port] is not owner:
                raise ValueError(f"port {port:#x} claimed twice ({self.owner[port]!r} and {owner!r})")
            self._read[port] = read
            self._write[port] = write
            self.owner[port] = owner

    def read(self, port: int, size: int) -> int:
        """IN: a handler for the first port answers for the whole access, as on ISA."""
        port &= PORT_SPACE - 1
        fn = self._read[port]
        mask = (1 << (8 * size)) - 1
        if fn is None:
            if self.unclaimed_log:
                self.unclaimed_log(f"in  {port:#06x} size {size}: unclaimed")
            return OPEN_BUS & mask
        return fn(port, size) & mask

    def write(self, port: int, size: int, value: int) -> None:
        port &= PORT_SPACE - 1
        fn = self._write[port]
        if fn is None:
            if self.unclaimed_log:
                self.unclaimed_log(f"out {port:#06x} size {size} value {value:#x}: unclaimed")
            return
        fn(port, size, value & ((1 << (8 * size)) - 1))


class MmioRegion:
    """A physical address range handed to a device; handlers get the offset into the region."""

    __slots__ = ("base", "size", "read", "write", "owner")

    def __init__(self, base: int, size: int, read: ReadFn, write: WriteFn, owner: object = None):
        self.base = base
        self.size = size
        self.read = read
        self.write = write
        self.owner = owner

    def contains(self, addr: int) -> bool:
        return self.base <= addr < self.base + self.size
