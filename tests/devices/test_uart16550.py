"""NS16550A behaviour as the PC16550D datasheet promises it, on a deterministic (icount) clock."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emu.clock import VirtualClock
from emu.devices.bus import IoBus, IrqLine
from emu.devices.uart16550 import (
    COM1_BASE,
    COM1_IRQ,
    FCR_CLEAR_RX,
    FCR_ENABLE,
    IER_EDSSI,
    IER_ELSI,
    IER_ERBFI,
    IER_ETBEI,
    IIR_CHAR_TIMEOUT,
    IIR_FIFOS_ENABLED,
    IIR_LINE_STATUS,
    IIR_MODEM_STATUS,
    IIR_NO_INT,
    IIR_RX_DATA,
    IIR_THRE,
    LCR_DLAB,
    LSR_BI,
    LSR_DR,
    LSR_OE,
    LSR_TEMT,
    LSR_THRE,
    MCR_DTR,
    MCR_LOOP,
    MCR_OUT1,
    MCR_OUT2,
    MCR_RTS,
    MSR_CTS,
    MSR_DCD,
    MSR_DCTS,
    MSR_DDCD,
    MSR_DDSR,
    MSR_DSR,
    MSR_RI,
    MSR_TERI,
    FileBackend,
    MemoryBackend,
    NullBackend,
    Uart16550,
    character_time_ns,
    open_backend,
)

THR = RBR = DLL = 0
IER = DLM = 1
IIR = FCR = 2
LCR, MCR, LSR, MSR, SCR = 3, 4, 5, 6, 7
LCR_8N1 = 0x03


class Irqs:
    def __init__(self):
        self.levels: dict[int, int] = {}
        self.edges = 0

    def __call__(self, line, level):
        if level and not self.levels.get(line):
            self.edges += 1
        self.levels[line] = level


def run_until(clock: VirtualClock, t_ns: int) -> None:
    """Advance icount time to `t_ns`, stopping at every timer deadline on the way (as the main loop)."""
    while True:
        d = clock.next_deadline()
        if d is None or d > t_ns:
            break
        clock.instructions = max(clock.instructions, -(-d >> clock.shift))
        clock.run_due()
    clock.instructions = max(clock.instructions, -(-t_ns >> clock.shift))
    clock.run_due()


def run_all(clock: VirtualClock, limit_ns: int = 10**12) -> None:
    """Run until no timer is armed (or a safety limit)."""
    while (d := clock.next_deadline()) is not None and d < limit_ns:
        run_until(clock, d)


@pytest.fixture
def rig():
    clock = VirtualClock(icount=True)
    irqs = Irqs()
    bus = IoBus()
    backend = MemoryBackend()
    uart = Uart16550(COM1_BASE, IrqLine(irqs, COM1_IRQ), clock, backend)
    uart.attach(bus)

    class Rig:
        pass

    r = Rig()
    r.clock, r.irqs, r.bus, r.backend, r.uart = clock, irqs, bus, backend, uart
    r.out = lambda reg, v: bus.write(COM1_BASE + reg, 1, v)
    r.inp = lambda reg: bus.read(COM1_BASE + reg, 1)
    r.irq = lambda: irqs.levels.get(COM1_IRQ, 0)
    r.out(LCR, LCR_8N1)
    return r


def test_reset_state_is_idle_with_transmitter_empty(rig):
    assert rig.inp(IIR) == IIR_NO_INT
    assert rig.inp(LSR) == LSR_THRE | LSR_TEMT
    assert rig.inp(IER) == 0


def test_dlab_switches_ports_0_and_1_to_the_divisor_latch(rig):
    rig.out(LCR, LCR_DLAB | LCR_8N1)
    rig.out(DLL, 0x01)
    rig.out(DLM, 0x02)
    assert (rig.inp(DLL), rig.inp(DLM)) == (0x01, 0x02)
    rig.out(LCR, LCR_8N1)
    rig.out(IER, IER_ERBFI)
    assert rig.inp(IER) == IER_ERBFI
    assert rig.uart.divisor == 0x0201


def test_scratch_register_holds_any_byte(rig):
    for v in (0x00, 0x55, 0xAA, 0xFF):
        rig.out(SCR, v)
        assert rig.inp(SCR) == v


def test_character_time_follows_baud_rate_and_frame():
    # 115200 baud 8N1: 10 bits of 8.68 us
    assert character_time_ns(LCR_8N1, 1) == 10 * 16 * 10**9 // 1_843_200
    # 7E2 at 9600: start + 7 + parity + 2 stop = 11 bits
    assert character_time_ns(0x02 | 0x08 | 0x04, 12) == 11 * 12 * 16 * 10**9 // 1_843_200


def test_transmission_is_paced_by_the_baud_rate(rig):
    """A byte reaches the line one character time after it enters the shift register."""
    ct = rig.uart.char_time_ns()
    rig.out(THR, ord("A"))
    assert rig.backend.output == b""
    assert not rig.inp(LSR) & LSR_TEMT  # shifting
    assert rig.inp(LSR) & LSR_THRE  # but THR already moved into the shift register
    run_until(rig.clock, ct - 8)
    assert rig.backend.output == b""
    run_until(rig.clock, ct)
    assert rig.backend.output == b"A"
    assert rig.inp(LSR) & (LSR_THRE | LSR_TEMT) == LSR_THRE | LSR_TEMT


def test_fifo_transmits_in_order_back_to_back(rig):
    rig.out(FCR, FCR_ENABLE)
    ct = rig.uart.char_time_ns()
    for ch in b"hello":
        rig.out(THR, ch)
    assert not rig.inp(LSR) & LSR_THRE  # 4 still wait in the FIFO
    run_until(rig.clock, 5 * ct)
    assert rig.backend.output == b"hello"


def test_writes_to_a_full_tx_fifo_are_lost(rig):
    rig.out(FCR, FCR_ENABLE)
    for i in range(20):
        rig.out(THR, i)
    run_all(rig.clock)
    assert rig.backend.output == bytes(range(17))  # 1 in the shift register + 16 in the FIFO


def test_unpaced_uart_transmits_at_once():
    clock = VirtualClock(icount=True)
    backend = MemoryBackend()
    uart = Uart16550(COM1_BASE, IrqLine(None, 4), clock, backend, paced=False)
    uart.io_write(COM1_BASE + LCR, 1, LCR_8N1)
    for ch in b"fast":
        uart.io_write(COM1_BASE, 1, ch)
    assert backend.output == b"fast"


def test_loopback_routes_thr_to_rbr(rig):
    """Datasheet 8.7: in loopback mode a byte written to THR is readable from RBR."""
    rig.out(MCR, MCR_LOOP)
    rig.out(THR, 0x5A)
    run_all(rig.clock)
    assert rig.inp(LSR) & LSR_DR
    assert rig.inp(RBR) == 0x5A
    assert not rig.inp(LSR) & LSR_DR
    assert rig.backend.output == b""  # nothing reaches the line


@settings(max_examples=40, deadline=None)
@given(st.binary(max_size=64), st.booleans())
def test_any_bytes_through_loopback_arrive_intact_and_in_order(data, fifo):
    clock = VirtualClock(icount=True)
    uart = Uart16550(COM1_BASE, IrqLine(None, 4), clock, MemoryBackend())
    out = lambda reg, v: uart.io_write(COM1_BASE + reg, 1, v)  # noqa: E731
    inp = lambda reg: uart.io_read(COM1_BASE + reg, 1)  # noqa: E731
    out(LCR, LCR_8N1)
    out(FCR, FCR_ENABLE if fifo else 0)
    out(MCR, MCR_LOOP)
    got = bytearray()
    for b in data:  # a polling driver: wait for THRE, write, drain the receiver
        while not inp(LSR) & LSR_THRE:
            run_until(clock, clock.next_deadline())
            while inp(LSR) & LSR_DR:
                got.append(inp(RBR))
        out(THR, b)
    while clock.next_deadline() is not None or inp(LSR) & LSR_DR:
        while inp(LSR) & LSR_DR:
            got.append(inp(RBR))
        if clock.next_deadline() is not None:
            run_until(clock, clock.next_deadline())
    assert bytes(got) == data


def test_loopback_maps_mcr_outputs_to_msr_inputs(rig):
    """Datasheet 8.7: DTR->DSR, RTS->CTS, OUT1->RI, OUT2->DCD, with delta bits."""
    rig.out(MCR, MCR_LOOP)
    rig.inp(MSR)  # clear deltas from entering loopback
    rig.out(MCR, MCR_LOOP | MCR_DTR | MCR_RTS | MCR_OUT1 | MCR_OUT2)
    msr = rig.inp(MSR)
    assert msr & 0xF0 == MSR_CTS | MSR_DSR | MSR_RI | MSR_DCD
    assert msr & 0x0F == MSR_DCTS | MSR_DDSR | MSR_DDCD  # RI rising is not a TERI
    assert rig.inp(MSR) & 0x0F == 0  # reading MSR clears the deltas
    rig.out(MCR, MCR_LOOP)
    assert rig.inp(MSR) & MSR_TERI  # trailing edge of RI


def test_overrun_sets_oe_when_rbr_full_in_loopback(rig):
    rig.out(MCR, MCR_LOOP)
    rig.out(THR, 1)
    run_all(rig.clock)
    rig.out(THR, 2)
    run_all(rig.clock)
    lsr = rig.inp(LSR)
    assert lsr & LSR_OE
    assert not rig.inp(LSR) & LSR_OE  # reading LSR clears it
    assert rig.inp(RBR) == 2  # without FIFOs the new character overwrote RBR


def test_received_data_raises_irq_only_with_erbfi_and_out2(rig):
    rig.uart.receive(b"x")
    assert rig.irq() == 0
    rig.out(IER, IER_ERBFI)
    assert rig.inp(IIR) == IIR_RX_DATA
    assert rig.irq() == 0  # OUT2 gates the IRQ on a PC
    rig.out(MCR, MCR_OUT2)
    assert rig.irq() == 1
    assert rig.inp(RBR) == ord("x")
    assert rig.irq() == 0
    assert rig.inp(IIR) == IIR_NO_INT


def test_host_bytes_beyond_the_fifo_wait_and_are_never_lost(rig):
    rig.out(FCR, FCR_ENABLE)
    data = bytes(range(100))
    rig.uart.receive(data)
    got = bytearray()
    while rig.inp(LSR) & LSR_DR:
        got.append(rig.inp(RBR))
    assert bytes(got) == data
    assert not rig.inp(LSR) & LSR_OE


def test_fifo_trigger_level_gates_rx_interrupt(rig):
    rig.out(FCR, FCR_ENABLE | (2 << 6))  # trigger at 8
    rig.out(IER, IER_ERBFI)
    rig.out(MCR, MCR_OUT2)
    rig.uart.receive(b"1234567")
    assert rig.inp(IIR) == IIR_NO_INT | IIR_FIFOS_ENABLED
    rig.uart.receive(b"8")
    assert rig.inp(IIR) == IIR_RX_DATA | IIR_FIFOS_ENABLED
    assert rig.irq() == 1


def test_character_timeout_after_four_character_times(rig):
    """Datasheet 8.6: data below the trigger level and no activity for 4 characters -> IIR 0Ch."""
    rig.out(FCR, FCR_ENABLE | (3 << 6))  # trigger at 14
    rig.out(IER, IER_ERBFI)
    rig.out(MCR, MCR_OUT2)
    rig.uart.receive(b"ab")
    ct = rig.uart.char_time_ns()
    run_until(rig.clock, 4 * ct - 8)
    assert rig.inp(IIR) & 0x0F == IIR_NO_INT
    run_until(rig.clock, 4 * ct)
    assert rig.inp(IIR) & 0x0F == IIR_CHAR_TIMEOUT
    assert rig.irq() == 1
    assert rig.inp(RBR) == ord("a")  # reading RBR clears the timeout...
    assert rig.inp(IIR) & 0x0F == IIR_NO_INT
    run_until(rig.clock, rig.clock.now() + 4 * ct)  # ...and it comes back for what is left
    assert rig.inp(IIR) & 0x0F == IIR_CHAR_TIMEOUT
    rig.inp(RBR)
    run_all(rig.clock)
    assert rig.inp(IIR) & 0x0F == IIR_NO_INT


def test_fcr_clears_rx_fifo(rig):
    rig.out(FCR, FCR_ENABLE)
    rig.uart.receive(b"abc")
    rig.out(FCR, FCR_ENABLE | FCR_CLEAR_RX)
    assert not rig.inp(LSR) & LSR_DR


def test_iir_reports_fifo_enabled_bits(rig):
    assert rig.inp(IIR) & 0xC0 == 0
    rig.out(FCR, FCR_ENABLE)
    assert rig.inp(IIR) & 0xC0 == IIR_FIFOS_ENABLED


def test_thre_interrupt_on_enable_and_cleared_by_reading_iir(rig):
    """Table IV: THRE is reported when THR is empty and reading IIR (as its source) clears it."""
    rig.out(MCR, MCR_OUT2)
    rig.out(IER, IER_ETBEI)
    assert rig.irq() == 1
    assert rig.inp(IIR) == IIR_THRE
    assert rig.irq() == 0
    assert rig.inp(IIR) == IIR_NO_INT


def test_thre_interrupt_when_fifo_drains(rig):
    rig.out(FCR, FCR_ENABLE)
    rig.out(MCR, MCR_OUT2)
    rig.out(IER, IER_ETBEI)
    rig.inp(IIR)
    for ch in b"abc":
        rig.out(THR, ch)
    assert rig.irq() == 0
    run_until(rig.clock, 2 * rig.uart.char_time_ns())  # 'c' enters the shift register
    assert rig.irq() == 1
    assert rig.inp(IIR) & 0x0F == IIR_THRE
    rig.out(THR, ord("d"))  # writing THR also clears it
    assert rig.irq() == 0


def test_iir_priority_line_status_over_rx_over_thre_over_modem(rig):
    rig.out(MCR, MCR_LOOP | MCR_OUT2)
    rig.out(IER, IER_ERBFI | IER_ETBEI | IER_ELSI | IER_EDSSI)
    rig.out(MCR, MCR_LOOP | MCR_OUT2 | MCR_DTR)  # modem status change
    rig.out(THR, 1)
    run_all(rig.clock)
    rig.out(THR, 2)
    run_all(rig.clock)  # overrun
    assert rig.inp(IIR) == IIR_LINE_STATUS
    rig.inp(LSR)
    assert rig.inp(IIR) == IIR_RX_DATA
    rig.inp(RBR)
    assert rig.inp(IIR) == IIR_THRE
    assert rig.inp(IIR) == IIR_MODEM_STATUS
    rig.inp(MSR)
    assert rig.inp(IIR) == IIR_NO_INT


def test_break_in_loopback_sets_bi(rig):
    rig.out(MCR, MCR_LOOP)
    rig.out(LCR, LCR_8N1 | 0x40)
    rig.out(THR, 0x41)
    run_all(rig.clock)
    assert rig.inp(LSR) & LSR_BI
    assert rig.inp(RBR) == 0x41


def test_host_modem_lines_show_in_msr_with_deltas(rig):
    rig.inp(MSR)
    rig.uart.set_modem_inputs(MSR_DSR)
    msr = rig.inp(MSR)
    assert msr & 0xF0 == MSR_DSR
    assert msr & 0x0F == MSR_DCTS | MSR_DDCD


def test_state_round_trip_preserves_pending_transmission(rig):
    rig.out(FCR, FCR_ENABLE)
    for ch in b"xyz":
        rig.out(THR, ch)
    rig.uart.receive(b"in")
    snap = rig.uart.state()
    clock2 = VirtualClock(icount=True)
    clock2.instructions = rig.clock.instructions
    backend2 = MemoryBackend()
    uart2 = Uart16550(COM1_BASE, IrqLine(None, 4), clock2, backend2)
    uart2.load_state(snap)
    run_all(clock2)
    assert backend2.output == b"xyz"
    assert uart2.io_read(COM1_BASE + RBR, 1) == ord("i")


def test_backends(tmp_path):
    path = tmp_path / "serial.log"
    be = open_backend(f"file:{path}")
    assert isinstance(be, FileBackend)
    be.write(b"log")
    be.close()
    assert path.read_bytes() == b"log"
    assert isinstance(open_backend("none"), NullBackend)
    with pytest.raises(ValueError):
        open_backend("tcp:1234")


def test_stdio_backend_polls_without_blocking_and_feeds_the_uart():
    import io
    import os

    from emu.devices.uart16550 import StdioBackend

    r, w = os.pipe()
    out = io.BytesIO()
    try:
        be = StdioBackend(stdin_fd=r, stdout=out)
        assert be.poll() == b""  # nothing typed: returns at once
        os.write(w, b"hi")
        clock = VirtualClock(icount=True)
        uart = Uart16550(COM1_BASE, IrqLine(None, 4), clock, be, paced=False)
        uart.io_write(COM1_BASE + LCR, 1, LCR_8N1)
        assert uart.poll_backend() == 2
        assert uart.io_read(COM1_BASE + RBR, 1) == ord("h")
        uart.io_write(COM1_BASE + THR, 1, ord("!"))
        assert out.getvalue() == b"!"
    finally:
        os.close(r)
        os.close(w)
