"""PCI configuration mechanism #1 (CONFIG_ADDRESS at CF8h, CONFIG_DATA at CFCh-CFFh), the i440FX
host bridge (00:00.0), the PIIX3 ISA bridge (00:01.0) with its IDE function (00:01.1), and the
PIIX3 reset control register at CF9h.

References: PCI Local Bus Specification 2.1, 3.2.2.3.2 "Configuration mechanism #1" and 6.1-6.2
(configuration header, command and status registers, base address registers); Intel 82441FX/82442FX
(i440FX) datasheet 3.2 (PAM0-PAM6 at 59h-5Fh, SMRAM at 72h); Intel 82371SB (PIIX3) datasheet 2.2
(PIRQ route control 60h-63h), 2.3 (IDE function: class 01 01 80, legacy ports, BMIBA at 20h) and
4.1.7 (reset control register CF9h).

A function is a `PciFunction`: 256 bytes of configuration space plus masks saying which bits a
write may change (`wmask`) and which are write-one-to-clear (`w1cmask`). Other devices (VGA, NICs)
can add their own functions to the same `PciBus`.
"""

from __future__ import annotations

from collections.abc import Callable

from emu.devices.bus import IoBus

CONFIG_ADDRESS = 0xCF8
CONFIG_DATA = 0xCFC
RESET_CONTROL = 0xCF9

# CONFIG_ADDRESS fields.
CONFIG_ENABLE = 0x80000000
CONFIG_ADDRESS_MASK = 0x80FFFFFC  # reserved bits 30-24 and 1-0 read back as zero
BUS_SHIFT, DEVICE_SHIFT, FUNCTION_SHIFT = 16, 11, 8
REGISTER_MASK = 0xFC
NO_DEVICE = 0xFFFFFFFF  # a master abort on a read returns all ones

CONFIG_SPACE_SIZE = 256

# Configuration header (type 00h) offsets.
VENDOR_ID = 0x00
DEVICE_ID = 0x02
COMMAND = 0x04
STATUS = 0x06
REVISION_ID = 0x08
PROG_IF = 0x09
SUBCLASS = 0x0A
CLASS_CODE = 0x0B
CACHE_LINE_SIZE = 0x0C
LATENCY_TIMER = 0x0D
HEADER_TYPE = 0x0E
BAR0 = 0x10
BAR_COUNT = 6
SUBSYSTEM_VENDOR_ID = 0x2C
SUBSYSTEM_ID = 0x2E
EXPANSION_ROM = 0x30  # expansion ROM base address register (PCI 3.0, 6.2.5.2)
INTERRUPT_LINE = 0x3C
INTERRUPT_PIN = 0x3D

HEADER_MULTI_FUNCTION = 0x80
COMMAND_IO = 0x0001
COMMAND_MEMORY = 0x0002
COMMAND_BUS_MASTER = 0x0004
COMMAND_PARITY = 0x0040
COMMAND_SERR = 0x0100
STATUS_FAST_BACK_TO_BACK = 0x0080
STATUS_DEVSEL_MEDIUM = 0x0200
STATUS_ERROR_BITS = 0xF900  # parity, signalled/received aborts, SERR: write 1 to clear
BAR_IO = 0x01
# All address bits of an I/O BAR are writable, as in QEMU: firmware (SeaBIOS) sizes BARs with 32-bit
# arithmetic and would see a huge size if bits 31-16 read back 0.
IO_SPACE_MASK = 0xFFFF_FFFF
BAR_MEM_PREFETCHABLE = 0x08  # memory BAR bit 3; bits 2-1 = 00b: anywhere in 32-bit space
BAR_MEM_ADDRESS_MASK = 0xFFFF_FFF0
# Expansion ROM BAR: bit 0 enables the decoder, bits 31-11 hold the address; the ROM is decoded
# only when this bit and the command register's Memory Space bit are both set (PCI 3.0, 6.2.5.2).
ROM_ENABLE = 0x01
ROM_ADDRESS_MASK = 0xFFFF_F800
ROM_MIN_SIZE = 0x800  # bits 10-1 are reserved, so a ROM decoder spans at least 2 KiB

VENDOR_INTEL = 0x8086
DEVICE_I440FX = 0x1237
DEVICE_PIIX3_ISA = 0x7000
DEVICE_PIIX3_IDE = 0x7010
CLASS_BRIDGE, SUBCLASS_HOST_BRIDGE, SUBCLASS_ISA_BRIDGE = 0x06, 0x00, 0x01
CLASS_STORAGE, SUBCLASS_IDE = 0x01, 0x01
# IDE programming interface: bit 7 = bus master capable; bits 0 and 2 = 0 (both channels in
# legacy compatibility mode at 1F0h/3F6h and 170h/376h, IRQ14/15); bits 1 and 3 = 0 (fixed).
PROG_IF_IDE_LEGACY_BUS_MASTER = 0x80
I440FX_REVISION = 0x02

# i440FX registers.
I440FX_PAM0 = 0x59
I440FX_PAM_COUNT = 7
PAM_BITS = 0x33  # RE and WE for the low and high halves of each PAM register
I440FX_SMRAM = 0x72
I440FX_SMRAM_DEFAULT = 0x02  # C_BASE_SEG = 010b: SMRAM at A0000h
I440FX_SMRAM_WRITABLE = 0x78  # D_OPEN, D_CLS, D_LCK, G_SMRAME
# PIIX3 ISA bridge registers.
PIIX3_PIRQRC = 0x60  # PIRQ[A-D] route control, 60h-63h
PIIX3_PIRQ_COUNT = 4
PIRQ_DISABLE = 0x80  # IRQEN# (bit 7) set: not routed
PIRQ_IRQ_MASK = 0x0F
PIIX3_TOM = 0x69  # top of memory
PIIX3_TOM_DEFAULT = 0x02  # 1 MiB, ISA/DMA forwarding off (PIIX3 2.2.10)
PIIX3_MISC_WRITABLE = (0x4C, 0x4E, 0x4F, 0x69, 0x6A, 0x70, 0x76, 0x77, 0x80, 0x82, 0xA0)
# PIIX3 IDE function registers.
PIIX3_IDE_BMIBA = 0x20  # BAR4: bus master IDE I/O base, 16 ports
PIIX3_IDE_BM_SIZE = 16
PIIX3_IDETIM = 0x40  # primary 40h-41h, secondary 42h-43h; bit 15 = IDE decode enable
PIIX3_SIDETIM = 0x44

# Reset control register (CF9h).
RCR_SYSTEM_RESET = 0x02  # SRST: 1 = hard reset (full system), 0 = soft (CPU INIT)
RCR_RESET_CPU = 0x04  # RCPU: a 0->1 transition starts the reset
RCR_WRITABLE = RCR_SYSTEM_RESET


class PciFunction:
    """One configuration space: bytes, a write mask and a write-one-to-clear mask."""

    def __init__(self, vendor: int, device: int, class_code: int, subclass: int, prog_if: int = 0,
                 revision: int = 0, header_type: int = 0, name: str = ""):
        self.name = name
        self.config = bytearray(CONFIG_SPACE_SIZE)
        self.wmask = bytearray(CONFIG_SPACE_SIZE)
        self.w1cmask = bytearray(CONFIG_SPACE_SIZE)
        self.bar_sizes: dict[int, int] = {}
        self.rom_size = 0  # expansion ROM decoder size (add_rom_bar); 0: no ROM BAR
        self.on_write: Callable[[int, int], None] | None = None  # (offset, size) after a write
        self.set16(VENDOR_ID, vendor)
        self.set16(DEVICE_ID, device)
        self.config[REVISION_ID] = revision
        self.config[PROG_IF] = prog_if
        self.config[SUBCLASS] = subclass
        self.config[CLASS_CODE] = class_code
        self.config[HEADER_TYPE] = header_type
        self.set_wmask(CACHE_LINE_SIZE, 0xFF)
        self.set_wmask(LATENCY_TIMER, 0xFF)
        self.set_wmask(INTERRUPT_LINE, 0xFF)
        self.set16(STATUS, STATUS_FAST_BACK_TO_BACK | STATUS_DEVSEL_MEDIUM)
        self.w1cmask[STATUS:STATUS + 2] = STATUS_ERROR_BITS.to_bytes(2, "little")
        self.power_on = bytes(self.config)

    # -- helpers for building a function ---------------------------------------------------
    def set16(self, offset: int, value: int) -> None:
        self.config[offset:offset + 2] = (value & 0xFFFF).to_bytes(2, "little")

    def get(self, offset: int, size: int) -> int:
        return int.from_bytes(self.config[offset:offset + size], "little")

    def set_wmask(self, offset: int, mask: int, size: int = 1) -> None:
        self.wmask[offset:offset + size] = mask.to_bytes(size, "little")

    def add_io_bar(self, index: int, size: int, default: int = 0) -> None:
        """An I/O BAR of `size` ports (a power of two): the low address bits and bit 0 (I/O
        space indicator) are read-only, so writing all ones reads back ~(size-1) | 1."""
        offset = BAR0 + 4 * index
        self.bar_sizes[index] = size
        self.config[offset:offset + 4] = ((default & ~(size - 1)) | BAR_IO).to_bytes(4, "little")
        self.set_wmask(offset, IO_SPACE_MASK & ~(size - 1), 4)

    def add_mem_bar(self, index: int, size: int, prefetchable: bool = False) -> None:
        """A 32-bit memory BAR of `size` bytes (a power of two, at least 16): writing all ones
        reads back ~(size-1) with the type bits, so firmware sizes it (PCI 3.0, 6.2.5.1)."""
        offset = BAR0 + 4 * index
        self.bar_sizes[index] = size
        self.config[offset:offset + 4] = (BAR_MEM_PREFETCHABLE if prefetchable else 0).to_bytes(4, "little")
        self.set_wmask(offset, BAR_MEM_ADDRESS_MASK & ~(size - 1), 4)

    def add_rom_bar(self, size: int) -> int:
        """The expansion ROM BAR for a ROM of `size` bytes, rounded up to a power of two of at
        least 2 KiB (returned): writing FFFFFFFEh reads back the size mask (PCI 3.0, 6.2.5.2)."""
        size = max(ROM_MIN_SIZE, 1 << max(0, size - 1).bit_length())
        self.rom_size = size
        self.set_wmask(EXPANSION_ROM, (ROM_ADDRESS_MASK & ~(size - 1)) | ROM_ENABLE, 4)
        return size

    def rom_decoded(self) -> int | None:
        """Where the expansion ROM answers: its address when the ROM BAR's enable bit and the
        command register's Memory Space bit are set and the address is not 0 (unassigned, as
        QEMU treats it); else None."""
        value = self.get(EXPANSION_ROM, 4)
        address = value & ROM_ADDRESS_MASK
        if not value & ROM_ENABLE or not self.get(COMMAND, 2) & COMMAND_MEMORY or not address:
            return None
        return address

    def finish(self) -> None:
        """Remember the configured contents as the reset values."""
        self.power_on = bytes(self.config)

    def reset(self) -> None:
        self.config[:] = self.power_on

    # -- access ----------------------------------------------------------------------------
    def read(self, offset: int, size: int) -> int:
        return self.get(offset, size)

    def write(self, offset: int, size: int, value: int) -> None:
        for i in range(size):
            byte = (value >> (8 * i)) & 0xFF
            at = offset + i
            wmask, w1c = self.wmask[at], self.w1cmask[at]
            old = self.config[at]
            new = (old & ~wmask) | (byte & wmask)
            new &= ~(byte & w1c)
            self.config[at] = new
        if self.on_write is not None:
            self.on_write(offset, size)

    def bar_address(self, index: int) -> int:
        value = self.get(BAR0 + 4 * index, 4)
        return value & ~0x3 if value & BAR_IO else value & ~0xF


def i440fx_host_bridge(on_pam: Callable[[int, int], None] | None = None) -> PciFunction:
    """00:00.0. PAM0-6 (59h-5Fh) decide whether C0000h-FFFFFh read/write RAM or ROM; the
    machine's memory map learns of changes through `on_pam(index, value)`."""
    fn = PciFunction(VENDOR_INTEL, DEVICE_I440FX, CLASS_BRIDGE, SUBCLASS_HOST_BRIDGE,
                     revision=I440FX_REVISION, name="i440FX")
    fn.set16(COMMAND, COMMAND_MEMORY | COMMAND_BUS_MASTER)
    fn.set_wmask(COMMAND, COMMAND_PARITY | COMMAND_SERR, 2)
    fn.set_wmask(INTERRUPT_LINE, 0)  # a host bridge has no interrupt
    # Each PAM nibble is RE (bit 0) and WE (bit 1); bits 2-3 are reserved. PAM0's low nibble is
    # reserved too: it only controls F0000h-FFFFFh.
    fn.wmask[I440FX_PAM0:I440FX_PAM0 + I440FX_PAM_COUNT] = bytes(
        [PAM_BITS & 0xF0] + [PAM_BITS] * (I440FX_PAM_COUNT - 1))
    fn.config[I440FX_SMRAM] = I440FX_SMRAM_DEFAULT
    fn.wmask[I440FX_SMRAM] = I440FX_SMRAM_WRITABLE
    fn.finish()
    if on_pam is not None:
        def notify(offset: int, size: int) -> None:
            for at in range(offset, offset + size):
                if I440FX_PAM0 <= at < I440FX_PAM0 + I440FX_PAM_COUNT:
                    on_pam(at - I440FX_PAM0, fn.config[at])
        fn.on_write = notify
    return fn


def piix3_isa_bridge(on_pirq: Callable[[int, int | None], None] | None = None) -> PciFunction:
    """00:01.0, a multi-function device. PIRQ[A-D] route control (60h-63h) default to 80h (not
    routed); `on_pirq(pirq, irq or None)` reports a change to whoever wires PCI interrupts."""
    fn = PciFunction(VENDOR_INTEL, DEVICE_PIIX3_ISA, CLASS_BRIDGE, SUBCLASS_ISA_BRIDGE,
                     header_type=HEADER_MULTI_FUNCTION, name="PIIX3")
    fn.set16(COMMAND, COMMAND_IO | COMMAND_MEMORY | COMMAND_BUS_MASTER)
    fn.set_wmask(COMMAND, COMMAND_SERR, 2)
    fn.set_wmask(INTERRUPT_LINE, 0)
    for i in range(PIIX3_PIRQ_COUNT):
        fn.config[PIIX3_PIRQRC + i] = PIRQ_DISABLE
        fn.wmask[PIIX3_PIRQRC + i] = PIRQ_DISABLE | PIRQ_IRQ_MASK
    fn.config[PIIX3_TOM] = PIIX3_TOM_DEFAULT
    for at in PIIX3_MISC_WRITABLE:
        fn.wmask[at] = 0xFF
    fn.finish()
    if on_pirq is not None:
        def notify(offset: int, size: int) -> None:
            for at in range(offset, offset + size):
                if PIIX3_PIRQRC <= at < PIIX3_PIRQRC + PIIX3_PIRQ_COUNT:
                    value = fn.config[at]
                    on_pirq(at - PIIX3_PIRQRC, None if value & PIRQ_DISABLE else value & PIRQ_IRQ_MASK)
        fn.on_write = notify
    return fn


def piix3_ide() -> PciFunction:
    """00:01.1. Both channels are in legacy mode, so BAR0-3 are not implemented (read 0, ignore
    writes); BAR4 is the 16-port bus master block. Interrupts are the legacy IRQ14/15."""
    fn = PciFunction(VENDOR_INTEL, DEVICE_PIIX3_IDE, CLASS_STORAGE, SUBCLASS_IDE,
                     prog_if=PROG_IF_IDE_LEGACY_BUS_MASTER, name="PIIX3 IDE")
    fn.set_wmask(COMMAND, COMMAND_IO | COMMAND_BUS_MASTER, 2)
    fn.set_wmask(INTERRUPT_LINE, 0)
    fn.add_io_bar(4, PIIX3_IDE_BM_SIZE)
    fn.set_wmask(PIIX3_IDETIM, 0xFFFF, 4)  # IDETIM primary and secondary
    fn.set_wmask(PIIX3_SIDETIM, 0xFF)
    fn.finish()
    return fn


class PciBus:
    """Bus 0 behind configuration mechanism #1, plus the reset control register at CF9h."""

    def __init__(self, on_reset: Callable[[bool], None] | None = None,
                 on_pam: Callable[[int, int], None] | None = None,
                 on_pirq: Callable[[int, int | None], None] | None = None):
        self.on_reset = on_reset  # called with hard=True for a system reset, False for CPU only
        self.address = 0
        self.rcr = 0
        self.functions: dict[tuple[int, int], PciFunction] = {}
        self.add(0, 0, i440fx_host_bridge(on_pam))
        self.add(1, 0, piix3_isa_bridge(on_pirq))
        self.add(1, 1, piix3_ide())

    def add(self, device: int, function: int, fn: PciFunction) -> None:
        if (device, function) in self.functions:
            raise ValueError(f"PCI 00:{device:02x}.{function} already taken")
        self.functions[(device, function)] = fn

    def function(self, device: int, function: int) -> PciFunction | None:
        return self.functions.get((device, function))

    def attach(self, bus: IoBus) -> None:
        bus.register(CONFIG_ADDRESS, 1, self._address_read, self._address_write, owner=self)
        bus.register(RESET_CONTROL, 1, self._rcr_read, self._rcr_write, owner=self)
        bus.register(CONFIG_ADDRESS + 2, 2, self._address_read, self._address_write, owner=self)
        bus.register(CONFIG_DATA, 4, self._data_read, self._data_write, owner=self)

    def reset(self) -> None:
        self.address = 0
        self.rcr = 0
        for fn in self.functions.values():
            fn.reset()

    # -- mechanism #1 ----------------------------------------------------------------------
    def _address_read(self, port: int, size: int) -> int:
        if port != CONFIG_ADDRESS or size != 4:
            return NO_DEVICE  # only a dword access at CF8h reaches CONFIG_ADDRESS
        return self.address

    def _address_write(self, port: int, size: int, value: int) -> None:
        if port == CONFIG_ADDRESS and size == 4:
            self.address = value & CONFIG_ADDRESS_MASK

    def _target(self, port: int) -> tuple[PciFunction | None, int]:
        address = self.address
        if not address & CONFIG_ENABLE or (address >> BUS_SHIFT) & 0xFF != 0:
            return None, 0
        device = (address >> DEVICE_SHIFT) & 0x1F
        function = (address >> FUNCTION_SHIFT) & 0x7
        fn = self.functions.get((device, function))
        if fn is not None and function and not self._multi_function(device):
            fn = None  # functions 1-7 answer only when function 0 says it is multi-function
        return fn, (address & REGISTER_MASK) + (port - CONFIG_DATA)

    def _multi_function(self, device: int) -> bool:
        fn0 = self.functions.get((device, 0))
        return fn0 is not None and bool(fn0.config[HEADER_TYPE] & HEADER_MULTI_FUNCTION)

    def _data_read(self, port: int, size: int) -> int:
        fn, offset = self._target(port)
        if fn is None:
            return NO_DEVICE
        size = min(size, CONFIG_SPACE_SIZE - offset)
        return fn.read(offset, size)

    def _data_write(self, port: int, size: int, value: int) -> None:
        fn, offset = self._target(port)
        if fn is not None:
            fn.write(offset, min(size, CONFIG_SPACE_SIZE - offset), value)

    # -- CF9h -------------------------------------------------------------------------------
    def _rcr_read(self, port: int, size: int) -> int:
        if size != 1:
            return NO_DEVICE
        return self.rcr

    def _rcr_write(self, port: int, size: int, value: int) -> None:
        """Writing RCPU = 1 resets: hard (SRST = 1) or soft (CPU INIT) per SRST in the same write."""
        if size != 1:
            return
        self.rcr = value & RCR_WRITABLE  # RCPU itself is not stored: it reads back 0
        if value & RCR_RESET_CPU and self.on_reset is not None:
            self.on_reset(bool(value & RCR_SYSTEM_RESET))

    # -- state -----------------------------------------------------------------------------
    def state(self) -> dict:
        return {"address": self.address, "rcr": self.rcr,
                "functions": {f"{d}.{f}": list(fn.config) for (d, f), fn in self.functions.items()}}

    def load_state(self, state: dict) -> None:
        self.address = int(state["address"])
        self.rcr = int(state["rcr"])
        for (d, f), fn in self.functions.items():
            saved = state["functions"].get(f"{d}.{f}")
            if saved is not None:
                fn.config[:] = bytes(saved)
