"""The PC: a CpuCore with the devices of QEMU's `pc` machine around it, and the firmware.

`Machine(config)` builds everything, wires the IRQ lines into the 8259 pair (whose INTR output is
mirrored into the CPU state's INTR_LINE), the A20 gate (i8042 output port, port 92h, INT 15h) and
the reset sources (triple fault, 0x64<-FEh, port 92h bit 0, CF9h). The run loop over the CPU's
exits lives in emu/mainloop.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from emu.clock import VirtualClock
from emu.cpu import state as S
from emu.devices.ata import AtaController, AtaDrive, AtapiDrive
from emu.devices.bus import IoBus
from emu.devices.debug_exit import DebugExit
from emu.devices.debugcon import DEFAULT_PORT as DEBUGCON_PORT
from emu.devices.debugcon import DebugCon
from emu.devices.diskimage import DiskError, DiskImage, floppy_medium
from emu.devices.dma8237 import DmaController
from emu.devices.fdc82077 import Fdc82077, FloppyDrive
from emu.devices.i8042 import I8042
from emu.devices.imageformat import DriveSpec, open_image
from emu.devices.pci import PciBus
from emu.devices.pic8259 import Pic8259Pair
from emu.devices.pit8254 import Pit8254
from emu.devices.port92 import Port92
from emu.devices.rtc146818 import Rtc146818
from emu.devices.uart16550 import NullBackend, Uart16550
from emu.devices.vga import Vga
from emu.tsc import skip_host as tsc_skip_host

MB = 1 << 20
VGA_WINDOW = (0xA0000, 0xC0000)
VGA_ROM_NAME = "vgabios-stdvga.bin"  # SeaVGABIOS for QEMU's std VGA, shipped beside SeaBIOS's bios.bin
VGA_ROM_MAX = 0x10000  # C0000-CFFFF: what firmware leaves a VGA BIOS


class MachineError(Exception):
    """A configuration problem reported as `pyemu: error: ...`."""


@dataclass
class MachineConfig:
    ram_mb: int = 128
    # paths (raw or qcow2, probed) or -drive DriveSpecs (emu/devices/imageformat.py)
    floppies: list[str | DriveSpec | None] = field(default_factory=lambda: [None, None])
    disks: list[str | DriveSpec | None] = field(default_factory=lambda: [None, None])
    cdrom: str | DriveSpec | None = None
    boot_order: str = ""
    snapshot: bool = False
    icount: bool = False
    icount_shift: int = 3
    icount_sleep: bool = True  # -icount sleep=off: idle time is skipped instead of slept
    tier1_threshold: int | None = None  # -accel tcg,tier=0 (0: interpreter only) / threshold=N; None: default
    bios_file: str | None = None
    vga_rom: str | None = None  # the PCI VGA's ROM (--vga-rom); default: VGA_ROM_NAME beside -bios
    serial_backend: object = None  # a uart16550 backend for COM1
    debugcon: object = None  # callable(bytes) or None
    debugcon_ports: tuple[int, ...] = ()  # more ports for it (-device isa-debugcon,iobase=N), besides E9h
    debug_exit: tuple[int, int] | None = None  # (iobase, iosize)
    no_reboot: bool = False
    demo: bool = False
    kernel: str | None = None
    initrd: str | None = None
    append: str | None = None
    floppy_images: list = field(default_factory=list)  # ready DiskImage objects (the demo, tests)
    disk_images: list = field(default_factory=list)
    cdrom_image: object = None  # a ready DiskImage (tests)


class Machine:
    def __init__(self, cfg: MachineConfig):
        self.cfg = cfg
        self.messages: list[str] = []
        self.exit_status: int | None = None
        self.reset_requested = False
        self.reset_cause = ""  # what asked for the pending reset (-no-reboot says it)
        self.ram_bytes = cfg.ram_mb * MB
        if cfg.ram_mb < 1 or self.ram_bytes > 0xE000_0000:
            raise MachineError(f"-m {cfg.ram_mb}: RAM must be between 1 and 3584 MiB")
        self.clock = VirtualClock(icount=cfg.icount, shift=cfg.icount_shift)
        self.icount_sleep = cfg.icount_sleep
        self.floppies: list[DiskImage | None] = [None, None]
        self.disks: list[DiskImage | None] = [None, None]
        self.cdrom: DiskImage | None = None
        self.direct_boot = None
        if cfg.kernel is not None:
            from emu.bootproto import BootError, DirectBoot

            if cfg.bios_file is not None:
                raise MachineError("-kernel needs the built-in BIOS (not -bios)")
            try:
                self.direct_boot = DirectBoot(cfg.kernel, cfg.initrd, cfg.append or "", self.ram_bytes)
            except BootError as exc:
                raise MachineError(str(exc)) from None
        elif cfg.initrd is not None or cfg.append is not None:
            raise MachineError("-initrd and -append need -kernel")
        self._open_images()
        self.builtin_bios = cfg.bios_file is None
        if self.builtin_bios:
            from bios.rom import build_rom

            rom = build_rom()
        else:
            from emu.bootproto import BootError, read_input_file

            try:
                rom = read_input_file(cfg.bios_file, "-bios", 0x40000)
            except BootError as exc:
                raise MachineError(str(exc)) from None
            if not rom or len(rom) % 0x10000 or len(rom) > 0x40000:
                raise MachineError(f"-bios {cfg.bios_file}: a BIOS image must be 64, 128, 192 or 256 KiB")
        self.rom = rom
        self.vga_rom = self._load_vga_rom()
        # the engine (numba) is loaded only now: every mistake in the configuration or the files
        # above is reported without it
        from emu.cpu.core import CpuCore

        self.core = CpuCore(self.ram_bytes, rom, tier1_threshold=cfg.tier1_threshold)
        self.core.compile_hook = self._skip_compile_time
        if cfg.icount:
            self.core.tier1.background = False  # blocks turn compiled at the same points on every run
        self.st = self.core.st
        self.bus = IoBus()
        self._mapped: dict[int, tuple] = {}  # map_region: id(region) -> (base, replaced pmap entries)
        self._build_devices()
        self.bios = None
        if self.builtin_bios:
            from bios.rom import TRAP_PORT
            from bios.services import Bios

            self.bios = Bios(self)
            self.bus.register(TRAP_PORT, 1, None, self.bios.trap, owner=self.bios)

    # -- construction ----------------------------------------------------------------------------
    def _check_drives_distinct(self) -> None:
        """One file as two drives, one of them written (e.g. `-fda x.img -hda x.img`), is refused by
        name: the image lock would otherwise call the other drive 'another process'."""
        import os

        cfg = self.cfg
        seen: dict[tuple[int, int], tuple[str, bool]] = {}
        drives = [(f"-fd{'ab'[i]}", p, not cfg.snapshot) for i, p in enumerate(cfg.floppies[:2])]
        drives += [(f"-hd{'ab'[i]}", p, not cfg.snapshot) for i, p in enumerate(cfg.disks[:2])]
        drives.append(("-cdrom", cfg.cdrom, False))
        for option, path, writes in drives:
            if isinstance(path, DriveSpec):
                option, writes, path = "-drive", writes and not (path.snapshot or path.readonly), path.file
            try:
                st = os.stat(path) if path else None
            except OSError:
                continue  # DiskImage.open says what is wrong with it
            if st is None:
                continue
            key = (st.st_dev, st.st_ino)
            if key in seen and (writes or seen[key][1]):
                raise MachineError(f"{path} is both {seen[key][0]} and {option}: one image, one drive "
                                   "(unless -snapshot)")
            seen.setdefault(key, (option, writes))

    def _open_images(self) -> None:
        cfg = self.cfg
        self._check_drives_distinct()

        def open_one(item, readonly=False):  # a path (format probed) or a -drive DriveSpec
            if isinstance(item, DriveSpec):
                return item.open(snapshot=cfg.snapshot)
            return open_image(item, readonly=readonly, snapshot=cfg.snapshot and not readonly)

        try:
            for i, path in enumerate(cfg.floppies[:2]):
                if path:
                    self.floppies[i] = open_one(path)
            for i, img in enumerate(cfg.floppy_images[:2]):
                if img is not None and self.floppies[i] is None:
                    self.floppies[i] = img
            for i, path in enumerate(cfg.disks[:2]):
                if path:
                    self.disks[i] = open_one(path)
            for i, img in enumerate(cfg.disk_images[:2]):
                if img is not None and self.disks[i] is None:
                    self.disks[i] = img
            if cfg.cdrom:
                self.cdrom = open_one(cfg.cdrom, readonly=True)
            elif cfg.cdrom_image is not None:
                self.cdrom = cfg.cdrom_image
        except DiskError as exc:
            self.close()
            raise MachineError(str(exc)) from None
        order = cfg.boot_order or ("a" if self.floppies[0] else ("c" if self.disks[0] or not self.cdrom else "d"))
        self.boot_order = order + "".join(d for d in "acd" if d not in order)

    def _load_vga_rom(self) -> bytes | None:
        """The PCI VGA's expansion ROM: --vga-rom, else VGA_ROM_NAME beside a -bios file (QEMU
        takes it from its data directory). None with the built-in BIOS, which is its own INT 10h:
        then there is no PCI VGA function either."""
        import os

        cfg = self.cfg
        path = cfg.vga_rom
        if path is None:
            if cfg.bios_file is None:
                return None
            path = os.path.join(os.path.dirname(cfg.bios_file), VGA_ROM_NAME)
            if not os.path.isfile(path):
                return None
        elif cfg.bios_file is None:
            raise MachineError("--vga-rom needs -bios (the built-in BIOS does INT 10h itself)")
        from emu.bootproto import BootError, read_input_file

        try:
            data = read_input_file(path, "--vga-rom", VGA_ROM_MAX)
        except BootError as exc:
            raise MachineError(str(exc)) from None
        if len(data) < 3 or data[:2] != b"\x55\xaa" or len(data) > VGA_ROM_MAX:
            raise MachineError(f"--vga-rom {path}: not an option ROM (55AAh, at most 64 KiB)")
        return data

    def _build_devices(self) -> None:
        cfg, bus, clock, st = self.cfg, self.bus, self.clock, self.st

        def intr(level: bool) -> None:
            st[S.INTR_LINE] = 1 if level else 0

        self.pic = Pic8259Pair(on_intr_change=intr)
        self.pic.attach(bus)
        self.pit = Pit8254(clock, self.pic.irq_line(0))
        self.pit.attach(bus)
        self.rtc = Rtc146818(clock, self.pic.irq_line(8))
        self.rtc.attach(bus)
        names = []
        for img in self.floppies:
            fmt = floppy_medium(img.size) if img is not None else None
            names.append(fmt.name if fmt and fmt.name in ("360K", "720K", "1.2M", "1.44M", "2.88M")
                         else ("1.44M" if img is not None else "none"))
        while names and names[-1] == "none":
            names.pop()
        self.rtc.fill_standard_cmos(self.ram_bytes, tuple(names), sum(1 for d in self.disks if d),
                                    boot_order=self.boot_order)
        self.i8042 = I8042(self.pic.irq_line(1), self.pic.irq_line(12),
                           on_reset=lambda: self.request_reset("keyboard controller"),
                           on_a20=self.core.set_a20)
        self.i8042.attach(bus)
        # Unpaced, as QEMU's: a character leaves as soon as it is written (a guest polling THRE at
        # 9600 baud would otherwise spin ~100k instructions, each poll an exit, per character).
        self.serial = [Uart16550(0x3F8, self.pic.irq_line(4), clock, cfg.serial_backend or NullBackend(),
                                 paced=False),
                       Uart16550(0x2F8, self.pic.irq_line(3), clock, NullBackend(), paced=False)]
        for u in self.serial:
            u.attach(bus)
        self.vga = Vga(clock, self.core.mem[VGA_WINDOW[0]:VGA_WINDOW[1]], on_window_change=self._vga_window)
        self.vga.attach(bus)
        self.core.phys.add_mmio(self.vga.mmio_region())
        self._vga_window(self.vga.window_mmio)
        self.port92 = Port92(on_a20=self.core.set_a20, on_reset=lambda: self.request_reset("port 92h"))
        self.port92.attach(bus)
        self.pci = PciBus(on_reset=lambda hard=True: self.request_reset("port CF9h"), on_pam=self._on_pam)
        self.pci.attach(bus)
        if cfg.debugcon is not None:
            for port in sorted({DEBUGCON_PORT, *cfg.debugcon_ports}):
                DebugCon(cfg.debugcon, port).attach(bus)
        if cfg.debug_exit is not None:
            base, size = cfg.debug_exit
            DebugExit(self.request_exit, base, size).attach(bus)
        self._build_storage()
        self.devices = [self.pic, self.pit, self.rtc, self.i8042, *self.serial, self.vga, self.port92,
                        self.pci, *self.storage]
        self.pci_vga = None
        if self.vga_rom is not None:
            from emu.devices.pcivga import PciVga

            self.pci_vga = PciVga(self.vga_rom, self.map_region)
            self.pci_vga.attach(self.pci, bus)
            self.devices.append(self.pci_vga)  # after self.pci: its reset reads the config space

    def _build_storage(self) -> None:
        """The IDE controller, and the floppy controller with its DMA."""
        drives: list = [AtaDrive(d) if d is not None else None for d in self.disks]
        if self.cdrom is not None:
            drives.append(AtapiDrive(self.cdrom))  # secondary master, as QEMU's -cdrom
        self.ata = AtaController(self.clock, self.pic.irq_line(14), self.pic.irq_line(15), drives)
        self.ata.attach(self.bus)
        self.dma = DmaController(self.core.read_phys, self.core.write_phys)
        self.dma.attach(self.bus)
        try:
            fdrives = [FloppyDrive(img) for img in self.floppies]
        except DiskError as exc:
            self.close()
            raise MachineError(str(exc)) from None
        self.fdc = Fdc82077(self.clock, self.pic.irq_line(6), self.dma, fdrives)
        self.fdc.attach(self.bus)
        self.storage = [self.ata, self.dma, self.fdc]

    # -- callbacks -------------------------------------------------------------------------------
    def _on_pam(self, index: int, value: int) -> None:
        """i440FX PAM0-6: C0000-FFFFF read/write RAM (WE set) or read-only ROM, per 16 KiB block
        (64 KiB for F0000). One backing store: "write RAM, read ROM" is modelled as RAM."""
        from emu.mmu.physmap import PAGE_SHIFT, PM_KIND_MASK, PM_RAM, PM_ROM

        if index == 0:
            blocks = [(0xF0000, 0x10000, value >> 4)]
        else:
            base = 0xC0000 + (index - 1) * 0x8000
            blocks = [(base, 0x4000, value & 0xF), (base + 0x4000, 0x4000, value >> 4)]
        pmap = self.core.phys.pmap
        for start, size, nibble in blocks:
            kind = PM_RAM if nibble & 0x2 else PM_ROM
            for ppn in range(start >> PAGE_SHIFT, (start + size) >> PAGE_SHIFT):
                pmap[ppn] = (int(pmap[ppn]) & ~PM_KIND_MASK) | kind
        self.core.flush_tlb()

    def _vga_window(self, mmio: bool) -> None:
        """A0000-BFFFF: RAM on the VGA's text fast path, the device's MMIO region otherwise."""
        from emu.mmu.physmap import PM_MMIO, PM_RAM

        self.core.map_pages(VGA_WINDOW[0], VGA_WINDOW[1] - VGA_WINDOW[0], PM_MMIO if mmio else PM_RAM)

    def map_region(self, region, base: int | None) -> None:
        """A device's MMIO region (a PCI BAR) starts decoding at `base`, or stops (None): its pages
        become MMIO, then get back whatever they were (RAM, ROM, open bus)."""
        from emu.mmu.physmap import PAGE_SHIFT, PM_MMIO

        saved = self._mapped.pop(id(region), None)
        if saved is not None:
            self.core.swap_page_entries(saved[0], saved[1])
            self.core.phys.mmio.remove(region)
        if base is not None:
            region.base = base
            old = self.core.swap_page_entries(base, [PM_MMIO] * (region.size >> PAGE_SHIFT))
            self._mapped[id(region)] = (base, old)
            self.core.phys.mmio.insert(0, region)  # in front of any region it covers

    def request_reset(self, cause: str = "reset") -> None:
        """A reset source fired (`cause` names it); every one is a port write, the loop sees it next."""
        self.reset_requested = True
        self.reset_cause = self.reset_cause or cause

    def request_exit(self, status: int) -> None:
        self.exit_status = status

    def _skip_compile_time(self, ns: int) -> None:
        """The core's compile hook: compiling is not guest time, for the clock and for the TSC."""
        self.clock.skip_host(ns)
        tsc_skip_host(self.st, ns)

    def set_a20(self, enabled: bool) -> None:
        self.core.set_a20(enabled)
        self.port92.value = (self.port92.value | 0x02) if enabled else (self.port92.value & ~0x02)

    def a20_enabled(self) -> bool:
        return int(self.st[S.A20_MASK]) == 0xFFFF_FFFF

    def message(self, text: str) -> None:
        self.messages.append(text)

    # -- lifecycle -------------------------------------------------------------------------------
    def reset(self) -> None:
        """A system reset: the CPU restarts at F000:FFF0, the devices return to power-on state."""
        self.reset_requested = False
        self.reset_cause = ""
        self.core.reset()
        for dev in self.devices:
            try:
                dev.reset()
            except TypeError:  # pragma: no cover
                pass
        # PAM back to power-on (ROM), and the ROM's pristine contents (shadow RAM shares its pages)
        for i in range(7):
            self._on_pam(i, self.pci.function(0, 0).config[0x59 + i])
        self.core.phys.load_bios(self.rom)
        self.core.flush_blocks()
        self.st[S.INTR_LINE] = 1 if self.pic.pending() else 0

    def flush_serial(self) -> None:
        """At exit: send what the UARTs still hold (a guest that halts right after writing its last
        characters would otherwise lose them to the paced transmitter)."""
        for u in self.serial:
            for _ in range(64):
                if u.tsr is None and not u.tx_fifo:
                    break
                u._tx_timer.cancel()
                u._tx_done(self.clock.now())

    def close(self) -> None:
        for img in [*self.floppies, *self.disks, self.cdrom]:
            if img is not None:
                try:
                    img.close()
                except OSError:  # pragma: no cover
                    pass
