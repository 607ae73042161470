"""QEMU's isa-debug-exit device (`-device isa-debug-exit,iobase=0xf4,iosize=0x04`): a guest write
of V asks the emulator to exit with status (V << 1) | 1, so a test guest can report pass/fail
without a status that collides with a normal exit of 0."""

from __future__ import annotations

from collections.abc import Callable

from emu.devices.bus import IoBus

DEFAULT_IOBASE = 0xF4
DEFAULT_IOSIZE = 0x04


def exit_status(value: int) -> int:
    return (value << 1) | 1


class DebugExit:
    """Claims [iobase, iobase+iosize); any write calls `on_exit(status)`. Reads return 0."""

    def __init__(self, on_exit: Callable[[int], None], iobase: int = DEFAULT_IOBASE,
                 iosize: int = DEFAULT_IOSIZE):
        self.on_exit = on_exit
        self.iobase = iobase
        self.iosize = iosize

    def attach(self, bus: IoBus) -> None:
        bus.register(self.iobase, self.iosize, self._read, self._write, owner=self)

    def reset(self) -> None:
        pass

    def _read(self, port: int, size: int) -> int:
        return 0

    def _write(self, port: int, size: int, value: int) -> None:
        self.on_exit(exit_status(value))

    def state(self) -> dict:
        return {}

    def load_state(self, state: dict) -> None:
        pass
