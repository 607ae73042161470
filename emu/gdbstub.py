"""The gdb remote stub: `-s` (tcp::1234), `-gdb tcp:[HOST]:PORT` and `-S` (start stopped), as QEMU.

GDB's Remote Serial Protocol over TCP (gdb manual, appendix E "Remote Protocol"): packets
`$payload#cs` (cs = the sum of the payload bytes mod 256, two hex digits), acknowledged with `+`
(or `-`: send it again) until gdb asks for `QStartNoAckMode`; `}` escapes `#`, `$`, `}` and `*` (the
byte XOR 0x20) in binary data; a lone 0x03 byte while the guest runs is Ctrl-C.

The stub is single threaded and runs inside the main loop (emu/mainloop.py), which calls it at
three points:

    before_run(budget)   while the guest is stopped, serve packets (block) until gdb resumes it;
                         with breakpoints set, stop before the instruction at a breakpoint's linear
                         address (CS.base + EIP): the loop leaves before each block, and runs
                         one instruction per turn only near a breakpoint (emu/hooks.py); single-step:
                         one instruction with interrupts held off (QEMU's SSTEP_NOIRQ)
    after_run()          a single step that retired its instruction stops (T05); otherwise look for
                         Ctrl-C or a new connection at most every POLL_PERIOD_S (T02 / stop)
    idle(seconds)        the guest is halted (HLT): wait on the sockets instead of sleeping

Breakpoints (Z0 software, Z1 hardware: the same here) live in the stub: guest memory is never
patched. Watchpoints (Z2-Z4) are not supported (empty reply). While the guest is stopped its virtual
clock is frozen and `--timeout` does not run (QEMU stops its virtual clock the same way). A gdb that
connects stops the guest (as QEMU); one that detaches (`D`) or disconnects lets it run on; `k`
ends pyemu with status 0.

Memory (`m`/`M`) is linear memory as the CPU sees it: the page walk of the current CR0/CR3/CR4 is
done here in Python without side effects (no Accessed bits, no #PF, no TLB fill); unmapped linear
memory answers E14. Registers follow gdb's i386 target description (served by `qXfer`):
the 16 of org.gnu.gdb.i386.core, then st0-st7 and the eight x87 control registers, which read as
zero until the CPU state has an x87 FPU (`_x87_values`).
"""

from __future__ import annotations

import select
import socket
import time

from emu import pagewalk
from emu.cpu import state as S

PACKET_SIZE = 0x1000  # the largest packet we accept (advertised in qSupported)
POLL_PERIOD_S = 0.01  # how often a running guest looks for Ctrl-C or a new connection
IDLE_SLICE_S = 0.05  # the longest a halted guest sleeps between looks at the sockets
SIGINT = 2
SIGTRAP = 5
THREAD_ID = 1

RUNNING, STOPPED, STEPPING = "running", "stopped", "stepping"


class GdbSpecError(ValueError):
    """A bad `-gdb` spec or a port that cannot be bound; reported as one line by the CLI."""


# -- packet layer ------------------------------------------------------------------------------------
def checksum(payload: bytes) -> int:
    return sum(payload) & 0xFF


def escape(data: bytes) -> bytes:
    """Binary data in a packet: `#`, `$`, `}` and `*` become `}` and the byte XOR 0x20."""
    out = bytearray()
    for b in data:
        if b in (0x23, 0x24, 0x7D, 0x2A):
            out += bytes((0x7D, b ^ 0x20))
        else:
            out.append(b)
    return bytes(out)


def unescape(data: bytes) -> bytes:
    out = bytearray()
    it = iter(data)
    for b in it:
        if b == 0x7D:
            nxt = next(it, None)
            if nxt is None:
                break
            out.append(nxt ^ 0x20)
        else:
            out.append(b)
    return bytes(out)


def frame(payload: bytes) -> bytes:
    """`$payload#cs` (the payload must already be escaped where it holds binary data)."""
    return b"$" + payload + b"#" + b"%02x" % checksum(payload)


class PacketReader:
    """Splits a byte stream from gdb into events: ("packet", payload), ("interrupt",) for 0x03,
    ("nak",) for a `-`, ("bad",) for a packet whose checksum is wrong. Acks (`+`) are dropped."""

    def __init__(self):
        self.buf = bytearray()

    def feed(self, data: bytes) -> list[tuple]:
        self.buf += data
        events: list[tuple] = []
        buf = self.buf
        while buf:
            b = buf[0]
            if b == 0x24:  # '$'
                end = buf.find(b"#")
                if end < 0 or len(buf) < end + 3:
                    break  # incomplete: wait for the rest
                body = bytes(buf[1:end])
                cs = bytes(buf[end + 1:end + 3])
                del buf[:end + 3]
                try:
                    ok = int(cs, 16) == checksum(body)
                except ValueError:
                    ok = False
                events.append(("packet", unescape(body)) if ok else ("bad",))
            else:
                del buf[0]
                if b == 0x03:
                    events.append(("interrupt",))
                elif b == 0x2D:  # '-'
                    events.append(("nak",))
                # '+' and stray bytes between packets are ignored
        return events


class Connection:
    """One gdb on a socket: framed sends (resent on `-`), events in."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.reader = PacketReader()
        self.no_ack = False
        self.last_sent = b""
        self.closed = False
        self.pending: list[tuple] = []

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, payload: bytes | str) -> None:
        if isinstance(payload, str):
            payload = payload.encode("latin-1")
        self.last_sent = frame(payload)
        self._write(self.last_sent)

    def _write(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError:
            self.closed = True

    def poll(self, timeout: float | None) -> list[tuple]:
        """Events that arrived within `timeout` seconds (None: wait for at least one). A closed
        connection gives ("eof",)."""
        if self.pending:
            events, self.pending = self.pending, []
            return events
        while not self.closed:
            try:
                ready, _, _ = select.select([self.sock], [], [], timeout)
            except (OSError, ValueError):
                ready = [self.sock]
            if not ready:
                return []
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                self.closed = True
                break
            events = []
            for ev in self.reader.feed(data):
                if ev[0] == "packet":
                    if not self.no_ack:
                        self._write(b"+")
                    events.append(ev)
                elif ev[0] == "bad":
                    self._write(b"-")
                elif ev[0] == "nak":
                    if self.last_sent:
                        self._write(self.last_sent)
                else:
                    events.append(ev)
            if events:
                return events
            if timeout is not None:
                timeout = 0  # something arrived but no event yet: look once more, then give up
        return [("eof",)]

    def close(self) -> None:
        self.closed = True
        try:
            self.sock.close()
        except OSError:
            pass


# -- listening -----------------------------------------------------------------------------------------
def parse_spec(spec: str) -> tuple[str, int] | None:
    """`tcp:[HOST]:PORT[,server][,nowait]...` → (host, port); `none` → None."""
    if spec == "none":
        return None
    main, *opts = spec.split(",")
    for opt in opts:
        if opt not in ("server", "nowait", "server=on", "wait=off", "nodelay", "ipv4", "ipv4=on"):
            raise GdbSpecError(f"-gdb {spec}: unsupported option {opt!r}")
    kind, sep, rest = main.partition(":")
    if kind.isdigit() and not sep:  # a bare port number
        kind, rest = "tcp", ":" + kind
    if kind != "tcp" or ":" not in rest:
        raise GdbSpecError(f"-gdb {spec}: expected tcp::PORT or tcp:HOST:PORT")
    host, _, port_text = rest.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        port = int(port_text, 10)
    except ValueError:
        raise GdbSpecError(f"-gdb {spec}: bad port {port_text!r}") from None
    if not 0 < port < 65536:
        raise GdbSpecError(f"-gdb {spec}: port {port} out of range")
    return host, port


class Listener:
    """The server socket. Bound at once (so a port in use is a command-line error) but put in the
    listening state only when the main loop starts: a gdb that connects earlier gets 'connection
    refused' and retries (gdb's `tcp auto-retry`), instead of waiting on a stub that cannot answer
    while the engine loads."""

    def __init__(self, spec: str):
        host, port = parse_spec(spec)
        self.spec = spec
        self.port = port
        try:
            infos = socket.getaddrinfo(host or None, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0,
                                       socket.AI_PASSIVE)
        except socket.gaierror as exc:
            raise GdbSpecError(f"-gdb {spec}: {exc.strerror or exc}") from None
        if not host:  # all addresses, as QEMU: prefer IPv4 0.0.0.0
            infos.sort(key=lambda i: i[0] != socket.AF_INET)
        family, kind, proto, _, addr = infos[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(addr)
        except OSError as exc:
            sock.close()
            raise GdbSpecError(f"-gdb {spec}: cannot listen on port {port}: {exc.strerror or exc}") from None
        self.sock = sock
        self.listening = False

    def listen(self) -> None:
        if not self.listening:
            self.sock.listen(1)
            self.sock.setblocking(False)
            self.listening = True

    def accept(self) -> socket.socket | None:
        try:
            conn, _ = self.sock.accept()
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:
            return None
        conn.setblocking(True)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


# -- the target description -------------------------------------------------------------------------
_CORE_REGS = (("eax", "int32"), ("ecx", "int32"), ("edx", "int32"), ("ebx", "int32"),
              ("esp", "data_ptr"), ("ebp", "data_ptr"), ("esi", "int32"), ("edi", "int32"),
              ("eip", "code_ptr"), ("eflags", "i386_eflags"), ("cs", "int32"), ("ss", "int32"),
              ("ds", "int32"), ("es", "int32"), ("fs", "int32"), ("gs", "int32"))
_X87_CTRL = ("fctrl", "fstat", "ftag", "fiseg", "fioff", "foseg", "fooff", "fop")
_EFLAGS_FIELDS = (("CF", 0), ("", 1), ("PF", 2), ("AF", 4), ("ZF", 6), ("SF", 7), ("TF", 8), ("IF", 9),
                  ("DF", 10), ("OF", 11), ("NT", 14), ("RF", 16), ("VM", 17), ("AC", 18), ("VIF", 19),
                  ("VIP", 20), ("ID", 21))
# gdb's register numbers (the order of the description): 0-15 core, 16-23 st0-7, 24-31 control
REG_SIZES = (4,) * 16 + (10,) * 8 + (4,) * 8
NUM_REGS = len(REG_SIZES)
REG_EIP, REG_EFLAGS, REG_CS = 8, 9, 10
_SEG_OF_REG = {10: S.CS, 11: S.SS, 12: S.DS, 13: S.ES, 14: S.FS, 15: S.GS}


def target_xml() -> str:
    lines = ['<?xml version="1.0"?>', '<!DOCTYPE target SYSTEM "gdb-target.dtd">', '<target version="1.0">',
             "<architecture>i386</architecture>", '<feature name="org.gnu.gdb.i386.core">',
             '<flags id="i386_eflags" size="4">']
    lines += [f'<field name="{n}" start="{b}" end="{b}"/>' for n, b in _EFLAGS_FIELDS]
    lines.append("</flags>")
    lines += [f'<reg name="{n}" bitsize="32" type="{t}"/>' for n, t in _CORE_REGS]
    lines += [f'<reg name="st{i}" bitsize="80" type="i387_ext"/>' for i in range(8)]
    lines += [f'<reg name="{n}" bitsize="32" type="int" group="float"/>' for n in _X87_CTRL]
    lines += ["</feature>", "</target>"]
    return "\n".join(lines) + "\n"


def _x87_values(st) -> tuple[list[bytes], list[int]]:
    """st0-st7 as 10-byte extended reals and fctrl..fop. The CPU state has no x87 slots yet: zeros
    (connect the FPU's state here when emu/cpu/state.py gains it)."""
    return [bytes(10)] * 8, [0] * 8


# -- the stub --------------------------------------------------------------------------------------------
class GdbStub:
    def __init__(self, machine, listener: Listener, start_paused: bool = False, loop=None):
        self.m = machine
        self.core = machine.core
        self.st = machine.st
        self.listener = listener
        self.loop = loop  # the MainLoop: its --timeout deadline pauses while the guest is stopped
        self.block_exits = False  # LOG_CPU set for the breakpoints
        self.conn: Connection | None = None
        self.state = STOPPED if start_paused else RUNNING
        self.stop_signal = SIGTRAP
        self.breakpoints: set[int] = set()
        self.skip: tuple[int, int] | None = None  # (linear pc, ICOUNT): resume over this breakpoint
        self.step_icount = 0
        self.masked_irq = False
        self.next_poll = 0.0
        self.stopped_at: float | None = None
        self.frozen_clock: int | None = None
        self.xml = target_xml().encode()
        if start_paused:
            self._freeze()

    # -- hooks for the main loop -----------------------------------------------------------------
    @property
    def attached(self) -> bool:
        return self.conn is not None and not self.conn.closed

    def before_run(self, budget: int) -> int:
        """The budget for the next `core.run`, after serving gdb while the guest is stopped."""
        self.listener.listen()
        st = self.st
        while True:
            if self.m.exit_status is not None:
                return budget
            if self.state == STOPPED:
                self._serve_stopped()
                continue
            if self.state == STEPPING:
                if not st[S.HALTED]:  # a halted CPU must take its interrupt to make progress
                    self.masked_irq = True
                    st[S.INTR_LINE] = 0
                return 1
            if self.breakpoints:
                from emu.hooks import LINEAR_MASK, WINDOW  # (not at start-up: it loads numba)

                # leave compiled code before every block (emu/hooks.py explains the window)
                st[S.LOG_MASK] |= S.LOG_CPU
                self.block_exits = True
                pc = self.pc()
                if pc in self.breakpoints and self.skip != (pc, int(st[S.ICOUNT])):
                    self._stop(SIGTRAP)
                    continue
                return 1 if any(0 <= (a - pc) & LINEAR_MASK < WINDOW for a in self.breakpoints) else budget
            if self.block_exits:
                self._end_block_exits()
            return budget

    def _end_block_exits(self) -> None:
        """The last breakpoint is gone: blocks run back to back again (unless -d cpu or an address
        hook still wants an exit before each)."""
        self.block_exits = False
        loop, st = self.loop, self.st
        keep = 0
        if loop is not None:
            keep = (loop.hook_log_bits | (loop.trace.mask if loop.trace is not None else 0)) & S.LOG_CPU
        if not keep:
            st[S.LOG_MASK] &= ~S.LOG_CPU
            st[S.LOG_ACK] = 0

    def after_run(self) -> None:
        self._unmask()
        if self.state == STEPPING:
            self._step_done()
            return
        now = time.monotonic()
        if now >= self.next_poll:
            self.next_poll = now + POLL_PERIOD_S
            self._poll_running(0)

    def idle(self, seconds: float) -> None:
        """The guest is halted: wait up to `seconds` for gdb (Ctrl-C stops it and gdb is served
        right here; the CPU stays halted when gdb resumes it, as a real one would)."""
        self.listener.listen()
        self._unmask()
        if self.state == STEPPING:
            self._step_done()  # the step was the HLT itself
        if self.state != STOPPED:
            self._poll_running(min(seconds, IDLE_SLICE_S))
        while self.state == STOPPED and self.m.exit_status is None:
            self._serve_stopped()

    def _unmask(self) -> None:
        if self.masked_irq:
            self.masked_irq = False
            self.st[S.INTR_LINE] = 1 if self.m.pic.pending() else 0

    def _step_done(self) -> None:
        if int(self.st[S.ICOUNT]) != self.step_icount and self.m.exit_status is None:
            self._stop(SIGTRAP)

    def finish(self, status: int) -> None:
        """pyemu is exiting: a gdb waiting for the guest hears that it exited."""
        if self.attached and self.state != STOPPED:
            self.conn.send(f"W{status & 0xFF:02x}")
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        self.listener.close()

    # -- machine views ------------------------------------------------------------------------------
    def pc(self) -> int:
        st = self.st
        return (int(st[S.seg_slot(S.CS, S.SEG_BASE)]) + int(st[S.EIP])) & 0xFFFF_FFFF

    def _freeze(self) -> None:
        """Stop guest time and the --timeout clock while gdb holds the guest."""
        if self.stopped_at is None:
            self.stopped_at = time.monotonic()
            clock = self.m.clock
            if not clock.icount and clock._frozen_ns is None:
                clock._frozen_ns = clock.now()
                self.frozen_clock = clock._frozen_ns

    def _thaw(self) -> None:
        if self.stopped_at is not None:
            paused = time.monotonic() - self.stopped_at
            self.stopped_at = None
            loop = self.loop
            if loop is not None and loop.wall_end is not None:
                loop.wall_end += paused
            clock = self.m.clock
            if self.frozen_clock is not None:
                clock._host_start = time.monotonic_ns() - self.frozen_clock
                clock._frozen_ns = None
                self.frozen_clock = None

    # -- run control ---------------------------------------------------------------------------------
    def _stop(self, signal: int) -> None:
        self.state = STOPPED
        self.stop_signal = signal
        self._freeze()
        if self.attached:
            self.conn.send(self._stop_reply())

    def _stop_reply(self) -> str:
        return f"T{self.stop_signal:02x}thread:{THREAD_ID:02x};"

    def _resume(self, step: bool) -> None:
        st = self.st
        self.skip = (self.pc(), int(st[S.ICOUNT]))
        self.step_icount = int(st[S.ICOUNT])
        self.state = STEPPING if step else RUNNING
        self._thaw()

    def _accept(self) -> bool:
        sock = self.listener.accept()
        if sock is None:
            return False
        if self.attached:  # one gdb at a time, as QEMU
            sock.close()
            return False
        self.conn = Connection(sock)
        self.breakpoints.clear()
        return True

    def _poll_running(self, timeout: float) -> None:
        """The guest runs (or is halted): look for Ctrl-C, a disconnect or a new gdb."""
        if not self.attached:
            if self.conn is not None:
                self._drop_client()
            ready, _, _ = select.select([self.listener], [], [], timeout)
            if ready and self._accept():
                self._stop_quiet()
            return
        for ev in self.conn.poll(timeout):
            if ev[0] == "interrupt":
                self._stop(SIGINT)
            elif ev[0] == "eof":
                self._drop_client()
            elif ev[0] == "packet":
                self.conn.pending.append(ev)  # a packet while running: served at the next stop

    def _stop_quiet(self) -> None:
        """A gdb connected: stop the guest; gdb asks why with `?`."""
        self.state = STOPPED
        self.stop_signal = SIGTRAP
        self._freeze()

    def _drop_client(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.conn = None
        self.breakpoints.clear()
        if self.state != RUNNING:
            self._resume(False)

    def _serve_stopped(self) -> None:
        """Serve gdb until it resumes the guest (or kills it). Without a gdb, wait for one."""
        loop = self.loop
        fe = getattr(loop, "frontend", None)
        while self.state == STOPPED and self.m.exit_status is None:
            if fe is not None:
                fe.poll()
                if fe.quit_requested:
                    self.m.request_exit(0)
                    return
            if not self.attached:
                if self.conn is not None:
                    self.conn.close()
                    self.conn = None
                ready, _, _ = select.select([self.listener], [], [], IDLE_SLICE_S)
                if ready:
                    self._accept()
                continue
            events = self.conn.poll(IDLE_SLICE_S)
            for i, ev in enumerate(events):
                if ev[0] == "eof":
                    self._drop_client()
                    return
                if ev[0] == "packet":
                    reply = self.handle(ev[1])
                    if reply is not None and self.conn is not None:
                        self.conn.send(reply)
                    if self.state != STOPPED or self.m.exit_status is not None:
                        if self.conn is not None:
                            self.conn.pending[:0] = events[i + 1:]  # the rest waits for the next stop
                        return

    # -- packets --------------------------------------------------------------------------------------
    def handle(self, pkt: bytes) -> bytes | str | None:
        """The reply to one packet (None: no reply now, e.g. a resume answers when it stops)."""
        try:
            text = pkt.decode("latin-1")
        except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes everything
            return ""
        if not text:
            return ""
        cmd = text[0]
        try:
            if cmd == "?":
                return self._stop_reply()
            if cmd == "g":
                return self._read_all_regs()
            if cmd == "G":
                return self._write_all_regs(bytes.fromhex(text[1:]))
            if cmd == "p":
                n = int(text[1:], 16)
                return self._read_reg(n).hex() if 0 <= n < NUM_REGS else "E45"
            if cmd == "P":
                num, _, val = text[1:].partition("=")
                n = int(num, 16)
                if not 0 <= n < NUM_REGS:
                    return "E45"
                return "OK" if self._write_reg(n, bytes.fromhex(val)) else "E22"
            if cmd == "m":
                addr, _, length = text[1:].partition(",")
                n = min(int(length, 16), PACKET_SIZE // 2 - 8)
                if n == 0:
                    return ""
                data = self.read_memory(int(addr, 16), n)
                return data.hex() if data else "E14"
            if cmd == "M":
                head, _, hexdata = text[1:].partition(":")
                addr, _, length = head.partition(",")
                data = bytes.fromhex(hexdata)[: int(length, 16)]
                return "OK" if self.write_memory(int(addr, 16), data) else "E14"
            if cmd in "Zz":
                return self._breakpoint(cmd == "Z", text[1:])
            if cmd in "cCsS":
                step = cmd in "sS"
                arg = text[1:]
                if cmd in "CS":
                    arg = arg.partition(";")[2]
                if arg:
                    self.st[S.EIP] = int(arg, 16) & 0xFFFF_FFFF
                self._resume(step)
                return None
            if text.startswith("vCont"):
                return self._vcont(text)
            if cmd == "k":
                self._kill()
                return None
            if text.startswith("vKill"):
                self._kill()
                return "OK"
            if cmd == "D":
                self.conn.send("OK")
                self._drop_client()
                return None
            if cmd in "HT":
                return "OK"
            return self._query(text)
        except (ValueError, IndexError):
            return "E01"

    def _query(self, text: str) -> str | None:
        if text.startswith("qSupported"):
            return f"PacketSize={PACKET_SIZE:x};qXfer:features:read+;QStartNoAckMode+"
        if text == "QStartNoAckMode":
            self.conn.send("OK")
            self.conn.no_ack = True
            return None
        if text.startswith("qXfer:features:read:"):
            annex, _, span = text[len("qXfer:features:read:"):].partition(":")
            if annex != "target.xml":
                return "E00"
            off, _, length = span.partition(",")
            off, length = int(off, 16), int(length, 16)
            chunk = self.xml[off: off + length]
            return (b"l" if off + length >= len(self.xml) else b"m") + escape(chunk)
        if text == "qAttached" or text.startswith("qAttached:"):
            return "1"
        if text == "qC":
            return f"QC{THREAD_ID:x}"
        if text == "qfThreadInfo":
            return f"m{THREAD_ID:x}"
        if text == "qsThreadInfo":
            return "l"
        if text.startswith("qThreadExtraInfo"):
            return b"CPU#0".hex()
        if text.startswith("qSymbol"):
            return "OK"
        return ""  # unsupported: an empty reply

    def _vcont(self, text: str) -> str | None:
        if text == "vCont?":
            return "vCont;c;C;s;S"
        for action in text[len("vCont;"):].split(";"):
            what, _, tid = action.partition(":")
            if tid and tid not in ("-1", "1", "01", "p1.1", "p1.-1", "0"):
                continue
            if what[:1] in ("c", "C", "s", "S"):
                self._resume(what[0] in "sS")
                return None
        return "E01"

    def _kill(self) -> None:
        self.m.request_exit(0)  # the main loop returns 0; finish() closes the connection

    def _breakpoint(self, insert: bool, args: str) -> str:
        kind, addr, _ = (args.split(",") + ["", ""])[:3]
        if kind not in ("0", "1"):
            return ""  # watchpoints (2, 3, 4) are not supported
        a = int(addr, 16) & 0xFFFF_FFFF
        if insert:
            self.breakpoints.add(a)
        else:
            self.breakpoints.discard(a)
        return "OK"

    # -- registers ------------------------------------------------------------------------------------
    def _read_reg(self, n: int) -> bytes:
        st = self.st
        if n < 8:
            v = int(st[S.EAX + n])
        elif n == REG_EIP:
            v = int(st[S.EIP])
        elif n == REG_EFLAGS:
            v = self.core.get_flags()
        elif n < 16:
            v = int(st[S.seg_slot(_SEG_OF_REG[n], S.SEG_SEL)])
        elif n < 24:
            return _x87_values(st)[0][n - 16]
        else:
            v = _x87_values(st)[1][n - 24]
        return (v & 0xFFFF_FFFF).to_bytes(4, "little")

    def _read_all_regs(self) -> str:
        return b"".join(self._read_reg(n) for n in range(NUM_REGS)).hex()

    def _write_all_regs(self, data: bytes) -> str:
        if len(data) < sum(REG_SIZES[:16]):
            return "E01"
        off = 0
        ok = True
        for n, size in enumerate(REG_SIZES):
            chunk = data[off: off + size]
            off += size
            if len(chunk) < size:
                break
            if chunk != self._read_reg(n):  # gdb writes everything back: touch only what changed
                ok = self._write_reg(n, chunk) and ok
        return "OK" if ok else "E22"

    def _write_reg(self, n: int, raw: bytes) -> bool:
        st = self.st
        if n >= 16:
            return True  # x87: no FPU state to write yet (ignored)
        v = int.from_bytes(raw[:4].ljust(4, b"\0"), "little")
        if n < 8:
            st[S.EAX + n] = v
        elif n == REG_EIP:
            st[S.EIP] = v
        elif n == REG_EFLAGS:
            self.core.set_flags(v)
        else:
            return self._load_segment(_SEG_OF_REG[n], v & 0xFFFF)
        return True

    def _load_segment(self, seg: int, sel: int) -> bool:
        """A segment register written by gdb: real and V86 mode as a MOV does (base = sel << 4);
        protected mode reloads the cache from the descriptor without the privilege checks
        (as QEMU's gdb stub). A selector whose descriptor is missing or not present is refused."""
        from emu.cpu.access import SEGF_MASK, seg_summary
        from emu.cpu.flags import VM

        st = self.st
        o = S.seg_slot(seg, 0)
        pe = bool(int(st[S.CR0]) & 1)
        vm = bool(int(st[S.EFLAGS]) & VM)
        if not pe or vm:
            attr = int(st[o + S.SEG_ATTR])
            limit = int(st[o + S.SEG_LIMIT])
            if vm:
                attr = S.ATTR_P | S.ATTR_S | S.ATTR_WRITABLE | S.ATTR_ACCESSED | (3 << S.ATTR_DPL_SHIFT)
                attr |= S.ATTR_CODE if seg == S.CS else 0
                limit = 0xFFFF
            base = sel << 4
        elif (sel & 0xFFFC) == 0 and seg != S.CS:
            base, limit, attr = 0, 0, 0
        else:
            desc = self._descriptor(sel)
            if desc is None:
                return False
            lo, hi = desc
            attr = (hi >> 8) & 0xF0FF
            if not (attr & S.ATTR_P) or not (attr & S.ATTR_S):
                return False
            base = ((lo >> 16) & 0xFFFF) | ((hi & 0xFF) << 16) | (hi & 0xFF00_0000)
            limit = (lo & 0xFFFF) | (hi & 0xF_0000)
            if hi & (1 << 23):
                limit = (limit << 12) | 0xFFF
            if seg == S.SS:
                st[S.CPL] = (attr >> S.ATTR_DPL_SHIFT) & 3
        null = pe and not vm and (sel & 0xFFFC) == 0 and seg != S.CS
        st[o + S.SEG_SEL] = sel
        st[o + S.SEG_BASE] = base & 0xFFFF_FFFF
        st[o + S.SEG_LIMIT] = limit & 0xFFFF_FFFF
        st[o + S.SEG_ATTR] = seg_summary.py_func(attr & ~SEGF_MASK, pe, vm, null)
        self.core._update_hflags()
        return True

    def _descriptor(self, sel: int) -> tuple[int, int] | None:
        st = self.st
        index = sel & 0xFFF8
        if sel & 4:
            ldt = S.seg_slot(S.LDTR_SEG, 0)
            if (int(st[ldt + S.SEG_SEL]) & 0xFFFC) == 0:
                return None
            base, limit = int(st[ldt + S.SEG_BASE]), int(st[ldt + S.SEG_LIMIT])
        else:
            base, limit = int(st[S.GDTR_BASE]), int(st[S.GDTR_LIMIT])
        if index + 7 > limit:
            return None
        raw = self.read_memory((base + index) & 0xFFFF_FFFF, 8)
        if raw is None or len(raw) < 8:
            return None
        return int.from_bytes(raw[:4], "little"), int.from_bytes(raw[4:], "little")

    # -- memory ---------------------------------------------------------------------------------------
    def linear_to_phys(self, la: int) -> int | None:
        """The page walk of SDM Vol 3 ch. 4 (32-bit, PSE, PAE), read only: no Accessed/Dirty
        bits, no #PF, no TLB fill. None when the page is not present."""
        return pagewalk.linear_to_phys(self.core, la)

    def read_memory(self, addr: int, length: int) -> bytes | None:
        """Linear memory; a short result when a page on the way is not mapped (None: the first)."""
        return pagewalk.read_linear(self.core, addr, length)

    def write_memory(self, addr: int, data: bytes) -> bool:
        pieces = []
        while data:
            n = min(len(data), 0x1000 - (addr & 0xFFF))
            phys = self.linear_to_phys(addr)
            if phys is None:
                return False
            pieces.append((phys, data[:n]))
            addr = (addr + n) & 0xFFFF_FFFF
            data = data[n:]
        for phys, chunk in pieces:
            self.core.write_phys(phys, chunk)  # drops translated code on the page
        return True
