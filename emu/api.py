"""`emu.Machine`: a PC to drive from Python (tests, scripts, notebooks).

    import emu

    with emu.Machine(fda="boot.img", ram_mb=32) as pc:    # QEMU's option names as keywords
        pc.run(seconds=2)                                 # or instructions=N; returns why it stopped
        print(pc.serial_output.decode())                  # what the guest wrote to COM1
        print(pc.screen_text())                           # the VGA text page
        pc.type("dir\\r")                                  # keys on the PS/2 keyboard
        pc.run(instructions=5_000_000)
        print(pc.registers()["eip"], pc.read(0x7C00, 16))  # registers; linear memory
        print(pc.hmp("info registers"))                   # any monitor command (emu/monitor.py)
        pc.savevm("here"); pc.run(seconds=1); pc.loadvm("here")  # snapshots (emu/snapshot.py)

`run()` runs the same main loop as `pyemu boot` (emu/mainloop.py), on the calling thread, and returns
one of: "limit" (the instructions or seconds asked for have run; call run() again to go on),
"halted" (HLT with interrupts off: stopped for good), "exit" (isa-debug-exit: see `exit_status`),
"reset" (a guest reset with no_reboot=True), "hook" (an address hook asked to stop). The virtual
clock follows the instructions by default (`icount=True`, QEMU's `-icount sleep=off`: while the
guest idles in HLT its clock jumps to the next timer), so a run of N instructions is repeatable and
an idle guest costs no waiting; with icount=False guest time follows the host clock, also between
two runs. Only retired instructions count towards `instructions`: a guest that idles until a key
comes retires few, so give `seconds`.

Hooks: `on_port`, `on_mmio`, `on_interrupt`, `on_address` (before the instruction at a linear
address) and `on_translate` (each block of guest code translated).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from emu import pagewalk

PortRead = Callable[[int, int, int], int]  # (port or address, size, value the device gave) -> value
PortWrite = Callable[[int, int, int], Any]  # (port or address, size, value) -> True: keep it from the device


class Machine:
    def __init__(self, image: str | None = None, *, fda: str | None = None, fdb: str | None = None,
                 hda: str | None = None, hdb: str | None = None, cdrom: str | None = None,
                 kernel: str | None = None, initrd: str | None = None, append: str | None = None,
                 bios: str | None = None, boot: str = "", ram_mb: int = 128, icount: bool = True,
                 snapshot: bool = False, no_reboot: bool = False, debug_exit: bool = False,
                 config=None, display: str = "none", stdin_fd: int | None = None,
                 serial_input: bool = False, timeout: float | None = None):
        """A PC from QEMU's options as keywords; or, as `pyemu boot` builds it, from a whole
        `emu.machine.MachineConfig` (`config`; the option keywords are then not used). `display`
        ("none", "curses", "nographic"), `stdin_fd` (the terminal's keys) and `serial_input` (the
        terminal feeds COM1) set up the terminal front end; `timeout` ends `serve()` after that
        many seconds. emu.machine.MachineError (one line) for an image or option it cannot use."""
        from emu.display import Frontend
        from emu.machine import Machine as Pc
        from emu.mainloop import MainLoop

        self._serial = None
        self.debugcon_output = bytearray()
        if config is None:
            config = self._config(image, fda=fda, fdb=fdb, hda=hda, hdb=hdb, cdrom=cdrom, kernel=kernel,
                                  initrd=initrd, append=append, bios=bios, boot=boot, ram_mb=ram_mb,
                                  icount=icount, snapshot=snapshot, no_reboot=no_reboot,
                                  debug_exit=debug_exit)
        elif config.serial_backend is None:  # COM1 into memory, as with the option keywords
            from emu.devices.uart16550 import MemoryBackend

            self._serial = MemoryBackend()
            config.serial_backend = self._serial
        self.config = config
        self.pc = Pc(config)  # the machine itself (emu.machine.Machine): devices, core, clock
        self._frontend = Frontend(self.pc, display, stdin_fd=stdin_fd, serial_input=serial_input)
        self._loop = MainLoop(self.pc, self._frontend, timeout=timeout, no_reboot=config.no_reboot)
        self._loop.keep_open = True
        self._ctl = None  # emu.monitor.Control, made on first need (hmp(), a monitor, QMP)
        self._closed = False

    @classmethod
    def from_options(cls, *argv: str, display: str = "none", timeout: float | None = None) -> Machine:
        """A PC from `pyemu boot`'s own options, e.g. from_options("-m", "64", "-hda", "disk.img",
        "-icount", "shift=0"). They are parsed and checked as the command line does (ValueError,
        one line, for what it would refuse); COM1 goes to `serial_output`. Options that attach
        tools (-serial, -monitor, -qmp, -gdb, -d/-D, --lockstep, -loadvm) are not applied here:
        the methods of the same names do that."""
        from emu.cli import UsageError, boot_config

        try:
            config = boot_config(list(argv))
        except UsageError as exc:
            raise ValueError(str(exc)) from None
        return cls(config=config, display=display, timeout=timeout)

    def _config(self, image, *, fda, fdb, hda, hdb, cdrom, kernel, initrd, append, bios, boot, ram_mb,
                icount, snapshot, no_reboot, debug_exit):
        from emu.devices.diskimage import floppy_format
        from emu.devices.uart16550 import MemoryBackend
        from emu.machine import MachineConfig

        cfg = MachineConfig(ram_mb=ram_mb, snapshot=snapshot, no_reboot=no_reboot, icount=icount,
                            icount_sleep=False, kernel=kernel, initrd=initrd, append=append, bios_file=bios,
                            boot_order=boot)
        cfg.floppies = [fda, fdb]
        cfg.disks = [hda, hdb]
        cfg.cdrom = cdrom
        if image is not None:  # as `pyemu boot IMAGE`: a floppy by its size, else the first disk
            import os

            size = os.path.getsize(image) if os.path.exists(image) else None
            if size is not None and floppy_format(size) is not None and fda is None:
                cfg.floppies[0] = image
            else:
                cfg.disks[0] = image
        self._serial = MemoryBackend()
        cfg.serial_backend = self._serial
        cfg.debugcon = self.debugcon_output.extend
        if debug_exit:
            cfg.debug_exit = (0xF4, 0x04)
        return cfg

    @property
    def _control(self):
        if self._ctl is None:
            from emu.monitor import Control

            self._ctl = Control(self._loop)
        return self._ctl

    # -- running ---------------------------------------------------------------------------------
    def run(self, instructions: int | None = None, seconds: float | None = None) -> str:
        """Run until `instructions` more have retired or `seconds` of host time have passed (both:
        whichever comes first; neither: until the guest halts or exits)."""
        from emu.mainloop import EXIT_TIMEOUT, HOOK_STOP, LIMIT_REACHED

        if self._closed:
            raise RuntimeError("the machine is closed")
        loop, pc = self._loop, self.pc
        if pc.exit_status is not None:
            return "exit"
        loop.resume()  # a `stop` given through hmp() does not outlive the next run
        loop.run_limit = None if instructions is None else loop.retired + max(0, int(instructions))
        loop.timeout = seconds
        loop.wall_end = None
        loop.halted_message = False
        status = loop.run()
        loop.run_limit = None
        if status in (LIMIT_REACHED, EXIT_TIMEOUT):
            return "limit"
        if status == HOOK_STOP:
            return "hook"
        if pc.exit_status is not None:
            return "exit"
        if loop.halted_message:
            return "halted"
        return "reset"

    @property
    def instructions(self) -> int:
        """Guest instructions retired so far (over all runs and resets)."""
        return self._loop.retired

    @property
    def exit_status(self) -> int | None:
        """pyemu's exit status after an isa-debug-exit write ((value << 1) | 1), else None."""
        return self.pc.exit_status

    @property
    def serial_output(self) -> bytes:
        """Everything the guest has written to COM1 (b"" when COM1 goes elsewhere: `config`)."""
        return bytes(self._serial.output) if self._serial is not None else b""

    def serial_input(self, data: bytes | str) -> None:
        """Bytes for the guest to receive on COM1."""
        self.pc.serial[0].receive(data.encode() if isinstance(data, str) else data)

    def serve(self) -> int:
        """Run as `pyemu boot` does: with the terminal front end, until the guest halts for good,
        exits, resets under no_reboot, the user quits or `timeout` passes. Then say goodbye to gdb
        and the monitors. Returns pyemu's exit status; `halted` and `reset_message` say why."""
        loop = self._loop
        self._frontend.open()
        loop.keep_open = False
        try:
            return loop.run()
        finally:
            loop.keep_open = True
            self._frontend.close()

    @property
    def halted(self) -> bool:
        """The last run ended because the guest halted for good (HLT with interrupts off)."""
        return self._loop.halted_message

    @property
    def reset_message(self) -> str:
        """Why the last run ended on a guest reset under no_reboot ("guest reset (triple fault)")."""
        return self._loop.reset_message

    @property
    def bios_messages(self) -> list[str]:
        """What the firmware reported to the user (boot failures, missing drives)."""
        return self.pc.messages

    # -- tools: the -d log, gdb, the monitor and QMP, the lockstep oracle -------------------------
    def log(self, items: str, out=None, one_insn_per_tb: bool = False) -> None:
        """QEMU's `-d ITEMS` (in_asm, exec, cpu, int, unimp; nochain is accepted and changes nothing)
        written to `out` (default stderr); one_insn_per_tb logs exec/cpu per instruction as
        `-one-insn-per-tb` does. ValueError names an unknown item."""
        import sys

        from emu.cpu import state as S
        from emu.cpu.tracelog import TraceLog, parse_items

        out = out if out is not None else sys.stderr
        mask = parse_items(items)
        loop = self._loop
        loop.log_out = out
        if one_insn_per_tb and mask & (S.LOG_EXEC | S.LOG_CPU):
            from emu.qemulog import InsnTrace

            loop.insn_hook = InsnTrace(self.pc.core, out, bool(mask & S.LOG_EXEC), bool(mask & S.LOG_CPU))
            mask &= ~(S.LOG_EXEC | S.LOG_CPU)
        loop.trace = TraceLog(self.pc.core, mask, out)

    def log_file(self, out) -> None:
        """Where the monitor's `log` command writes (QEMU's -D), without logging anything yet."""
        self._loop.log_out = out

    def gdbserver(self, listener, start_paused: bool = False) -> None:
        """Serve gdb's remote protocol on `listener` (emu.gdbstub.Listener, e.g. Listener("tcp::1234")),
        stopped before the first instruction when start_paused (QEMU's -s -S)."""
        from emu.gdbstub import GdbStub

        self._loop.gdb = GdbStub(self.pc, listener, start_paused=start_paused, loop=self._loop)

    def add_monitor(self, spec: str) -> None:
        """A human monitor on "stdio" or "unix:PATH,server[,nowait]" / "tcp:HOST:PORT,server"
        (emu.chardev.ChardevError, one line, when it cannot listen)."""
        self._control.add_monitor(spec)

    def add_qmp(self, spec: str) -> None:
        """A QMP server, as -qmp."""
        self._control.add_qmp(spec)

    def add_terminal_monitor(self) -> None:
        """Ctrl-A c on the -nographic terminal switches to the monitor."""
        self._control.add_mux(self._frontend)

    def start_paused(self) -> None:
        """Begin in QEMU's "prelaunch" state: the guest waits for the monitor's `cont`."""
        self._loop.start_paused = True

    def close_monitors(self) -> None:
        """Stop listening on every monitor and QMP endpoint (before close(), when setting up failed)."""
        if self._ctl is not None:
            for ep in self._ctl.endpoints:
                ep.finish()

    def lockstep(self):
        """Run each instruction in unicorn too and stop at the first difference (--lockstep
        unicorn); returns the emu.lockstep.Lockstep, whose `diverged`, `compared` and `copied`
        tell the result."""
        from emu.lockstep import Hooks, Lockstep

        loop = self._loop
        lockstep = Lockstep(self.pc)
        loop.insn_hook = Hooks(loop.insn_hook, lockstep) if loop.insn_hook is not None else lockstep
        return lockstep

    # -- looking -------------------------------------------------------------------------------------
    def registers(self) -> dict[str, int]:
        """eax..edi, eip, pc (CS.base + EIP), eflags, the segment selectors, cr0/cr2/cr3/cr4 and
        the 16-bit ax..di."""
        return self._control.hmp._registers()

    def set_registers(self, **values: int) -> None:
        """Write eax..edi, eip and eflags (by those names), as gdb's `set $eax = ...` does; the
        guest sees them when it next runs."""
        from emu.cpu import state as S

        core, gprs = self.pc.core, ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi")
        for name, value in values.items():
            if name in gprs:
                core.st[S.EAX + gprs.index(name)] = value & 0xFFFF_FFFF
            elif name == "eip":
                core.st[S.EIP] = value & 0xFFFF_FFFF
            elif name == "eflags":
                core.set_flags(value & 0xFFFF_FFFF)
            else:
                raise ValueError(f"set_registers: no register {name!r} (eax..edi, eip, eflags)")

    # -- hooks ---------------------------------------------------------------------------------------
    def on_port(self, read: PortRead | None = None, write: PortWrite | None = None) -> None:
        """Hook port I/O. `read(port, size, value) -> value` sees each IN after the device answered
        and may change what the guest gets; `write(port, size, value) -> bool` sees each OUT
        before the device does, and a True return keeps it from the device."""
        _wrap_access(self.pc.bus, "read", "write", read, write)

    def on_interrupt(self, hook: Callable[[int], Any]) -> None:
        """Hook hardware interrupts: `hook(vector)` runs as each one is delivered to the CPU."""
        core = self.pc.core
        deliver = core.deliver_interrupt

        def hooked(vector: int) -> None:
            hook(vector)
            deliver(vector)
        core.deliver_interrupt = hooked  # type: ignore[method-assign]

    def on_mmio(self, read: PortRead | None = None, write: PortWrite | None = None) -> None:
        """Hook device memory (MMIO: the VGA window, the APIC, PCI BARs, and unbacked addresses).
        `read(addr, size, value) -> value` sees each guest read after the device answered (open
        bus reads as all ones) and may change it; `write(addr, size, value) -> bool` sees each
        write before the device does, and a True return keeps it from the device. Addresses are
        physical; RAM and ROM accesses never reach these hooks (they stay in compiled code)."""
        _wrap_access(self.pc.core.phys, "mmio_read", "mmio_write", read, write)

    def on_address(self, address: int, hook: Callable[[int], Any]) -> None:
        """Call `hook(address)` before the instruction at linear `address` (CS.base + EIP) runs,
        each time it runs. The hook may read and change registers and memory; a True return ends
        `run()` with "hook" before the instruction (the next run() executes it). While any address
        is hooked the guest runs without tier 1 and leaves compiled code before each block (under
        a million instructions a second); `remove_address_hook` ends that (emu/hooks.py)."""
        from emu.cpu import state as S
        from emu.hooks import AddressWatch

        loop = self._loop
        if loop.watch is None:
            loop.watch = AddressWatch(self.pc)
        loop.watch.add(address, lambda: hook(address))
        loop.hook_log_bits |= S.LOG_CPU

    def remove_address_hook(self, address: int) -> None:
        """Drop every hook of `address`."""
        from emu.cpu import state as S

        loop = self._loop
        if loop.watch is None:
            return
        loop.watch.remove(address)
        if not loop.watch.hooks:
            loop.watch = None
            loop.hook_log_bits &= ~S.LOG_CPU
            trace_mask = loop.trace.mask if loop.trace is not None else 0
            st = self.pc.st
            st[S.LOG_MASK] = (int(st[S.LOG_MASK]) & ~S.LOG_CPU) | (trace_mask & S.LOG_CPU)
            if not trace_mask & S.LOG_CPU:
                st[S.LOG_ACK] = 0

    def on_translate(self, hook: Callable[[int, int, int, int], Any]) -> None:
        """Call `hook(eip, phys, size, insns)` for each block of guest code translated: its first
        EIP, the physical address of its first byte, its length in bytes and in instructions. The
        call comes at the loop's next exit from compiled code (within one timer slice), so the
        block may already have run (emu/hooks.py)."""
        from emu.cpu import state as S
        from emu.hooks import TranslationHook

        loop = self._loop
        if loop.tb_hook is None:
            loop.tb_hook = TranslationHook(self.pc.core)
        loop.tb_hook.hooks.append(hook)
        loop.hook_log_bits |= S.LOG_IN_ASM

    def read(self, addr: int, length: int, physical: bool = False) -> bytes:
        """Guest memory: linear addresses through the page tables (a short result where a page is
        not present), or physical ones."""
        if physical:
            return self.pc.core.read_phys(addr, length)
        return pagewalk.read_linear(self.pc.core, addr, length) or b""

    def write(self, addr: int, data: bytes, physical: bool = False) -> None:
        """Write guest memory (translated code there is dropped). ValueError where a linear page is
        not present."""
        core = self.pc.core
        while data:
            n = min(len(data), 0x1000 - (addr & 0xFFF))
            phys = addr if physical else pagewalk.linear_to_phys(core, addr)
            if phys is None:
                raise ValueError(f"linear address {addr:#x} is not mapped")
            core.write_phys(phys, data[:n])
            addr, data = addr + n, data[n:]

    def screen_text(self) -> str:
        """The VGA text page, one line per row (empty in a graphics mode)."""
        return self.pc.vga.screendump_text()

    def screendump(self, path: str, fmt: str | None = None) -> None:
        """The screen to a file: .txt, .png, or PPM (as the monitor's screendump)."""
        from emu.monitor import write_screen

        write_screen(self.pc.vga, path, fmt)

    def hmp(self, line: str) -> str:
        """A monitor command and its answer, e.g. hmp("info registers"), hmp("x/4i $pc")."""
        return self._control.hmp.execute(line)

    def stats(self) -> dict:
        """The --stats counters."""
        return self._loop.stats()

    # -- snapshots ------------------------------------------------------------------------------------
    def savevm(self, name: str) -> str:
        """Save the whole machine as snapshot `name` (emu/snapshot.py); returns the file's path.
        emu.snapshot.SnapshotError (one line) when it cannot."""
        from emu import snapshot

        return snapshot.save(self.pc, self._loop, name)

    def loadvm(self, name: str, checked=None) -> None:
        """Put the machine back in the state saved as `name` (also into a fresh Machine built with
        the same options): `instructions`, registers, memory, devices and guest time. `checked`:
        what emu.snapshot.precheck returned for it, if it was called already."""
        from emu import snapshot

        snapshot.load(self.pc, self._loop, name, checked)

    def delvm(self, name: str) -> None:
        from emu import snapshot

        snapshot.delete(self.pc, name)

    def snapshots(self) -> list[dict]:
        """The saved snapshots: name, size, date, vm_clock_ns, icount."""
        from emu import snapshot

        return snapshot.listing(self.pc)

    # -- steering -------------------------------------------------------------------------------------
    def type(self, text: str) -> None:
        """Keys on the PS/2 keyboard, as a terminal would send them ("\\r" is Enter, "\\x1b" Esc);
        they are typed one by one while the guest runs."""
        from emu import hostkeys

        self._frontend.keys.extend(hostkeys.decode(text.encode("latin-1")))

    def sendkey(self, keys: str) -> None:
        """QEMU's sendkey: `-`-joined key names pressed together, e.g. "ctrl-alt-delete"."""
        self._control.hmp.sendkey(keys)  # emu.monitor.MonitorError for a key it does not know

    def reset(self) -> None:
        """A system reset now: the CPU restarts at F000:FFF0, the devices at power-on."""
        self._loop.resets += 1
        self.pc.reset()

    def close(self) -> None:
        """Send what the UARTs still hold and close the images (the machine cannot run again)."""
        if not self._closed:
            self._closed = True
            try:
                self.pc.flush_serial()
            finally:
                self.pc.close()

    def __enter__(self) -> Machine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _wrap_access(target, read_name: str, write_name: str, read: PortRead | None, write: PortWrite | None) -> None:
    """Put hooks around `target`'s read(addr, size) and write(addr, size, value) methods."""
    if read is not None:
        device_read = getattr(target, read_name)
        setattr(target, read_name, lambda addr, size: read(addr, size, device_read(addr, size)))
    if write is not None:
        device_write = getattr(target, write_name)

        def hooked_write(addr: int, size: int, value: int) -> None:
            if not write(addr, size, value):
                device_write(addr, size, value)
        setattr(target, write_name, hooked_write)
