"""The i8042 keyboard controller (ports 60h/64h) with a PS/2 keyboard attached.

References: IBM PS/2 Hardware Interface Technical Reference, "Keyboard and Auxiliary Device
Controller" (command byte, status register, controller commands, output port), and the AT
Technical Reference for the A20 gate and reset lines of the output port.

Model:
- One output buffer byte (port 60h read). It is refilled when empty, by priority: controller
  results, then the keyboard queue (if the keyboard interface is enabled, command byte bit 4
  clear), then aux bytes (if bit 5 clear). Keyboard bytes are translated set 2 -> set 1 on their
  way through when command byte bit 6 (XLAT) is set, with the F0h break prefix folded into bit 7.
- Commands complete at once, so the input buffer (IBF) never appears full.
- IRQ1 when the output buffer holds keyboard/controller data and command byte bit 0 is set;
  IRQ12 for aux data with bit 1. No mouse is attached: bytes sent to the aux port (D4h) are
  answered with FEh as aux data, the way a controller reports a missing device.
- Output port: bit 0 = 0 resets the CPU (`on_reset()`), bit 1 is the A20 gate (`on_a20(enabled)`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from emu.devices.bus import IoBus, IrqLine
from emu.devices.ps2kbd import PREFIX_E0, PREFIX_E1, SET1_BREAK, SET2_BREAK, SET2_TO_SET1, Ps2Keyboard

DATA_PORT = 0x60
STATUS_PORT = 0x64  # read: status register; write: controller command

# status register
STATUS_OBF = 0x01  # output buffer full
STATUS_IBF = 0x02  # input buffer full
STATUS_SYS = 0x04  # system flag (command byte bit 2)
STATUS_A2 = 0x08  # last write was to 64h (a command), not 60h
STATUS_INH = 0x10  # keyboard not inhibited (key lock switch off)
STATUS_AUXB = 0x20  # output buffer holds aux data
STATUS_TIMEOUT = 0x40
STATUS_PARITY = 0x80

# command byte (controller RAM byte 0)
CMD_BYTE_INT = 0x01  # IRQ1 on keyboard data
CMD_BYTE_INT2 = 0x02  # IRQ12 on aux data
CMD_BYTE_SYS = 0x04
CMD_BYTE_DISABLE_KBD = 0x10
CMD_BYTE_DISABLE_AUX = 0x20
CMD_BYTE_XLAT = 0x40
CMD_BYTE_RESET = CMD_BYTE_INT | CMD_BYTE_XLAT

# output port
OUTPORT_RESET = 0x01  # 0 = CPU held in reset
OUTPORT_A20 = 0x02
OUTPORT_KBD_IRQ = 0x10  # output buffer full with keyboard data
OUTPORT_AUX_IRQ = 0x20
OUTPORT_KBD_CLOCK = 0x40
OUTPORT_KBD_DATA = 0x80
OUTPORT_RESET_VALUE = OUTPORT_RESET | OUTPORT_A20 | OUTPORT_KBD_CLOCK | OUTPORT_KBD_DATA

INPUT_PORT_VALUE = 0xA0  # bit 7: keyboard not inhibited, bit 5: no manufacturing jumper

# controller commands
C_READ_RAM = 0x20  # 20h-3Fh: read RAM byte n (20h: command byte)
C_WRITE_RAM = 0x60  # 60h-7Fh: write RAM byte n (60h: command byte)
RAM_SIZE = 0x20
C_DISABLE_AUX = 0xA7
C_ENABLE_AUX = 0xA8
C_TEST_AUX = 0xA9
C_SELF_TEST = 0xAA
C_TEST_KBD = 0xAB
C_DISABLE_KBD = 0xAD
C_ENABLE_KBD = 0xAE
C_READ_INPUT = 0xC0
C_READ_OUTPUT = 0xD0
C_WRITE_OUTPUT = 0xD1
C_WRITE_KBD_OBUF = 0xD2
C_WRITE_AUX_OBUF = 0xD3
C_WRITE_AUX = 0xD4
C_DISABLE_A20 = 0xDD
C_ENABLE_A20 = 0xDF
C_READ_TEST_INPUTS = 0xE0
C_PULSE_FIRST = 0xF0  # F0h-FFh: pulse output port bits 0-3 low where the command bit is 0

SELF_TEST_OK = 0x55
INTERFACE_TEST_OK = 0x00
AUX_NO_DEVICE = 0xFE

SRC_CTRL, SRC_KBD, SRC_AUX = 0, 1, 2


class I8042:
    """Keyboard controller; `keyboard` is a `Ps2Keyboard` (created if not given)."""

    def __init__(self, irq_kbd: IrqLine, irq_aux: IrqLine | None = None, keyboard: Ps2Keyboard | None = None,
                 on_reset: Callable[[], None] | None = None, on_a20: Callable[[bool], None] | None = None):
        self.irq_kbd = irq_kbd
        self.irq_aux = irq_aux
        self.keyboard = keyboard if keyboard is not None else Ps2Keyboard()
        self.keyboard.notify = self._service
        self.on_reset = on_reset
        self.on_a20 = on_a20
        self.reset()

    def attach(self, bus: IoBus) -> None:
        bus.register(DATA_PORT, 1, self.io_read, self.io_write, owner=self)
        bus.register(STATUS_PORT, 1, self.io_read, self.io_write, owner=self)

    def reset(self) -> None:
        self.ram = [0] * RAM_SIZE
        self.ram[0] = CMD_BYTE_RESET
        self.status = STATUS_INH
        self.output_port = OUTPORT_RESET_VALUE
        self.obuf = 0
        self.obuf_src: int | None = None  # None = output buffer empty
        self.ctrl_queue: deque[int] = deque()
        self.aux_queue: deque[int] = deque()
        self.pending: int | None = None  # controller command waiting for its data byte
        self.xlat_break = False  # an F0h seen by the translator, folded into the next byte
        self.keyboard.reset()
        self._update_irq()

    @property
    def command_byte(self) -> int:
        return self.ram[0]

    @property
    def a20(self) -> bool:
        return bool(self.output_port & OUTPORT_A20)

    def key_set1(self, codes: bytes) -> None:
        """Host keys (set-1 bytes from emu.hostkeys) pressed on the attached keyboard."""
        self.keyboard.key_set1(codes)

    # -- output buffer ---------------------------------------------------------------------------
    def _service(self) -> None:
        """Fill an empty output buffer from the highest-priority source that has data."""
        while self.obuf_src is None:
            cmd = self.ram[0]
            if self.ctrl_queue:
                self._fill(self.ctrl_queue.popleft(), SRC_CTRL)
            elif self.keyboard.has_data() and not cmd & CMD_BYTE_DISABLE_KBD:
                b = self.keyboard.read_byte()
                if cmd & CMD_BYTE_XLAT:
                    b = self._translate(b)
                    if b is None:
                        continue
                self._fill(b, SRC_KBD)
            elif self.aux_queue and not cmd & CMD_BYTE_DISABLE_AUX:
                self._fill(self.aux_queue.popleft(), SRC_AUX)
            else:
                break
        self._update_irq()

    def _translate(self, b: int) -> int | None:
        """Set 2 -> set 1 as the controller does: F0h is swallowed and sets bit 7 of the next code."""
        if b == SET2_BREAK:
            self.xlat_break = True
            return None
        t = SET2_TO_SET1[b]
        if self.xlat_break and b not in (PREFIX_E0, PREFIX_E1):
            t |= SET1_BREAK
            self.xlat_break = False
        return t

    def _fill(self, value: int, src: int) -> None:
        self.obuf = value & 0xFF
        self.obuf_src = src

    def _reply(self, *data: int) -> None:
        self.ctrl_queue.extend(data)
        self._service()

    def _update_irq(self) -> None:
        cmd = self.ram[0]
        src = self.obuf_src
        self.irq_kbd.set(src in (SRC_CTRL, SRC_KBD) and bool(cmd & CMD_BYTE_INT))
        if self.irq_aux is not None:
            self.irq_aux.set(src == SRC_AUX and bool(cmd & CMD_BYTE_INT2))

    def read_status(self) -> int:
        s = self.status & (STATUS_INH | STATUS_A2 | STATUS_TIMEOUT | STATUS_PARITY)
        if self.ram[0] & CMD_BYTE_SYS:
            s |= STATUS_SYS
        if self.obuf_src is not None:
            s |= STATUS_OBF
            if self.obuf_src == SRC_AUX:
                s |= STATUS_AUXB
        return s

    def read_data(self) -> int:
        """Port 60h: the output buffer; reading empties it and lets the next byte in."""
        value = self.obuf
        if self.obuf_src is not None:
            self.obuf_src = None
            self._update_irq()  # the line drops before the next byte raises it again (an edge)
            self._service()
        return value

    # -- ports -----------------------------------------------------------------------------------
    def io_read(self, port: int, size: int) -> int:
        return self.read_data() if port == DATA_PORT else self.read_status()

    def io_write(self, port: int, size: int, value: int) -> None:
        value &= 0xFF
        if port == DATA_PORT:
            self.status &= ~STATUS_A2
            self._write_data(value)
        else:
            self.status |= STATUS_A2
            self._command(value)

    def _write_data(self, value: int) -> None:
        cmd, self.pending = self.pending, None
        if cmd is None:
            # to the keyboard; sending it a byte re-enables the keyboard interface (as AMI 8042s do)
            self.ram[0] &= ~CMD_BYTE_DISABLE_KBD
            self.keyboard.write(value)
            self._service()
        elif C_WRITE_RAM <= cmd < C_WRITE_RAM + RAM_SIZE:
            self.ram[cmd - C_WRITE_RAM] = value
            if cmd == C_WRITE_RAM:
                self._service()  # the enable bits may have changed
                self._update_irq()
        elif cmd == C_WRITE_OUTPUT:
            self._write_output_port(value)
        elif cmd == C_WRITE_KBD_OBUF:
            self.ctrl_queue.append(value)  # appears as keyboard data, untranslated
            self._service()
        elif cmd == C_WRITE_AUX_OBUF:
            self.aux_queue.append(value)
            self._service()
        elif cmd == C_WRITE_AUX:
            self.ram[0] &= ~CMD_BYTE_DISABLE_AUX
            self.aux_queue.append(AUX_NO_DEVICE)
            self._service()

    def _write_output_port(self, value: int) -> None:
        old = self.output_port
        self.output_port = value | OUTPORT_RESET  # the reset line is pulsed, not latched low
        if (old ^ value) & OUTPORT_A20 and self.on_a20 is not None:
            self.on_a20(bool(value & OUTPORT_A20))
        if not value & OUTPORT_RESET and self.on_reset is not None:
            self.on_reset()

    def _set_a20(self, enabled: bool) -> None:
        self._write_output_port((self.output_port & ~OUTPORT_A20) | (OUTPORT_A20 if enabled else 0))

    def _command(self, c: int) -> None:
        self.pending = None
        if C_READ_RAM <= c < C_READ_RAM + RAM_SIZE:
            self._reply(self.ram[c - C_READ_RAM])
        elif C_WRITE_RAM <= c < C_WRITE_RAM + RAM_SIZE or c in (
                C_WRITE_OUTPUT, C_WRITE_KBD_OBUF, C_WRITE_AUX_OBUF, C_WRITE_AUX):
            self.pending = c
        elif c == C_DISABLE_AUX:
            self.ram[0] |= CMD_BYTE_DISABLE_AUX
        elif c == C_ENABLE_AUX:
            self.ram[0] &= ~CMD_BYTE_DISABLE_AUX
            self._service()
        elif c == C_TEST_AUX or c == C_TEST_KBD:
            self._reply(INTERFACE_TEST_OK)
        elif c == C_SELF_TEST:
            self.ram[0] |= CMD_BYTE_SYS
            self._reply(SELF_TEST_OK)
        elif c == C_DISABLE_KBD:
            self.ram[0] |= CMD_BYTE_DISABLE_KBD
        elif c == C_ENABLE_KBD:
            self.ram[0] &= ~CMD_BYTE_DISABLE_KBD
            self._service()
        elif c == C_READ_INPUT:
            self._reply(INPUT_PORT_VALUE)
        elif c == C_READ_OUTPUT:
            value = self.output_port & ~(OUTPORT_KBD_IRQ | OUTPORT_AUX_IRQ)
            if self.obuf_src in (SRC_CTRL, SRC_KBD):
                value |= OUTPORT_KBD_IRQ
            elif self.obuf_src == SRC_AUX:
                value |= OUTPORT_AUX_IRQ
            self._reply(value)
        elif c == C_DISABLE_A20:
            self._set_a20(False)
        elif c == C_ENABLE_A20:
            self._set_a20(True)
        elif c == C_READ_TEST_INPUTS:
            self._reply(0x00)
        elif c >= C_PULSE_FIRST:
            if not c & OUTPORT_RESET and self.on_reset is not None:  # FEh: pulse the reset line
                self.on_reset()
        self._update_irq()

    # -- state -----------------------------------------------------------------------------------
    def state(self) -> dict:
        return {"ram": list(self.ram), "status": self.status, "output_port": self.output_port,
                "obuf": self.obuf, "obuf_src": self.obuf_src, "ctrl_queue": list(self.ctrl_queue),
                "aux_queue": list(self.aux_queue), "pending": self.pending, "xlat_break": self.xlat_break,
                "keyboard": self.keyboard.state()}

    def load_state(self, s: dict) -> None:
        self.ram = list(s["ram"])
        self.status, self.output_port = s["status"], s["output_port"]
        self.obuf, self.obuf_src = s["obuf"], s["obuf_src"]
        self.ctrl_queue, self.aux_queue = deque(s["ctrl_queue"]), deque(s["aux_queue"])
        self.pending, self.xlat_break = s["pending"], s["xlat_break"]
        self.keyboard.load_state(s["keyboard"])
        self._update_irq()
