"""The port E9h debug console of Bochs and QEMU (`-debugcon`): every byte written goes to a sink;
a read returns E9h so a guest can detect the port ("port E9 hack")."""

from __future__ import annotations

from collections.abc import Callable

from emu.devices.bus import IoBus

DEFAULT_PORT = 0xE9
READBACK = 0xE9  # what QEMU and Bochs return on a read


class DebugCon:
    """`sink(data: bytes)` receives each byte the guest writes (a dword write sends its low byte,
    as QEMU's 1-byte port does)."""

    def __init__(self, sink: Callable[[bytes], None], port: int = DEFAULT_PORT):
        self.sink = sink
        self.port = port

    def attach(self, bus: IoBus) -> None:
        bus.register(self.port, 1, self._read, self._write, owner=self)

    def reset(self) -> None:
        pass

    def _read(self, port: int, size: int) -> int:
        return READBACK

    def _write(self, port: int, size: int, value: int) -> None:
        self.sink(bytes((value & 0xFF,)))

    def state(self) -> dict:
        return {}

    def load_state(self, state: dict) -> None:
        pass
