"""Two Intel 8237A DMA controllers as wired in the PC/AT, with the 74LS612 page registers.

References: Intel 8237A datasheet (order 231466), "Register description" (current/base address and
word count, command, mode, request, mask, status, temporary), "Software commands" (clear byte
pointer flip-flop, master clear, clear mask register); IBM PC/AT technical reference for the wiring:
DMA1 at 00h-0Fh (channels 0-3, byte transfers), DMA2 at C0h-DFh on even ports (channels 4-7, word
transfers, addresses in words), channel 4 cascades DMA1; page registers at 80h-8Fh.

Device side: a device does not toggle DREQ byte by byte. It calls `transfer_to_memory(channel, data)`
(a device-to-memory "write" transfer) or `transfer_from_memory(channel, n)` (a memory-to-device
"read" transfer) for as much as it has; the controller moves bytes until the data ends or the word
count reaches terminal count (TC), whichever is first, and returns what moved. `terminal_count(ch)`
says whether the last transfer ended at TC, as the EOP pin tells a floppy controller. Single, demand
and block modes therefore behave alike; verify transfers consume the count without touching memory.

Emulation choices: the current address wraps within its 64 KiB (128 KiB for DMA2) page, as on the
chip (the page register does not increment). Masking channel 4 does not block DMA1. Port 80h (POST
codes) is left to other devices; the other unused page-register ports are scratch registers.
"""

from __future__ import annotations

from collections.abc import Callable

from emu.devices.bus import IoBus

DMA1_BASE = 0x00
DMA2_BASE = 0xC0
DMA2_STRIDE = 2  # DMA2's registers sit on even ports (A0 of the chip is wired to A1)
REGISTERS = 16
PAGE_BASE = 0x81  # 81h-8Fh (80h is the POST code port)
PAGE_PORTS = 0x0F
CHANNELS = 8
CASCADE_CHANNEL = 4

# The page register port of each channel (PC/AT); the others are scratch.
PAGE_PORT = {0: 0x87, 1: 0x83, 2: 0x81, 3: 0x82, 4: 0x8F, 5: 0x8B, 6: 0x89, 7: 0x8A}

# Register offsets within one controller (datasheet table 2)
REG_STATUS_COMMAND = 8
REG_REQUEST = 9
REG_SINGLE_MASK = 10
REG_MODE = 11
REG_CLEAR_FLIPFLOP = 12
REG_TEMP_MASTER_CLEAR = 13
REG_CLEAR_MASK = 14
REG_WRITE_ALL_MASK = 15

# Mode register
MODE_CHANNEL = 0x03
MODE_TYPE = 0x0C
TYPE_VERIFY = 0x00
TYPE_WRITE = 0x04  # device -> memory
TYPE_READ = 0x08  # memory -> device
MODE_AUTOINIT = 0x10
MODE_DECREMENT = 0x20
MODE_SELECT = 0xC0
MODE_DEMAND = 0x00
MODE_SINGLE = 0x40
MODE_BLOCK = 0x80
MODE_CASCADE = 0xC0

# Command register
CMD_DISABLE = 0x04  # controller disable

# Request / single mask registers: bit 2 = set, bits 0-1 = channel
REQ_SET = 0x04
MASK_SET = 0x04

STATUS_TC_SHIFT = 0  # status bits 0-3: channel reached TC (cleared by reading status)
STATUS_REQ_SHIFT = 4  # status bits 4-7: channel request pending

MemRead = Callable[[int, int], bytes]
MemWrite = Callable[[int, bytes], None]


class DmaChannel:
    __slots__ = ("base_addr", "base_count", "addr", "count", "mode", "page", "tc")

    def __init__(self):
        self.base_addr = self.base_count = self.addr = self.count = 0
        self.mode = 0
        self.page = 0
        self.tc = False  # the last transfer ended at terminal count


class Dma8237:
    """One 8237A: channels `first`..`first+3`; `word` = 16-bit transfers (DMA2)."""

    def __init__(self, first: int, word: bool):
        self.first = first
        self.word = word
        self.channels = [DmaChannel() for _ in range(4)]
        self.master_clear()

    def master_clear(self) -> None:
        """Datasheet "Master clear": command, status, request, temporary, flip-flop cleared, all
        channels masked."""
        self.command = 0
        self.status = 0
        self.request = 0
        self.temp = 0
        self.flipflop = 0
        self.mask = 0x0F

    def _flip(self) -> int:
        f = self.flipflop
        self.flipflop ^= 1
        return f

    def read(self, reg: int) -> int:
        if reg < REG_STATUS_COMMAND:
            ch = self.channels[reg >> 1]
            value = ch.count if reg & 1 else ch.addr
            return (value >> 8 if self._flip() else value) & 0xFF
        if reg == REG_STATUS_COMMAND:
            value = self.status | self.request << STATUS_REQ_SHIFT
            self.status = 0  # datasheet: TC bits are cleared by a status read
            return value
        if reg == REG_TEMP_MASTER_CLEAR:
            return self.temp
        if reg == REG_WRITE_ALL_MASK:
            return 0xF0 | self.mask  # readable on the PIIX/82374 family
        return 0xFF

    def write(self, reg: int, value: int) -> None:
        if reg < REG_STATUS_COMMAND:
            ch = self.channels[reg >> 1]
            high = self._flip()
            if reg & 1:  # word count: base and current are written together
                ch.base_count = (ch.base_count & 0xFF) | value << 8 if high else \
                    (ch.base_count & 0xFF00) | value
                ch.count = ch.base_count
            else:
                ch.base_addr = (ch.base_addr & 0xFF) | value << 8 if high else \
                    (ch.base_addr & 0xFF00) | value
                ch.addr = ch.base_addr
        elif reg == REG_STATUS_COMMAND:
            self.command = value
        elif reg == REG_REQUEST:
            bit = 1 << (value & MODE_CHANNEL)
            self.request = (self.request | bit) if value & REQ_SET else (self.request & ~bit)
        elif reg == REG_SINGLE_MASK:
            bit = 1 << (value & MODE_CHANNEL)
            self.mask = (self.mask | bit) if value & MASK_SET else (self.mask & ~bit)
        elif reg == REG_MODE:
            self.channels[value & MODE_CHANNEL].mode = value
        elif reg == REG_CLEAR_FLIPFLOP:
            self.flipflop = 0
        elif reg == REG_TEMP_MASTER_CLEAR:
            self.master_clear()
        elif reg == REG_CLEAR_MASK:
            self.mask = 0
        elif reg == REG_WRITE_ALL_MASK:
            self.mask = value & 0x0F

    def state(self) -> dict:
        return {"command": self.command, "status": self.status, "request": self.request,
                "temp": self.temp, "flipflop": self.flipflop, "mask": self.mask,
                "channels": [[c.base_addr, c.base_count, c.addr, c.count, c.mode, c.page, c.tc]
                             for c in self.channels]}

    def load_state(self, s: dict) -> None:
        self.command, self.status, self.request = s["command"], s["status"], s["request"]
        self.temp, self.flipflop, self.mask = s["temp"], s["flipflop"], s["mask"]
        for c, v in zip(self.channels, s["channels"], strict=True):
            c.base_addr, c.base_count, c.addr, c.count, c.mode, c.page, c.tc = v


class DmaController:
    """DMA1 + DMA2 + page registers, and the transfer API devices use."""

    def __init__(self, mem_read: MemRead, mem_write: MemWrite):
        self.mem_read = mem_read
        self.mem_write = mem_write
        self.dma = [Dma8237(0, word=False), Dma8237(4, word=True)]
        self.scratch = bytearray(PAGE_PORTS)  # page-register ports no channel uses

    # -- wiring ----------------------------------------------------------------------------------
    def attach(self, bus: IoBus) -> None:
        bus.register(DMA1_BASE, REGISTERS, self.io_read, self.io_write, owner=self)
        bus.register(DMA2_BASE, REGISTERS * DMA2_STRIDE, self.io_read, self.io_write, owner=self)
        bus.register(PAGE_BASE, PAGE_PORTS, self.io_read, self.io_write, owner=self)

    def reset(self) -> None:
        for d in self.dma:
            d.master_clear()
            for c in d.channels:
                c.__init__()
        self.scratch = bytearray(PAGE_PORTS)

    def _channel(self, n: int) -> tuple[Dma8237, DmaChannel]:
        d = self.dma[n >> 2]
        return d, d.channels[n & 3]

    def _page_channel(self, port: int) -> int | None:
        for n, p in PAGE_PORT.items():
            if p == port:
                return n
        return None

    # -- ports -----------------------------------------------------------------------------------
    def io_read(self, port: int, size: int) -> int:
        if DMA1_BASE <= port < DMA1_BASE + REGISTERS:
            return self.dma[0].read(port - DMA1_BASE)
        if DMA2_BASE <= port < DMA2_BASE + REGISTERS * DMA2_STRIDE:
            off = port - DMA2_BASE
            return self.dma[1].read(off // DMA2_STRIDE) if off % DMA2_STRIDE == 0 else 0xFF
        n = self._page_channel(port)
        if n is not None:
            return self._channel(n)[1].page
        return self.scratch[port - PAGE_BASE]

    def io_write(self, port: int, size: int, value: int) -> None:
        value &= 0xFF
        if DMA1_BASE <= port < DMA1_BASE + REGISTERS:
            self.dma[0].write(port - DMA1_BASE, value)
        elif DMA2_BASE <= port < DMA2_BASE + REGISTERS * DMA2_STRIDE:
            off = port - DMA2_BASE
            if off % DMA2_STRIDE == 0:
                self.dma[1].write(off // DMA2_STRIDE, value)
        else:
            n = self._page_channel(port)
            if n is not None:
                self._channel(n)[1].page = value
            else:
                self.scratch[port - PAGE_BASE] = value

    # -- device API ------------------------------------------------------------------------------
    def ready(self, channel: int) -> bool:
        """The channel would accept a transfer now (unmasked, controller enabled, not cascade)."""
        d, c = self._channel(channel)
        return (not d.mask >> (channel & 3) & 1 and not d.command & CMD_DISABLE
                and c.mode & MODE_SELECT != MODE_CASCADE)

    def terminal_count(self, channel: int) -> bool:
        """Whether the last transfer on `channel` ended at terminal count (EOP)."""
        return self._channel(channel)[1].tc

    def remaining(self, channel: int) -> int:
        """Bytes left before terminal count."""
        d, c = self._channel(channel)
        return (c.count + 1) * (2 if d.word else 1)

    def transfer_to_memory(self, channel: int, data: bytes) -> int:
        """A device-to-memory transfer of up to len(data) bytes; returns the bytes moved."""
        return len(self._transfer(channel, TYPE_WRITE, len(data), data))

    def transfer_from_memory(self, channel: int, n: int) -> bytes:
        """A memory-to-device transfer of up to `n` bytes; returns them."""
        return self._transfer(channel, TYPE_READ, n, None)

    def _transfer(self, channel: int, direction: int, nbytes: int, data: bytes | None) -> bytes:
        d, c = self._channel(channel)
        c.tc = False
        if not self.ready(channel):
            return b""
        kind = c.mode & MODE_TYPE
        unit = 2 if d.word else 1
        units = min(nbytes // unit, c.count + 1)
        if units <= 0:
            return b""
        moved = bytearray()
        step = -1 if c.mode & MODE_DECREMENT else 1
        # the address counter is 16 bits; DMA2 shifts it left by one (word addresses), and the
        # page register supplies A16-A23 (DMA2: A17-A23, its bit 0 unused)
        page_base = (c.page & 0xFE) << 16 if d.word else c.page << 16
        done = 0
        while done < units:
            # a contiguous run until the counter wraps within the page
            room = (0x10000 - c.addr) if step > 0 else c.addr + 1
            run = min(units - done, room)
            lo = c.addr if step > 0 else c.addr - run + 1
            phys = page_base + lo * unit
            if direction == TYPE_WRITE:
                chunk = data[done * unit:(done + run) * unit]
                if step < 0:  # the first unit lands at the highest address
                    chunk = b"".join(chunk[i * unit:(i + 1) * unit] for i in range(run - 1, -1, -1))
                if kind == TYPE_WRITE:
                    self.mem_write(phys, bytes(chunk))
                moved += data[done * unit:(done + run) * unit]
            else:
                if kind == TYPE_READ:
                    chunk = self.mem_read(phys, run * unit)
                    if step < 0:
                        chunk = b"".join(chunk[i * unit:(i + 1) * unit] for i in range(run - 1, -1, -1))
                else:  # verify (or a mismatched type): the count runs, no memory cycle
                    chunk = bytes(run * unit)
                moved += chunk
            c.addr = (c.addr + step * run) & 0xFFFF
            done += run
        c.count -= units
        if c.count < 0:  # the count rolled from 0 to FFFFh: terminal count
            c.tc = True
            d.status |= 1 << ((channel & 3) + STATUS_TC_SHIFT)
            d.request &= ~(1 << (channel & 3))
            if c.mode & MODE_AUTOINIT:
                c.addr, c.count = c.base_addr, c.base_count
            else:
                c.count = 0xFFFF
                d.mask |= 1 << (channel & 3)
        return bytes(moved)

    # -- state -----------------------------------------------------------------------------------
    def state(self) -> dict:
        return {"dma": [d.state() for d in self.dma], "scratch": bytes(self.scratch)}

    def load_state(self, s: dict) -> None:
        for d, ds in zip(self.dma, s["dma"], strict=True):
            d.load_state(ds)
        self.scratch = bytearray(s["scratch"])
