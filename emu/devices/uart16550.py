"""NS16550A UART: the PC's COM ports (COM1 0x3F8/IRQ4, COM2 0x2F8/IRQ3).

References: National Semiconductor PC16550D datasheet ("the datasheet"), sections 8.1-8.10 for the
registers, table IV for the interrupt priorities, 8.4 for the FIFO control register.

Model:
- Receive: the host pushes bytes with `receive(data)`. They enter the RX FIFO (16 bytes, or the
  single RBR when FIFOs are off) at once as far as they fit; the rest wait in a host-side queue that
  refills the FIFO as the guest reads RBR (flow control towards the host: host input is never lost).
  Overrun (LSR.OE) happens when a character arrives into a full FIFO/RBR from the transmitter in
  loopback mode, as on the chip.
- Transmit: THR writes go to the TX FIFO (or the single THR), the transmitter shifts one character
  per character time on the virtual clock (one `Timer` per character), then hands it to the backend
  (or, in loopback, to the receiver). `paced=False` makes every character complete at once.
- Character timeout (datasheet 8.6, IIR = 0Ch): with FIFOs on, data in the RX FIFO and no character
  received or read for 4 character times.
- On a PC the INTRPT pin reaches the PIC through a buffer enabled by MCR.OUT2: the IRQ line is the
  pending interrupt AND MCR.OUT2 (as in QEMU/Bochs, the MCR bit is used even in loopback mode).
"""

from __future__ import annotations

import os
import sys
from collections import deque

from emu.clock import NS_PER_SECOND, VirtualClock
from emu.devices.bus import IoBus, IrqLine

COM1_BASE, COM1_IRQ = 0x3F8, 4
COM2_BASE, COM2_IRQ = 0x2F8, 3
COM3_BASE, COM4_BASE = 0x3E8, 0x2E8
PORT_COUNT = 8

INPUT_CLOCK_HZ = 1_843_200  # the PC's 1.8432 MHz crystal; baud = clock / (16 * divisor)
BAUD_CLOCK_DIVIDER = 16
FIFO_SIZE = 16
TIMEOUT_CHARACTERS = 4  # datasheet 8.6: character timeout after 4 character times
RESET_DIVISOR = 12  # 9600 baud, what QEMU and most BIOSes leave behind

# register offsets (datasheet table II)
RBR_THR_DLL = 0  # RBR read / THR write / DLL when LCR.DLAB
IER_DLM = 1
IIR_FCR = 2  # IIR read / FCR write
LCR = 3
MCR = 4
LSR = 5
MSR = 6
SCR = 7

# IER bits
IER_ERBFI = 0x01  # received data available
IER_ETBEI = 0x02  # transmitter holding register empty
IER_ELSI = 0x04  # receiver line status
IER_EDSSI = 0x08  # modem status
IER_MASK = 0x0F

# IIR values (datasheet table IV), highest priority first
IIR_NO_INT = 0x01
IIR_LINE_STATUS = 0x06
IIR_RX_DATA = 0x04
IIR_CHAR_TIMEOUT = 0x0C
IIR_THRE = 0x02
IIR_MODEM_STATUS = 0x00
IIR_FIFOS_ENABLED = 0xC0  # bits 6-7 set when FCR bit 0 is set

# FCR bits
FCR_ENABLE = 0x01
FCR_CLEAR_RX = 0x02
FCR_CLEAR_TX = 0x04
FCR_DMA_MODE = 0x08
FCR_TRIGGER_SHIFT = 6
RX_TRIGGER_LEVELS = (1, 4, 8, 14)

# LCR bits
LCR_WORD_LENGTH = 0x03  # 5 + n data bits
LCR_STOP_BITS = 0x04
LCR_PARITY_ENABLE = 0x08
LCR_SET_BREAK = 0x40
LCR_DLAB = 0x80

# MCR bits
MCR_DTR = 0x01
MCR_RTS = 0x02
MCR_OUT1 = 0x04
MCR_OUT2 = 0x08
MCR_LOOP = 0x10
MCR_MASK = 0x1F

# LSR bits
LSR_DR = 0x01
LSR_OE = 0x02
LSR_PE = 0x04
LSR_FE = 0x08
LSR_BI = 0x10
LSR_THRE = 0x20
LSR_TEMT = 0x40
LSR_RX_FIFO_ERROR = 0x80
LSR_ERRORS = LSR_OE | LSR_PE | LSR_FE | LSR_BI

# MSR bits: deltas in the low nibble, line states in the high one
MSR_DCTS = 0x01
MSR_DDSR = 0x02
MSR_TERI = 0x04
MSR_DDCD = 0x08
MSR_CTS = 0x10
MSR_DSR = 0x20
MSR_RI = 0x40
MSR_DCD = 0x80
MSR_DELTAS = 0x0F
MSR_LINES = 0xF0
# a modem that is there and ready: what the host side shows outside loopback
DEFAULT_MODEM_LINES = MSR_CTS | MSR_DSR | MSR_DCD


def character_time_ns(lcr: int, divisor: int) -> int:
    """One frame on the wire: start bit, 5-8 data bits, optional parity, 1 or 2 stop bits."""
    data_bits = 5 + (lcr & LCR_WORD_LENGTH)
    bits = 1 + data_bits + (1 if lcr & LCR_PARITY_ENABLE else 0) + (2 if lcr & LCR_STOP_BITS else 1)
    divisor = divisor or 1 << 16  # a zero latch divides by 65536 on the chip
    return bits * divisor * BAUD_CLOCK_DIVIDER * NS_PER_SECOND // INPUT_CLOCK_HZ


# -- backends ------------------------------------------------------------------------------------

class NullBackend:
    """`-serial none`: output is dropped, nothing is ever received."""

    def write(self, data: bytes) -> None:
        pass

    def poll(self) -> bytes:
        return b""

    def close(self) -> None:
        pass


class MemoryBackend(NullBackend):
    """For tests: everything transmitted collects in `output`."""

    def __init__(self):
        self.output = bytearray()

    def write(self, data: bytes) -> None:
        self.output += data


class FileBackend(NullBackend):
    """`-serial file:PATH`: write-only, unbuffered so the file is complete if pyemu is killed."""

    def __init__(self, path: str):
        self._fh = open(path, "wb", buffering=0)  # noqa: SIM115 - lives as long as the machine

    def write(self, data: bytes) -> None:
        self._fh.write(data)

    def close(self) -> None:
        self._fh.close()


class StdioBackend(NullBackend):
    """`-serial stdio` / `-nographic`: output to stdout; `poll()` reads stdin without blocking.

    The main loop calls `poll()` (or selects on `fileno()`) and hands the bytes to `Uart16550.receive`.
    With `raw=True` and a terminal on stdin, the terminal is put in raw mode until `close()`.
    """

    def __init__(self, raw: bool = False, stdin_fd: int = 0, stdout=None):
        self._in = stdin_fd
        self._out = stdout if stdout is not None else sys.stdout.buffer
        self._saved_tty = None
        if raw and os.isatty(stdin_fd):
            import termios
            import tty

            self._saved_tty = termios.tcgetattr(stdin_fd)
            tty.setraw(stdin_fd)

    def fileno(self) -> int:
        return self._in

    def write(self, data: bytes) -> None:
        self._out.write(data)
        self._out.flush()

    def poll(self) -> bytes:
        import select

        try:
            ready, _, _ = select.select([self._in], [], [], 0)
            return os.read(self._in, 4096) if ready else b""
        except (OSError, ValueError):
            return b""

    def close(self) -> None:
        if self._saved_tty is not None:
            import termios

            termios.tcsetattr(self._in, termios.TCSADRAIN, self._saved_tty)
            self._saved_tty = None


def open_backend(spec: str, raw: bool = False):
    """A backend from a `-serial` argument: `stdio`, `file:PATH`, `none` (or `null`)."""
    if spec == "stdio":
        return StdioBackend(raw=raw)
    if spec in ("none", "null"):
        return NullBackend()
    if spec.startswith("file:") and len(spec) > len("file:"):
        return FileBackend(spec[len("file:"):])
    raise ValueError(f"unsupported serial backend {spec!r} (stdio, file:PATH, none)")


# -- the chip ------------------------------------------------------------------------------------

class Uart16550:
    """One 16550A with its registers at `base` and its interrupt on `irq`."""

    def __init__(self, base: int, irq: IrqLine, clock: VirtualClock, backend=None, paced: bool = True):
        self.base = base
        self.irq = irq
        self.clock = clock
        self.backend = backend if backend is not None else NullBackend()
        self.paced = paced
        self._tx_timer = clock.timer(self._tx_done, name=f"uart{base:x}-tx")
        self._timeout_timer = clock.timer(self._char_timeout, name=f"uart{base:x}-timeout")
        self.host_queue: deque[int] = deque()  # received from the host, waiting for FIFO room
        self.modem_inputs = DEFAULT_MODEM_LINES  # CTS/DSR/RI/DCD as the host side drives them
        self.reset()

    # -- wiring ----------------------------------------------------------------------------------
    def attach(self, bus: IoBus) -> None:
        bus.register(self.base, PORT_COUNT, self.io_read, self.io_write, owner=self)

    def reset(self) -> None:
        """Master reset (datasheet table III): registers cleared, THR/TSR empty, no interrupts."""
        self.divisor = RESET_DIVISOR
        self.ier = 0
        self.lcr = 0
        self.mcr = 0
        self.scr = 0
        self.fcr = 0
        self.lsr = LSR_THRE | LSR_TEMT
        self.msr_deltas = 0
        self.rx_fifo: deque[int] = deque()
        self.rx_errors: deque[int] = deque()  # LSR error bits travelling with each RX character
        self.tx_fifo: deque[int] = deque()
        self.tsr: int | None = None  # the character being shifted out
        self.thre_pending = False
        self.timeout_pending = False
        self._tx_timer.cancel()
        self._timeout_timer.cancel()
        self._msr_lines = self._current_msr_lines()
        self._update_irq()

    # -- derived values --------------------------------------------------------------------------
    @property
    def fifo_enabled(self) -> bool:
        return bool(self.fcr & FCR_ENABLE)

    @property
    def loopback(self) -> bool:
        return bool(self.mcr & MCR_LOOP)

    def _rx_capacity(self) -> int:
        return FIFO_SIZE if self.fifo_enabled else 1

    def _tx_capacity(self) -> int:
        return FIFO_SIZE if self.fifo_enabled else 1

    def _rx_trigger(self) -> int:
        return RX_TRIGGER_LEVELS[self.fcr >> FCR_TRIGGER_SHIFT] if self.fifo_enabled else 1

    def char_time_ns(self) -> int:
        return character_time_ns(self.lcr, self.divisor)

    def _current_msr_lines(self) -> int:
        """Datasheet 8.7: in loopback DTR->DSR, RTS->CTS, OUT1->RI, OUT2->DCD."""
        if not self.loopback:
            return self.modem_inputs & MSR_LINES
        m = self.mcr
        return ((MSR_CTS if m & MCR_RTS else 0) | (MSR_DSR if m & MCR_DTR else 0)
                | (MSR_RI if m & MCR_OUT1 else 0) | (MSR_DCD if m & MCR_OUT2 else 0))

    def _update_msr(self) -> None:
        new = self._current_msr_lines()
        old = self._msr_lines
        changed = old ^ new
        if changed & MSR_CTS:
            self.msr_deltas |= MSR_DCTS
        if changed & MSR_DSR:
            self.msr_deltas |= MSR_DDSR
        if changed & MSR_DCD:
            self.msr_deltas |= MSR_DDCD
        if old & MSR_RI and not new & MSR_RI:  # trailing edge only
            self.msr_deltas |= MSR_TERI
        self._msr_lines = new
        self._update_irq()

    def set_modem_inputs(self, lines: int) -> None:
        """The host side drives CTS/DSR/RI/DCD (MSR bit layout); seen by the guest outside loopback."""
        self.modem_inputs = lines & MSR_LINES
        self._update_msr()

    # -- interrupts ------------------------------------------------------------------------------
    def pending_iir(self) -> int:
        """The highest-priority pending interrupt, IIR bits 0-3 (datasheet table IV)."""
        ier = self.ier
        if ier & IER_ELSI and self.lsr & LSR_ERRORS:
            return IIR_LINE_STATUS
        if ier & IER_ERBFI:
            if self.rx_fifo and len(self.rx_fifo) >= self._rx_trigger():
                return IIR_RX_DATA
            if self.timeout_pending:
                return IIR_CHAR_TIMEOUT
        if ier & IER_ETBEI and self.thre_pending:
            return IIR_THRE
        if ier & IER_EDSSI and self.msr_deltas:
            return IIR_MODEM_STATUS
        return IIR_NO_INT

    def _update_irq(self) -> None:
        pending = self.pending_iir() != IIR_NO_INT
        self.irq.set(pending and bool(self.mcr & MCR_OUT2))

    # -- receive ---------------------------------------------------------------------------------
    def receive(self, data: bytes) -> None:
        """Bytes from the host side of the line; they queue and raise the RX interrupt."""
        self.host_queue.extend(data)
        self._refill_from_host()

    def receive_break(self) -> None:
        """A break condition on the line: a zero character with LSR.BI (datasheet 8.6, LSR bit 4)."""
        self._rx_char(0, LSR_BI)

    def _refill_from_host(self) -> None:
        if self.loopback:  # datasheet 8.7: the serial input is disconnected in loopback
            return
        moved = False
        q = self.host_queue
        while q and len(self.rx_fifo) < self._rx_capacity():
            self.rx_fifo.append(q.popleft())
            self.rx_errors.append(0)
            moved = True
        if moved:
            self.lsr |= LSR_DR
            self._rx_activity()

    def _rx_char(self, value: int, errors: int = 0) -> None:
        """A character assembled by the receiver shift register."""
        if len(self.rx_fifo) >= self._rx_capacity():
            # overrun: in FIFO mode the shift register character is lost, the FIFO kept (8.6 LSR b1);
            # without FIFOs the new character overwrites RBR
            self.lsr |= LSR_OE
            if not self.fifo_enabled:
                self.rx_fifo[-1] = value
                self.rx_errors[-1] = errors
        else:
            self.rx_fifo.append(value)
            self.rx_errors.append(errors)
        self.lsr |= LSR_DR
        if errors and len(self.rx_fifo) == 1:
            self.lsr |= errors
        self._rx_activity()

    def _rx_activity(self) -> None:
        """A character entered or left the RX FIFO: the timeout restarts (datasheet 8.6)."""
        self.timeout_pending = False
        if self.fifo_enabled and self.rx_fifo:
            self._timeout_timer.arm_in(TIMEOUT_CHARACTERS * self.char_time_ns())
        else:
            self._timeout_timer.cancel()
        self._update_irq()

    def _char_timeout(self, _deadline: int) -> None:
        if self.fifo_enabled and self.rx_fifo:
            self.timeout_pending = True
            self._update_irq()

    def _read_rbr(self) -> int:
        if not self.rx_fifo:
            return 0
        value = self.rx_fifo.popleft()
        self.rx_errors.popleft()
        if self.rx_fifo:
            # the next character's error bits show when it reaches the top of the FIFO
            self.lsr |= self.rx_errors[0]
        else:
            self.lsr &= ~LSR_DR
        self._refill_from_host()
        if self.rx_fifo:
            self.lsr |= LSR_DR
        self._rx_activity()
        return value

    # -- transmit --------------------------------------------------------------------------------
    def _write_thr(self, value: int) -> None:
        if len(self.tx_fifo) >= self._tx_capacity():
            # writing a full THR overwrites it; a character written to a full TX FIFO is lost
            if not self.fifo_enabled:
                self.tx_fifo[-1] = value
        else:
            self.tx_fifo.append(value)
        self.lsr &= ~(LSR_THRE | LSR_TEMT)
        self.thre_pending = False
        if self.tsr is None:
            self._start_next_char()
        self._update_irq()

    def _start_next_char(self, start_ns: int | None = None) -> None:
        """Move the next character from THR/FIFO into the shift register (at `start_ns`, else now)."""
        while self.tx_fifo:
            self.tsr = self.tx_fifo.popleft()
            if not self.tx_fifo:
                self.lsr |= LSR_THRE
                self.thre_pending = True
            if self.paced:
                start = self.clock.now() if start_ns is None else start_ns
                self._tx_timer.arm(start + self.char_time_ns())
                self._update_irq()
                return
            self._emit(self.tsr)
        self.tsr = None
        self.lsr |= LSR_THRE | LSR_TEMT
        self._update_irq()

    def _tx_done(self, deadline: int) -> None:
        if self.tsr is not None:
            value, self.tsr = self.tsr, None
            self._emit(value)
        self._start_next_char(deadline)  # back to back: no drift from late timer service

    def _emit(self, value: int) -> None:
        value &= (1 << (5 + (self.lcr & LCR_WORD_LENGTH))) - 1
        if self.loopback:
            self._rx_char(value, LSR_BI if self.lcr & LCR_SET_BREAK else 0)
        else:
            self.backend.write(bytes((value,)))

    # -- port interface --------------------------------------------------------------------------
    def io_read(self, port: int, size: int) -> int:
        reg = (port - self.base) & 7
        dlab = self.lcr & LCR_DLAB
        if reg == RBR_THR_DLL:
            return self.divisor & 0xFF if dlab else self._read_rbr()
        if reg == IER_DLM:
            return self.divisor >> 8 if dlab else self.ier
        if reg == IIR_FCR:
            iir = self.pending_iir()
            if iir == IIR_THRE:  # datasheet table IV: reading IIR (when THRE is the source) clears it
                self.thre_pending = False
                self._update_irq()
            return iir | (IIR_FIFOS_ENABLED if self.fifo_enabled else 0)
        if reg == LCR:
            return self.lcr
        if reg == MCR:
            return self.mcr
        if reg == LSR:
            value = self.lsr
            if self.fifo_enabled and any(self.rx_errors):
                value |= LSR_RX_FIFO_ERROR
            self.lsr &= ~LSR_ERRORS  # errors clear on read (datasheet 8.6)
            self._update_irq()
            return value
        if reg == MSR:
            value = self._msr_lines | self.msr_deltas
            self.msr_deltas = 0
            self._update_irq()
            return value
        return self.scr

    def io_write(self, port: int, size: int, value: int) -> None:
        reg = (port - self.base) & 7
        value &= 0xFF
        dlab = self.lcr & LCR_DLAB
        if reg == RBR_THR_DLL:
            if dlab:
                self.divisor = (self.divisor & 0xFF00) | value
            else:
                self._write_thr(value)
        elif reg == IER_DLM:
            if dlab:
                self.divisor = (self.divisor & 0x00FF) | (value << 8)
            else:
                old = self.ier
                self.ier = value & IER_MASK
                if self.ier & IER_ETBEI and not old & IER_ETBEI and self.lsr & LSR_THRE:
                    # enabling ETBEI with THR empty raises the THRE interrupt (8250 behaviour drivers
                    # rely on to start transmission)
                    self.thre_pending = True
                self._update_irq()
        elif reg == IIR_FCR:
            self._write_fcr(value)
        elif reg == LCR:
            self.lcr = value
        elif reg == MCR:
            was_loop = self.loopback
            self.mcr = value & MCR_MASK
            self._update_msr()
            if was_loop and not self.loopback:
                self._refill_from_host()
        elif reg == SCR:
            self.scr = value

    def _write_fcr(self, value: int) -> None:
        """Datasheet 8.4: bit 0 toggling clears both FIFOs; bits 1/2 clear RX/TX (self-clearing)."""
        if (value ^ self.fcr) & FCR_ENABLE:
            self.rx_fifo.clear()
            self.rx_errors.clear()
            self.tx_fifo.clear()
        if value & FCR_CLEAR_RX:
            self.rx_fifo.clear()
            self.rx_errors.clear()
        if value & FCR_CLEAR_TX:
            self.tx_fifo.clear()
        self.fcr = value & (FCR_ENABLE | FCR_DMA_MODE | (3 << FCR_TRIGGER_SHIFT))
        if not self.fifo_enabled:
            self.fcr = 0
        if not self.rx_fifo:
            self.lsr &= ~LSR_DR
            self._refill_from_host()
        if not self.tx_fifo:
            self.lsr |= LSR_THRE
            if self.tsr is None:
                self.lsr |= LSR_TEMT
        self._rx_activity()

    def poll_backend(self) -> int:
        """Pull whatever the backend has received from the host; returns the byte count."""
        data = self.backend.poll()
        if data:
            self.receive(data)
        return len(data)

    # -- state -----------------------------------------------------------------------------------
    def state(self) -> dict:
        return {
            "divisor": self.divisor, "ier": self.ier, "lcr": self.lcr, "mcr": self.mcr,
            "scr": self.scr, "fcr": self.fcr, "lsr": self.lsr, "msr_deltas": self.msr_deltas,
            "msr_lines": self._msr_lines, "modem_inputs": self.modem_inputs,
            "rx_fifo": list(self.rx_fifo), "rx_errors": list(self.rx_errors),
            "tx_fifo": list(self.tx_fifo), "tsr": self.tsr, "host_queue": list(self.host_queue),
            "thre_pending": self.thre_pending, "timeout_pending": self.timeout_pending,
            "tx_deadline": self._tx_timer.deadline, "timeout_deadline": self._timeout_timer.deadline,
        }

    def load_state(self, s: dict) -> None:
        self.divisor, self.ier, self.lcr, self.mcr = s["divisor"], s["ier"], s["lcr"], s["mcr"]
        self.scr, self.fcr, self.lsr, self.msr_deltas = s["scr"], s["fcr"], s["lsr"], s["msr_deltas"]
        self._msr_lines, self.modem_inputs = s["msr_lines"], s["modem_inputs"]
        self.rx_fifo = deque(s["rx_fifo"])
        self.rx_errors = deque(s["rx_errors"])
        self.tx_fifo = deque(s["tx_fifo"])
        self.tsr = s["tsr"]
        self.host_queue = deque(s["host_queue"])
        self.thre_pending, self.timeout_pending = s["thre_pending"], s["timeout_pending"]
        for timer, key in ((self._tx_timer, "tx_deadline"), (self._timeout_timer, "timeout_deadline")):
            if s[key] is None:
                timer.cancel()
            else:
                timer.arm(s[key])
        self._update_irq()
