"""Two cascaded Intel 8259A programmable interrupt controllers, as wired in every PC/AT.

References: Intel 8259A datasheet (order 231468), sections "Interrupt sequence", "Programming the
8259A" (ICW1-ICW4, OCW1-OCW3), "The special mask mode", "Poll command", "Edge and level triggered
modes"; Intel PIIX3 datasheet 82371SB section 2.5 for the ELCR registers at 4D0h/4D1h.

Wiring: the master answers 20h/21h with IRQ0-7, the slave answers A0h/A1h with IRQ8-15 and its INT
output drives the master's IR2. `Pic8259Pair.pending()` is the master's INT pin (the CPU's INTR),
`acknowledge()` is the two-pulse INTA cycle that returns the vector.

Emulation choices (documented, not datasheet-exact):
- An edge-triggered request is latched in IRR on the rising edge and stays there until it is
  acknowledged, even if the line drops first: ISA devices pulse their lines (`IrqLine.pulse`). A
  level-triggered request follows the line.
- The cascade input (master IR2) follows the slave's INT output as a level.
"""

from __future__ import annotations

from collections.abc import Callable

from emu.devices.bus import IoBus, IrqLine

MASTER_BASE = 0x20
SLAVE_BASE = 0xA0
ELCR_BASE = 0x4D0  # ELCR1 (master) at 4D0h, ELCR2 (slave) at 4D1h (PIIX3 2.5.1)
CASCADE_IRQ = 2  # the slave's INT drives the master's IR2
SPURIOUS_IRQ = 7  # an INTA with no request left answers IR7 (datasheet: "Interrupt sequence")
IRQ_LINES = 16

# ELCR bits that may be set: IRQ0, 1, 2, 8 and 13 are always edge (PIIX3 2.5.1, 2.5.2).
ELCR_MASK_MASTER = 0xF8
ELCR_MASK_SLAVE = 0xDE

# ICW1 (written to the command port with D4 = 1).
ICW1_SELECT = 0x10
ICW1_LTIM = 0x08  # level-triggered mode for all inputs
ICW1_SNGL = 0x02  # single 8259, no ICW3
ICW1_IC4 = 0x01  # ICW4 follows
# ICW4.
ICW4_SFNM = 0x10  # special fully nested mode
ICW4_AEOI = 0x02  # automatic end of interrupt
ICW2_VECTOR_MASK = 0xF8  # T7-T3; the low three bits are the IR number
# OCW3 (command port, D4 = 0, D3 = 1).
OCW3_SELECT = 0x08
OCW3_ESMM = 0x40
OCW3_SMM = 0x20
OCW3_POLL = 0x04
OCW3_RR = 0x02
OCW3_RIS = 0x01
# OCW2 (command port, D4 = 0, D3 = 0): R, SL, EOI in D7-D5, level in D2-D0.
OCW2_LEVEL_MASK = 0x07
OCW2_NONSPECIFIC_EOI = 0x20
OCW2_SPECIFIC_EOI = 0x60
OCW2_ROTATE_NONSPECIFIC_EOI = 0xA0
OCW2_SET_ROTATE_AEOI = 0x80
OCW2_CLEAR_ROTATE_AEOI = 0x00
OCW2_ROTATE_SPECIFIC_EOI = 0xE0
OCW2_SET_PRIORITY = 0xC0
OCW2_NOP = 0x40
POLL_INTERRUPT = 0x80  # poll word: I bit, W2-W0 = level

# Initialisation state machine: which ICW the data port expects next.
INIT_READY, INIT_ICW2, INIT_ICW3, INIT_ICW4 = 0, 1, 2, 3


class Pic8259:
    """One 8259A. Inputs via `set_input`; `irq_output()` is the INT pin's request, or -1."""

    _FIELDS = ("irr", "isr", "imr", "lines", "elcr", "lowest", "vector_base", "icw3", "init_state",
               "icw4_needed", "single", "ltim", "auto_eoi", "rotate_aeoi", "sfnm", "special_mask",
               "read_isr", "poll")

    def __init__(self, is_master: bool, elcr_mask: int):
        self.is_master = is_master
        self.elcr_mask = elcr_mask
        self.elcr = 0
        self.lines = 0
        self.reset()

    def reset(self) -> None:
        self.irr = 0
        self.isr = 0
        self.imr = 0
        self.lowest = 7  # the IR with the lowest priority; rotation moves it
        self.vector_base = 0
        self.icw3 = 0
        self.init_state = INIT_READY
        self.icw4_needed = False
        self.single = False
        self.ltim = False
        self.auto_eoi = False
        self.rotate_aeoi = False
        self.sfnm = False
        self.special_mask = False
        self.read_isr = False
        self.poll = False
        self.irr = self.lines & self._level_mask()

    # -- inputs ----------------------------------------------------------------------------
    def _level_mask(self) -> int:
        """Inputs that are level-sensitive: all under ICW1.LTIM, else those set in the ELCR."""
        mask = 0xFF if self.ltim else self.elcr
        if self.is_master:
            mask |= 1 << CASCADE_IRQ
        return mask

    def set_input(self, irq: int, level: int) -> None:
        bit = 1 << irq
        if level:
            if not self.lines & bit or self._level_mask() & bit:
                self.irr |= bit
            self.lines |= bit
        else:
            self.lines &= ~bit
            if self._level_mask() & bit:
                self.irr &= ~bit

    # -- priority --------------------------------------------------------------------------
    def _highest(self, mask: int) -> int:
        """The highest-priority IR set in `mask` under the current rotation, or -1."""
        if not mask:
            return -1
        for i in range(1, 9):
            irq = (self.lowest + i) & 7
            if mask & (1 << irq):
                return irq
        return -1

    def _rank(self, irq: int) -> int:
        """0 = highest priority."""
        return (irq - self.lowest - 1) & 7

    def irq_output(self) -> int:
        """The IR that INT is requesting now, or -1 (fully nested: only if above every in-service level).

        Special mask mode (datasheet "Special mask mode"): a masked in-service level does not
        inhibit lower levels. Special fully nested mode: a master does not let an in-service
        cascade level block a new request from the same slave.
        """
        req = self._highest(self.irr & ~self.imr)
        if req < 0:
            return -1
        in_service = self.isr
        if self.special_mask:
            in_service &= ~self.imr
        cur = self._highest(in_service)
        if cur >= 0:
            if self._rank(req) > self._rank(cur):
                return -1
            if req == cur and not (self.sfnm and self.is_master and req == CASCADE_IRQ):
                return -1
        return req

    def intack(self, irq: int) -> None:
        """The first INTA pulse for `irq`: set ISR (unless AEOI), clear an edge request."""
        bit = 1 << irq
        if self.auto_eoi:
            if self.rotate_aeoi:
                self.lowest = irq
        else:
            self.isr |= bit
        if not self._level_mask() & bit:
            self.irr &= ~bit

    # -- programming -----------------------------------------------------------------------
    def write_command(self, value: int) -> None:
        if value & ICW1_SELECT:
            self._icw1(value)
        elif value & OCW3_SELECT:
            self._ocw3(value)
        else:
            self._ocw2(value)

    def _icw1(self, value: int) -> None:
        """ICW1 starts initialisation (datasheet "Initialization command words"): the edge sense
        latch is reset, IMR cleared, IR7 gets the lowest priority, special mask mode cleared and
        status read set to IRR; without IC4 every ICW4 function is zero."""
        self.ltim = bool(value & ICW1_LTIM)
        self.single = bool(value & ICW1_SNGL)
        self.icw4_needed = bool(value & ICW1_IC4)
        self.imr = 0
        self.isr = 0
        self.lowest = 7
        self.special_mask = False
        self.read_isr = False
        self.poll = False
        self.auto_eoi = False
        self.rotate_aeoi = False
        self.sfnm = False
        # A line already high must go low and high again before it requests (edge sense reset).
        self.irr = self.lines & self._level_mask()
        self.init_state = INIT_ICW2

    def _ocw2(self, value: int) -> None:
        command = value & ~OCW2_LEVEL_MASK
        level = value & OCW2_LEVEL_MASK
        if command in (OCW2_NONSPECIFIC_EOI, OCW2_ROTATE_NONSPECIFIC_EOI):
            in_service = self.isr & ~self.imr if self.special_mask else self.isr
            irq = self._highest(in_service)
            if irq >= 0:
                self.isr &= ~(1 << irq)
                if command == OCW2_ROTATE_NONSPECIFIC_EOI:
                    self.lowest = irq
        elif command in (OCW2_SPECIFIC_EOI, OCW2_ROTATE_SPECIFIC_EOI):
            self.isr &= ~(1 << level)
            if command == OCW2_ROTATE_SPECIFIC_EOI:
                self.lowest = level
        elif command == OCW2_SET_PRIORITY:
            self.lowest = level
        elif command == OCW2_SET_ROTATE_AEOI:
            self.rotate_aeoi = True
        elif command == OCW2_CLEAR_ROTATE_AEOI:
            self.rotate_aeoi = False
        # OCW2_NOP: nothing

    def _ocw3(self, value: int) -> None:
        if value & OCW3_ESMM:
            self.special_mask = bool(value & OCW3_SMM)
        if value & OCW3_POLL:
            self.poll = True
        if value & OCW3_RR:
            self.read_isr = bool(value & OCW3_RIS)

    def write_data(self, value: int) -> None:
        state = self.init_state
        if state == INIT_READY:
            self.imr = value  # OCW1
        elif state == INIT_ICW2:
            self.vector_base = value & ICW2_VECTOR_MASK
            if not self.single:
                self.init_state = INIT_ICW3
            else:
                self.init_state = INIT_ICW4 if self.icw4_needed else INIT_READY
        elif state == INIT_ICW3:
            self.icw3 = value
            self.init_state = INIT_ICW4 if self.icw4_needed else INIT_READY
        else:  # ICW4
            self.auto_eoi = bool(value & ICW4_AEOI)
            self.sfnm = bool(value & ICW4_SFNM)
            self.init_state = INIT_READY

    def read_status(self) -> int:
        return self.isr if self.read_isr else self.irr

    def state(self) -> dict:
        return {name: int(getattr(self, name)) for name in self._FIELDS}

    def load_state(self, state: dict) -> None:
        for name in self._FIELDS:
            value = state[name]
            setattr(self, name, bool(value) if isinstance(getattr(self, name), bool) else int(value))


class Pic8259Pair:
    """Master and slave 8259A plus the PIIX ELCR, as a PC/AT wires them.

    `set_irq(line, level)` is the input for IRQ0-15 (the sink of `IrqLine`s); `pending()` is INTR;
    `acknowledge()` runs the INTA cycle and returns the vector; `on_intr_change(level)` is called
    whenever INTR changes so the CPU loop can leave at the next block boundary.
    """

    def __init__(self, on_intr_change: Callable[[bool], None] | None = None):
        self.master = Pic8259(True, ELCR_MASK_MASTER)
        self.slave = Pic8259(False, ELCR_MASK_SLAVE)
        self.on_intr_change = on_intr_change
        self.intr = False

    def irq_line(self, line: int) -> IrqLine:
        """A wire from a device into IRQ `line`."""
        return IrqLine(self.set_irq, line)

    def attach(self, bus: IoBus) -> None:
        bus.register(MASTER_BASE, 2, self._io_read, self._io_write, owner=self)
        bus.register(SLAVE_BASE, 2, self._io_read, self._io_write, owner=self)
        bus.register(ELCR_BASE, 2, self._elcr_read, self._elcr_write, owner=self)

    def reset(self) -> None:
        self.master.elcr = self.slave.elcr = 0
        self.master.reset()
        self.slave.reset()
        self._update()

    # -- the interrupt interface -----------------------------------------------------------
    def set_irq(self, line: int, level: int) -> None:
        if line < 8:
            self.master.set_input(line, level)
        else:
            self.slave.set_input(line - 8, level)
        self._update()

    def pending(self) -> bool:
        return self.intr

    def acknowledge(self) -> int:
        """The INTA cycle. With no request left, answers base+7 with no ISR bit set (spurious
        IRQ7); a cascade acknowledge with nothing left on the slave answers the slave's base+7
        (spurious IRQ15) with the master's ISR bit for IR2 set."""
        master, slave = self.master, self.slave
        irq = master.irq_output()
        if irq < 0:
            vector = master.vector_base + SPURIOUS_IRQ
        else:
            master.intack(irq)
            if irq == CASCADE_IRQ and not master.single:
                sirq = slave.irq_output()
                if sirq < 0:
                    vector = slave.vector_base + SPURIOUS_IRQ
                else:
                    slave.intack(sirq)
                    vector = slave.vector_base + sirq
            else:
                vector = master.vector_base + irq
        self._update()
        return vector

    def _update(self) -> None:
        self.master.set_input(CASCADE_IRQ, 1 if self.slave.irq_output() >= 0 else 0)
        intr = self.master.irq_output() >= 0
        if intr != self.intr:
            self.intr = intr
            if self.on_intr_change is not None:
                self.on_intr_change(intr)

    # -- ports -----------------------------------------------------------------------------
    def _chip(self, port: int) -> Pic8259:
        return self.master if port < SLAVE_BASE else self.slave

    def _poll(self, chip: Pic8259) -> int:
        """Poll command (datasheet "Poll command"): the read after OCW3.P returns I and W2-W0 and
        is treated as an interrupt acknowledge for that level."""
        chip.poll = False
        irq = chip.irq_output()
        if irq < 0:
            return 0
        chip.intack(irq)
        self._update()
        return POLL_INTERRUPT | irq

    def _io_read(self, port: int, size: int) -> int:
        chip = self._chip(port)
        if chip.poll:
            return self._poll(chip)
        if port & 1:
            return chip.imr
        return chip.read_status()

    def _io_write(self, port: int, size: int, value: int) -> None:
        chip = self._chip(port)
        value &= 0xFF
        if port & 1:
            chip.write_data(value)
        else:
            chip.write_command(value)
        self._update()

    def _elcr_read(self, port: int, size: int) -> int:
        value = self.master.elcr | (self.slave.elcr << 8)
        return value if port == ELCR_BASE else value >> 8

    def _elcr_write(self, port: int, size: int, value: int) -> None:
        chips = (self.master, self.slave)
        for i in range(size):
            index = port - ELCR_BASE + i
            if index >= len(chips):
                break
            chip = chips[index]
            chip.elcr = (value >> (8 * i)) & chip.elcr_mask
            # A line switched to level follows its wire; one switched to edge keeps its latch.
            level = chip._level_mask()
            chip.irr = (chip.irr & ~level) | (chip.lines & level)
        self._update()

    # -- state -----------------------------------------------------------------------------
    def state(self) -> dict:
        return {"master": self.master.state(), "slave": self.slave.state(), "intr": int(self.intr)}

    def load_state(self, state: dict) -> None:
        self.master.load_state(state["master"])
        self.slave.load_state(state["slave"])
        self.intr = bool(state["intr"])
