"""The terminal front end: the VGA text screen drawn with ANSI escapes, and host input.

Modes (cli.md):
- `curses`: the VGA text page drawn in the terminal (the default when stdout is a TTY); typed keys
  go to the PS/2 keyboard as set-1 scancodes (emu/hostkeys.py);
- `none`: no screen; stdin, if any, still types on the PS/2 keyboard;
- `nographic`: no screen; COM1 is stdin/stdout (the serial backend writes, this reads).

On a TTY the terminal is put in raw mode and restored on every way out (normal exit, errors,
Ctrl-C) by `close()`, which the CLI calls from a `finally`. In raw mode Ctrl-A x quits, Ctrl-A
Ctrl-A sends a Ctrl-A (QEMU's escape), and with `-nographic` Ctrl-A c switches the terminal between
COM1 and the monitor (`monitor`, an emu.monitor.MuxMonitor), as QEMU's `mon:stdio`.
"""

from __future__ import annotations

import os
import select
import sys
import time
from collections import deque

from emu import hostkeys

CTRL_A = 0x01
RENDER_PERIOD_S = 0.04
ESC_SETTLE_S = 0.03  # a lone ESC waits this long for the rest of an escape sequence


class Frontend:
    def __init__(self, machine, mode: str = "none", stdin_fd: int | None = 0, stdout=None,
                 serial_input: bool = False):
        self.m = machine
        self.mode = mode
        self.fd = stdin_fd
        self.out = stdout if stdout is not None else sys.stdout
        self.serial_input = serial_input or mode == "nographic"
        self.input_closed = stdin_fd is None
        self.quit_requested = False
        self.keys: deque[bytes] = deque()
        self._saved_tty = None
        self._escape = False
        self.monitor = None  # Ctrl-A c: an object with enter(), leave() and feed(bytes)
        self.monitor_active = False
        self._prev_frame = None
        self._last_render = 0.0
        self._tty_in = not self.input_closed and os.isatty(stdin_fd)
        if not self.input_closed:
            try:
                os.fstat(stdin_fd)
            except OSError:
                self.input_closed = True

    # -- terminal state --------------------------------------------------------------------------
    def open(self) -> None:
        if self._tty_in and self.mode in ("curses", "nographic"):
            import termios
            import tty

            self._saved_tty = termios.tcgetattr(self.fd)
            tty.setraw(self.fd)
        if self.mode == "curses":
            self.out.write("\x1b[?25l\x1b[2J\x1b[H")
            self.out.flush()

    def close(self) -> None:
        if self.mode == "curses":
            try:
                self.render(force=True)
                rows = self.m.vga.rows()
                self.out.write(f"\x1b[0m\x1b[?25h\x1b[{rows + 1};1H\r\n")
                self.out.flush()
            except (OSError, ValueError):
                pass
        if self._saved_tty is not None:
            import termios

            try:
                termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved_tty)
            except (OSError, termios.error):
                pass
            self._saved_tty = None

    # -- screen ----------------------------------------------------------------------------------
    def render(self, force: bool = False) -> None:
        if self.mode != "curses":
            return
        now = time.monotonic()
        if not force and now - self._last_render < RENDER_PERIOD_S:
            return
        self._last_render = now
        text, frame = self.m.vga.render_ansi(self._prev_frame)
        self._prev_frame = frame
        if text:
            self.out.write(text)
            self.out.flush()

    # -- input -----------------------------------------------------------------------------------
    def _read(self, timeout: float) -> bytes:
        if self.input_closed:
            if timeout > 0:
                time.sleep(timeout)
            return b""
        try:
            ready, _, _ = select.select([self.fd], [], [], max(0.0, timeout))
        except (OSError, ValueError):
            self.input_closed = True
            return b""
        if not ready:
            return b""
        try:
            data = os.read(self.fd, 4096)
        except OSError:
            data = b""
        if not data:
            self.input_closed = True
        return data

    def _filter_escape(self, data: bytes) -> bytes:
        """QEMU's Ctrl-A prefix, on a TTY only."""
        if not self._tty_in:
            return data
        out = bytearray()
        mon = bytearray()
        for b in data:
            if self._escape:
                self._escape = False
                if b in (ord("x"), ord("X")):
                    self.quit_requested = True
                elif b == CTRL_A:
                    (mon if self.monitor_active else out).append(CTRL_A)
                elif b in (ord("c"), ord("C")) and self.monitor is not None:
                    if mon:
                        self.monitor.feed(bytes(mon))
                        mon.clear()
                    self.monitor_active = not self.monitor_active
                    (self.monitor.enter if self.monitor_active else self.monitor.leave)()
                continue
            if b == CTRL_A:
                self._escape = True
                continue
            (mon if self.monitor_active else out).append(b)
        if mon:
            self.monitor.feed(bytes(mon))
        return bytes(out)

    def feed(self, data: bytes) -> None:
        data = self._filter_escape(data)
        if not data:
            return
        if self.serial_input:
            self.m.serial[0].receive(data)
            return
        if data == b"\x1b" and self._tty_in:  # a lone ESC may be the start of a sequence
            more = self._read(ESC_SETTLE_S)
            data += self._filter_escape(more)
        self.keys.extend(hostkeys.decode(data))

    def _pump_keys(self) -> None:
        """One keystroke at a time, each when the keyboard has sent the previous one."""
        kbd = self.m.i8042
        if self.keys and not kbd.keyboard.has_data() and kbd.obuf_src is None:
            kbd.key_set1(self.keys.popleft())

    def poll(self) -> None:
        data = self._read(0)
        if data:
            self.feed(data)
        self._pump_keys()
        self.render()

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`, waking early on input; True when input arrived."""
        self.render()
        if self.keys:
            seconds = min(seconds, 0.005)
        data = self._read(seconds)
        if data:
            self.feed(data)
        self._pump_keys()
        return bool(data)
