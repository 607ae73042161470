"""System control port A (92h), the PS/2 "fast A20 and reset" port that chipsets such as the PIIX3
keep: bit 1 gates address line 20, bit 0 pulses a CPU reset (IBM PS/2 Technical Reference,
"System control port A"; Intel PIIX3 82371SB 4.1.9 port 92h)."""

from __future__ import annotations

from collections.abc import Callable

from emu.devices.bus import IoBus

PORT = 0x92
FAST_RESET = 0x01  # writing 1 resets the CPU; reads back 0 once the reset is done
A20_ENABLE = 0x02
WRITABLE = A20_ENABLE  # other bits (security lock, disk activity LEDs) are not modelled


class Port92:
    """Port 92h. `on_a20(enabled)` is called when bit 1 changes; `on_reset()` on a fast reset."""

    def __init__(self, on_a20: Callable[[bool], None] | None = None,
                 on_reset: Callable[[], None] | None = None):
        self.on_a20 = on_a20
        self.on_reset = on_reset
        self.value = 0

    def attach(self, bus: IoBus) -> None:
        bus.register(PORT, 1, self._read, self._write, owner=self)

    def reset(self) -> None:
        self.value = 0

    @property
    def a20(self) -> bool:
        return bool(self.value & A20_ENABLE)

    def _read(self, port: int, size: int) -> int:
        return self.value

    def _write(self, port: int, size: int, value: int) -> None:
        old = self.value
        self.value = value & WRITABLE
        if (old ^ self.value) & A20_ENABLE and self.on_a20 is not None:
            self.on_a20(self.a20)
        if value & FAST_RESET and self.on_reset is not None:
            self.on_reset()

    def state(self) -> dict:
        return {"value": self.value}

    def load_state(self, state: dict) -> None:
        self.value = int(state["value"])
