"""The `pyemu` command line (../shared/design/cli.md): QEMU's option names, one-line errors.

Every failure a user can cause (a missing file, malformed hex, an unknown option) ends in one line
`pyemu: error: ...` on stderr and exit status 1, never a Python traceback.

How a run ends, on stderr (after `--stats`, which is written in every case):

    guest halted (HLT, IF=0)       `pyemu: guest halted`                        status 0
    guest reset under -no-reboot   `pyemu: guest reset (triple fault)` (or the source)  status 0
    isa-debug-exit                 nothing                                      (V << 1) | 1
    --timeout                      `pyemu: timeout after N s`                   124
    Ctrl-C (SIGINT)                `pyemu: interrupted`                         130
    SIGTERM / SIGHUP               `pyemu: terminating on signal 15` / `... 1`  143 / 129

QEMU prints the same "terminating on signal N" line but exits 0 on SIGTERM, SIGHUP and SIGINT;
pyemu exits 128 + N, the shell's convention and what Ctrl-C already gave, so that a script can
tell a run that was stopped from one the guest finished. Disks are write-through and closed, the
screen dump and the statistics are written, as on any other end.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys

EXIT_ERROR = 1
EXIT_TIMEOUT = 124  # as emu.mainloop.EXIT_TIMEOUT (not imported: the engine loads with it)


class Terminated(BaseException):
    """SIGTERM or SIGHUP arrived: raised in the main thread, like Ctrl-C's KeyboardInterrupt."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


class _StopSignals:
    """SIGTERM and SIGHUP handlers for a run. The first signal raises `Terminated` wherever the main
    thread is (the compiled CPU loop returns to Python within a slice; a wait or a gdb socket read is
    interrupted), so the run unwinds as for Ctrl-C. After `disarm()` (the run is over, pyemu is
    closing disks and writing statistics) a signal is only remembered."""

    NAMES = ("SIGTERM", "SIGHUP")  # Windows has no SIGHUP

    def __init__(self):
        self.received: int | None = None
        self.armed = True
        self._saved: dict = {}

    def install(self) -> None:
        for name in self.NAMES:
            sig = getattr(signal, name, None)
            if sig is not None:
                try:
                    self._saved[sig] = signal.signal(sig, self._handler)
                except (ValueError, OSError):  # not the main thread (pyemu embedded): leave them
                    pass

    def restore(self) -> None:
        """Give the signals back to whoever had them (pyemu called in-process, e.g. by a test)."""
        self.armed = False
        for sig, old in self._saved.items():
            signal.signal(sig, old)
        self._saved.clear()

    def _handler(self, signum, _frame) -> None:
        if self.received is None:
            self.received = signum
            if self.armed:
                self.armed = False
                raise Terminated(signum)

    def disarm(self) -> None:
        self.armed = False


class UsageError(Exception):
    """A mistake in what the user asked for; reported as one line."""


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting with status 2."""

    def error(self, message: str):  # noqa: D401 - argparse's name
        raise UsageError(message)


def _int_auto(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


def build_parser() -> _Parser:
    parser = _Parser(prog="pyemu", description="A PC emulator that runs x86 code as compiled blocks.")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    dis = sub.add_parser("disasm", help="disassemble x86 code")
    dis.add_argument("--bits", type=int, choices=(16, 32), default=32, help="code size (default 32)")
    dis.add_argument("--org", type=_int_auto, default=0, help="address of the first byte")
    src = dis.add_mutually_exclusive_group(required=True)
    src.add_argument("file", nargs="?", help="a file of raw code")
    src.add_argument("--hex", help="the code as hex digits (spaces allowed)")
    src.add_argument("--sample", action="store_true", help="the built-in sample program")

    parser.boot_parser = _add_boot_parser(sub)
    from emu.tracediff import add_parser as _add_trace_diff

    _add_trace_diff(sub, _int_auto)
    sub.add_parser("img", help="create, inspect, check and convert disk images (qemu-img's verbs)", add_help=False)
    fuzz = sub.add_parser("fuzz", help="differential fuzzing of the engine: random programs in both tiers")
    from emu.fuzz.campaign import add_arguments

    add_arguments(fuzz)
    return parser


def _cmd_disasm(args) -> int:
    from emu.translate import disasm

    if args.hex is not None:
        text = "".join(args.hex.split())
        if len(text) % 2:
            raise UsageError("--hex: odd number of hex digits")
        try:
            code = bytes.fromhex(text)
        except ValueError:
            raise UsageError("--hex: not hex digits") from None
    elif args.sample:
        code = disasm.sample_code(args.bits)
    else:
        try:
            with open(args.file, "rb") as fh:
                code = fh.read()
        except OSError as exc:
            raise UsageError(f"{args.file}: {exc.strerror or exc}") from None
    out = sys.stdout
    for line in disasm.disassemble_lines(code, bits=args.bits, org=args.org):
        out.write(line + "\n")
    return 0


# -- pyemu boot ----------------------------------------------------------------------------------
_ICOUNT_PART = r"(?:(?:shift=)?(?:\d+|auto)|sleep=(?:on|off))"
_ICOUNT_SPEC = re.compile(rf"^{_ICOUNT_PART}(?:,{_ICOUNT_PART})*$")
_SIZE_SUFFIX = {"": 1, "M": 1, "m": 1, "G": 1024, "g": 1024}


def _qemu_argv(argv: list[str]) -> list[str]:
    """QEMU's `-icount [shift=N]` has an optional value; fold it into `-icount=VALUE`. A value that
    looks like options (`shift=x`) but is not a file is folded too, so that it is reported as a bad
    -icount rather than as a missing disk image."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "-icount":
            nxt = argv[i + 1] if i + 1 < len(argv) else None
            if nxt is not None and (_ICOUNT_SPEC.match(nxt) or (
                    "=" in nxt and not nxt.startswith("-") and not os.path.exists(nxt))):
                out.append("-icount=" + nxt)
                i += 2
                continue
            out.append("-icount=auto")
        else:
            out.append(a)
        i += 1
    return out


def _check_option_names(parser: argparse.ArgumentParser, argv: list[str]) -> None:
    """Refuse an unknown single-dash option such as `-drive` or `-nodefaults` by its name. argparse
    would read `-drive file=x` as `-d rive` and the disk image `file=x`, and report the image."""
    takes_value: set[str] = set()
    known: set[str] = set()
    for action in parser._actions:
        known.update(action.option_strings)
        if action.nargs is None and action.option_strings:
            takes_value.update(action.option_strings)
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            return
        if a in takes_value:
            i += 2  # its value may start with a dash (-append "-v")
            continue
        name = a.split("=", 1)[0]
        if len(a) > 2 and a[0] == "-" and a[1].isalpha() and name not in known:
            raise UsageError(f"unrecognized arguments: {a}")
        i += 1


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: the timeout must be more than 0 seconds")
    return value


def _check_smp(text: str) -> None:
    """QEMU's `-smp [cpus=]N[,maxcpus=N,sockets=N,dies=N,cores=N,threads=N]`: pyemu has one CPU."""
    for i, part in enumerate(text.split(",")):
        key, eq, val = part.partition("=")
        if not eq and i == 0:
            key, val = "cpus", key
        if key not in ("cpus", "maxcpus", "sockets", "dies", "clusters", "cores", "threads"):
            raise UsageError(f"-smp {text}: unknown parameter {key!r}")
        if not val.isdigit() or int(val) < 1:
            raise UsageError(f"-smp {text}: {key} must be a number of at least 1")
        if int(val) != 1:
            raise UsageError(f"-smp {text}: pyemu has one CPU")


def _ram_mb(text: str) -> int:
    m = re.fullmatch(r"(?:size=)?(\d+)([MmGg]?)", text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"bad memory size {text!r} (e.g. 128 or 1G)")
    return int(m.group(1)) * _SIZE_SUFFIX[m.group(2)]


def _add_boot_parser(sub) -> _Parser:
    boot = sub.add_parser("boot", help="boot a PC from disk images (QEMU's options)", allow_abbrev=False)
    boot.add_argument("image", nargs="?", help="first hard disk (or floppy, by size)")
    boot.add_argument("--demo", action="store_true", help="boot the built-in demo image")
    boot.add_argument("-m", dest="ram", type=_ram_mb, default=128, metavar="MB", help="guest RAM (default 128)")
    helps = {
        "fda": "floppy A: image", "fdb": "floppy B: image", "hda": "first hard disk image",
        "hdb": "second hard disk image", "cdrom": "CD-ROM image (ISO, El Torito boot)",
        "kernel": "Linux bzImage or multiboot kernel to boot directly", "initrd": "initial ramdisk / module",
        "append": "kernel command line", "bios": "ROM image instead of the built-in BIOS",
        "boot": "boot order: a (floppy), c (disk), d (CD), or order=ca", "display": "curses or none",
        "serial": "COM1: stdio, file:PATH or none", "debugcon": "port E9h console: stdio or file:PATH",
        "D": "log file for -d", "gdb": "gdb stub on tcp::PORT or tcp:HOST:PORT", "machine": "pc (the only machine)",
        "M": "pc (the only machine)", "cpu": "accepted for QEMU compatibility", "smp": "1 (one CPU)",
        "vga": "std (VGA: text, 16- and 256-colour modes)",
        "monitor": "human monitor: stdio, unix:PATH,server[,nowait] or tcp:HOST:PORT,server[,nowait]",
        "qmp": "QMP (JSON) server: unix:PATH,server[,nowait] or tcp:HOST:PORT,server[,nowait]",
        "loadvm": "start from the machine snapshot NAME (the monitor's savevm)",
    }
    for name, text in helps.items():
        boot.add_argument(f"-{name}", dest=f"opt_{name}", metavar=name.upper(), help=text)
    boot.add_argument("-device", dest="devices", action="append", default=[], metavar="DEV",
                      help="isa-debug-exit[,iobase=0xf4,iosize=0x04] or isa-debugcon[,iobase=0x402]")
    boot.add_argument("-drive", dest="drives", action="append", default=[], metavar="SPEC",
                      help="file=PATH[,format=raw|qcow2][,if=ide|floppy][,index=N][,media=disk|cdrom]"
                           "[,snapshot=on][,readonly=on]")
    boot.add_argument("-d", dest="log_items", metavar="ITEMS", help="logs: in_asm,exec,cpu,int,unimp")
    boot.add_argument("-one-insn-per-tb", "-singlestep", dest="one_insn", action="store_true",
                      help="with -d exec/cpu: one instruction per run, logged in qemu -one-insn-per-tb's layout")
    boot.add_argument("--lockstep", choices=("unicorn",), help="run each instruction in unicorn too; stop at the "
                      "first difference (one instruction per run: slow)")
    boot.add_argument("-nographic", action="store_true", help="no screen; COM1 on stdin/stdout")
    boot.add_argument("-no-reboot", dest="no_reboot", action="store_true", help="exit (0) on a guest reset")
    boot.add_argument("-snapshot", action="store_true", help="disk writes go to a temporary overlay")
    boot.add_argument("-accel", dest="accel", metavar="tcg[,tier=0|1][,threshold=N]",
                      help="tcg (the only accelerator); tier=0 runs the interpreter only, threshold=N compiles a "
                           "block after N runs")
    boot.add_argument("-icount", dest="icount", nargs="?", const="auto", metavar="shift=N",
                      help="deterministic time: [shift=]N|auto[,sleep=on|off]")
    boot.add_argument("-s", dest="gdb_default", action="store_true", help="gdb stub on tcp::1234 (-gdb tcp::1234)")
    boot.add_argument("-S", dest="start_paused", action="store_true",
                      help="start stopped until gdb or the monitor continues")
    boot.add_argument("--screendump", metavar="PATH", help="write the screen here at exit (.txt text, .png image)")
    boot.add_argument("--vga-rom", dest="vga_rom", metavar="PATH",
                      help="the PCI VGA's BIOS ROM with -bios (default: vgabios-stdvga.bin beside it)")
    boot.add_argument("--timeout", type=_positive_seconds, metavar="SECONDS",
                      help="stop after this long (status 124)")
    boot.add_argument("--stats", action="store_true", help="execution statistics on stderr at exit")
    boot.add_argument("--stats-json", dest="stats_json", metavar="PATH", help="the statistics as JSON")
    return boot


def _debug_exit_spec(devices: list[str]) -> tuple[int, int] | None:
    spec = None
    for dev in devices:
        parts = dev.split(",")
        if parts[0] == "isa-debugcon":
            continue  # _debugcon_ports
        if parts[0] != "isa-debug-exit":
            raise UsageError(f"-device {parts[0]}: unsupported device (pyemu has: isa-debug-exit, isa-debugcon)")
        base, size = 0xF4, 0x04
        for p in parts[1:]:
            key, _, val = p.partition("=")
            try:
                if key == "iobase":
                    base = int(val, 0)
                elif key == "iosize":
                    size = int(val, 0)
                else:
                    raise UsageError(f"-device isa-debug-exit: unknown property {key!r}")
            except ValueError:
                raise UsageError(f"-device isa-debug-exit: bad number {val!r}") from None
        spec = (base, size)
    return spec


def _debugcon_ports(devices: list[str], have_debugcon: bool) -> tuple[int, ...]:
    """`-device isa-debugcon[,iobase=N]`: the -debugcon console also answers at port N (default
    E9h), e.g. 0x402 for SeaBIOS's log. pyemu has no -chardev: the output goes where -debugcon says."""
    from emu.devices.debugcon import DEFAULT_PORT as DEBUGCON_DEFAULT_PORT

    ports = []
    for dev in devices:
        parts = dev.split(",")
        if parts[0] != "isa-debugcon":
            continue
        if not have_debugcon:
            raise UsageError("-device isa-debugcon needs -debugcon (its output; pyemu has no -chardev)")
        port = DEBUGCON_DEFAULT_PORT
        for p in parts[1:]:
            key, _, val = p.partition("=")
            if key != "iobase":
                raise UsageError(f"-device isa-debugcon: unknown property {key!r} (pyemu has: iobase)")
            try:
                port = int(val, 0)
            except ValueError:
                raise UsageError(f"-device isa-debugcon: bad number {val!r}") from None
            if not 0 <= port <= 0xFFFF:
                raise UsageError(f"-device isa-debugcon: iobase {val} is not a port")
        ports.append(port)
    return tuple(ports)


def _console_sink(spec: str, what: str):
    if spec == "stdio":
        def sink(data: bytes) -> None:
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        return sink, None
    if spec.startswith("file:") and len(spec) > 5:
        try:
            fh = open(spec[5:], "wb", buffering=0)  # noqa: SIM115 - closed when pyemu exits
        except OSError as exc:
            raise UsageError(f"{what} {spec}: {exc.strerror or exc}") from None
        return fh.write, fh
    if spec in ("none", "null"):
        return None, None
    raise UsageError(f"{what} {spec!r}: expected stdio, file:PATH or none")


def _boot_config(args):
    from emu.devices.diskimage import floppy_format
    from emu.devices.imageformat import place_drives, virtual_size
    from emu.machine import MachineConfig

    if args.start_paused and not (args.gdb_default or args.opt_gdb not in (None, "none")
                                  or args.opt_monitor not in (None, "none") or args.opt_qmp not in (None, "none")):
        raise UsageError("-S needs something to continue from: -monitor, -qmp, -s or -gdb")
    if args.opt_kernel is None and (args.opt_initrd is not None or args.opt_append is not None):
        raise UsageError("-initrd/-append need -kernel")
    if args.opt_smp is not None:
        _check_smp(args.opt_smp)
    for opt in ("machine", "M"):
        value = getattr(args, f"opt_{opt}")
        if value is not None and value.split(",")[0] not in ("pc", "type=pc") \
                and not value.startswith(("pc-i440fx", "type=pc-i440fx")):
            raise UsageError(f"-{opt} {value}: pyemu has one machine, pc (i440FX)")
    cfg = MachineConfig(ram_mb=args.ram, snapshot=args.snapshot, no_reboot=args.no_reboot,
                        kernel=args.opt_kernel, initrd=args.opt_initrd, append=args.opt_append)
    cfg.cdrom = args.opt_cdrom
    cfg.floppies = [args.opt_fda, args.opt_fdb]
    cfg.disks = [args.opt_hda, args.opt_hdb]
    if args.image:
        size = virtual_size(args.image)
        if size is not None and floppy_format(size) is not None and cfg.floppies[0] is None:
            cfg.floppies[0] = args.image
        elif cfg.disks[0] is None:
            cfg.disks[0] = args.image
        else:
            raise UsageError(f"{args.image}: -hda is already given")
    try:
        cfg.cdrom = place_drives(args.drives, cfg.floppies, cfg.disks, cfg.cdrom)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.demo:
        from bios.demo import demo_floppy

        cfg.floppy_images = [demo_floppy()]
    if args.opt_boot:
        order = args.opt_boot
        for part in order.split(","):
            key, _, val = part.partition("=")
            if not val:
                val, key = key, "order"
            if key in ("order", "once"):
                if not re.fullmatch(r"[acdn]+", val):
                    raise UsageError(f"-boot {order}: drives are a (floppy), c (disk), d (CD)")
                cfg.boot_order = val.replace("n", "")
            elif key in ("menu", "strict"):
                if val not in ("on", "off"):
                    raise UsageError(f"-boot {order}: {key} is on or off")
            elif key in ("splash", "splash-time", "reboot-timeout"):
                pass  # firmware settings QEMU passes to SeaBIOS through fw_cfg, which pyemu lacks
            else:
                raise UsageError(f"-boot {order}: unknown parameter {key!r} (order, once, menu, strict, ...)")
    if args.icount is not None:
        cfg.icount = True
        if not _ICOUNT_SPEC.match(args.icount):
            raise UsageError(f"-icount {args.icount}: expected [shift=]N|auto[,sleep=on|off]")
        for part in args.icount.split(","):
            key, _, val = part.partition("=")
            if not val:
                key, val = "shift", key
            if key == "shift" and val != "auto":
                cfg.icount_shift = int(val)
            elif key == "sleep":
                cfg.icount_sleep = val == "on"
    if args.accel:
        cfg.tier1_threshold = _accel_threshold(args.accel)
    cfg.bios_file = args.opt_bios
    cfg.vga_rom = args.vga_rom
    cfg.debug_exit = _debug_exit_spec(args.devices)
    return cfg


def boot_config(argv: list[str]):
    """The emu.machine.MachineConfig that `pyemu boot ARGV` builds (emu.Machine.from_options).
    UsageError (one line) for what `pyemu boot` would refuse."""
    argv = _qemu_argv(["boot", *argv])
    parser = build_parser()
    _check_option_names(parser.boot_parser, argv[1:])
    return _boot_config(parser.parse_args(argv))


def _accel_threshold(spec: str) -> int | None:
    """`-accel tcg[,tier=0|1][,threshold=N]`: the tier-1 compile threshold (0 = tier 1 off)."""
    parts = spec.split(",")
    if parts[0] not in ("tcg", "accel=tcg"):
        raise UsageError(f"-accel {spec}: pyemu's only accelerator is tcg")
    threshold = None
    tier = 1
    for part in parts[1:]:
        key, _, val = part.partition("=")
        if key == "tier" and val in ("0", "1"):
            tier = int(val)
        elif key == "threshold" and val.isdigit() and int(val) > 0:
            threshold = int(val)
        elif key == "thread" and val in ("single", "multi"):
            pass  # QEMU's MTTCG switch: one CPU here either way
        else:
            raise UsageError(f"-accel {spec}: expected tcg[,tier=0|1][,threshold=N]")
    return 0 if tier == 0 else threshold


def _cmd_boot(args) -> int:
    signals = _StopSignals()
    signals.install()
    try:
        return _boot(args, signals)
    finally:
        signals.restore()


def _boot(args, signals: _StopSignals) -> int:
    import json

    from emu import memprobe
    from emu.devices.uart16550 import StdioBackend, open_backend
    from emu.machine import MachineError
    from emu.mainloop import GuestError

    memprobe.start_from_env()  # PYEMU_MEMPROBE=FILE: memory samples for soak diagnostics
    cfg = _boot_config(args)
    gdb_listener = None
    gdb_spec = args.opt_gdb or ("tcp::1234" if args.gdb_default else None)
    if gdb_spec not in (None, "none"):
        from emu.gdbstub import GdbSpecError, Listener

        try:
            gdb_listener = Listener(gdb_spec)
        except GdbSpecError as exc:
            raise UsageError(str(exc)) from None
    if args.screendump:
        from emu.screendump import check_path

        try:
            check_path(args.screendump)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        _check_output_path("--screendump", args.screendump)
    if args.stats_json:
        _check_output_path("--stats-json", args.stats_json)
    if args.opt_display not in (None, "curses", "none"):
        raise UsageError(f"-display {args.opt_display}: supported displays are curses and none")
    monitor_stdio = args.opt_monitor == "stdio"
    mode = ("nographic" if args.nographic else args.opt_display
            or ("curses" if sys.stdout.isatty() and not monitor_stdio else "none"))
    serial_spec = args.opt_serial or ("stdio" if mode == "nographic" else "none")
    if monitor_stdio and (serial_spec == "stdio" or mode == "curses" or args.opt_debugcon == "stdio"):
        raise UsageError("-monitor stdio: stdio is taken (by -nographic, -serial stdio, -debugcon stdio or "
                         "-display curses); use -monitor unix:PATH,server,nowait")
    control_specs = _control_specs(args)
    to_close = []
    if serial_spec == "stdio":
        cfg.serial_backend = StdioBackend(raw=False)
    else:
        try:
            cfg.serial_backend = open_backend(serial_spec)
        except ValueError as exc:
            raise UsageError(f"-serial: {exc}") from None
        except OSError as exc:
            raise UsageError(f"-serial {serial_spec}: {exc.strerror or exc}") from None
    cfg.debugcon_ports = _debugcon_ports(args.devices, bool(args.opt_debugcon))
    if args.opt_debugcon:
        cfg.debugcon, fh = _console_sink(args.opt_debugcon, "-debugcon")
        if fh is not None:
            to_close.append(fh)
    log_out = sys.stderr
    if args.log_items:
        from emu.cpu.tracelog import parse_items  # imports numba, but compiles nothing yet

        try:
            parse_items(args.log_items)  # a bad item is a usage error before the engine loads
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    if args.opt_D:  # (also for the monitor's `log`)
        try:
            log_out = open(args.opt_D, "w", encoding="utf-8")  # noqa: SIM115 - closed at exit
        except OSError as exc:
            raise UsageError(f"-D {args.opt_D}: {exc.strerror or exc}") from None
        to_close.append(log_out)
    loadvm = None
    if args.opt_loadvm:
        from emu import snapshot

        try:
            loadvm = snapshot.precheck(cfg, args.opt_loadvm)  # before the engine loads: quick errors
        except snapshot.SnapshotError as exc:
            raise UsageError(f"-loadvm {args.opt_loadvm}: {exc}") from None
    import emu

    try:
        pc = emu.Machine(config=cfg, display=mode, stdin_fd=0 if _stdin_usable() and not monitor_stdio else None,
                         serial_input=serial_spec == "stdio", timeout=args.timeout)
    except (MachineError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    if args.log_items:
        pc.log(args.log_items, log_out, one_insn_per_tb=args.one_insn)
    elif args.opt_D:
        pc.log_file(log_out)
    if args.opt_loadvm:
        from emu import snapshot

        try:
            pc.loadvm(args.opt_loadvm, loadvm)
        except snapshot.SnapshotError as exc:
            pc.close()
            raise UsageError(f"-loadvm {args.opt_loadvm}: {exc}") from None
    if args.lockstep:
        lockstep = pc.lockstep()
    if gdb_listener is not None:
        pc.gdbserver(gdb_listener, start_paused=args.start_paused)
    if control_specs or (mode == "nographic" and serial_spec == "stdio"):
        from emu.chardev import ChardevError

        if mode == "nographic" and serial_spec == "stdio":
            pc.add_terminal_monitor()  # Ctrl-A c
        try:
            for kind, spec in control_specs:
                (pc.add_monitor if kind == "monitor" else pc.add_qmp)(spec)
        except ChardevError as exc:
            pc.close_monitors()
            if gdb_listener is not None:
                gdb_listener.close()
            pc.close()
            raise UsageError(str(exc)) from None
        if args.start_paused and gdb_listener is None:
            pc.start_paused()
    status = 0
    error = None
    try:
        status = pc.serve()
    except GuestError as exc:
        error, status = str(exc), EXIT_ERROR
    except KeyboardInterrupt:
        error, status = "interrupted", 130
    except Terminated as exc:
        error, status = f"terminating on signal {exc.signum}", 128 + exc.signum
    except Exception as exc:  # noqa: BLE001 - a pyemu bug: still one line (PYEMU_DEBUG=1 re-raises)
        if os.environ.get("PYEMU_DEBUG"):
            raise
        error, status = f"internal error: {type(exc).__name__}: {exc} (PYEMU_DEBUG=1 shows where)", EXIT_ERROR
    finally:
        signals.disarm()
        pc.close()
        cfg.serial_backend.close()
        for fh in to_close:
            fh.close()
    if args.lockstep and not lockstep.diverged:
        _say(f"pyemu: lockstep: no difference from unicorn in {lockstep.compared} instructions compared "
             f"({lockstep.copied} copied)")
    if mode != "curses":
        for text in pc.bios_messages:
            _say(f"pyemu: bios: {text}")
    if args.screendump:
        from emu.screendump import write_screendump  # text unless .png (the monitor's: PPM unless .txt)

        try:
            write_screendump(pc.pc.vga, args.screendump)
        except OSError as exc:
            _say(f"pyemu: error: --screendump {args.screendump}: {exc.strerror or exc}")
            status = status or EXIT_ERROR
    if args.stats or args.stats_json:
        stats = pc.stats()
        if args.stats:
            for key, value in stats.items():
                _say(f"{key:>24}: {value}")
        if args.stats_json:
            try:
                with open(args.stats_json, "w", encoding="utf-8") as out:
                    json.dump(stats, out, indent=1)
            except OSError as exc:
                _say(f"pyemu: error: --stats-json: {exc.strerror or exc}")
    if error:
        _say(f"pyemu: {'error: ' if status == EXIT_ERROR else ''}{error}")
    elif pc.halted:
        _say("pyemu: guest halted")
    elif pc.reset_message:
        _say(f"pyemu: {pc.reset_message}")
    elif status == EXIT_TIMEOUT and args.timeout is not None:
        _say(f"pyemu: timeout after {args.timeout:g} s")
    return status


def _say(line: str) -> None:
    """A line on stderr at the end of a run; a terminal that has gone (SIGHUP) must not turn the end
    into a traceback, nor keep the statistics from being written."""
    try:
        print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def _check_output_path(option: str, path: str) -> None:
    """A file written at the end of the run: refuse at the start what cannot work then (a directory,
    a missing directory), rather than after the guest ran."""
    if os.path.isdir(path):
        raise UsageError(f"{option} {path}: Is a directory")
    parent = os.path.dirname(path) or "."
    if not os.path.isdir(parent):
        raise UsageError(f"{option} {path}: No such directory: {parent}")


def _control_specs(args) -> list[tuple[str, str]]:
    """The -monitor and -qmp servers asked for, checked (the sockets are made later)."""
    from emu.chardev import ChardevError, parse_server

    specs = []
    if args.opt_monitor not in (None, "none", "null"):
        specs.append(("monitor", args.opt_monitor))
    if args.opt_qmp not in (None, "none"):
        specs.append(("qmp", args.opt_qmp))
    for kind, spec in specs:
        if spec == "stdio" and kind == "monitor":
            continue
        try:
            parse_server(spec, f"-{kind}")
        except ChardevError as exc:
            raise UsageError(str(exc)) from None
    return specs


def _stdin_usable() -> bool:
    try:
        os.fstat(0)
        return True
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["img"]:  # its own parser (emu/imgtool.py): qemu-img's option order
        from emu.imgtool import main as img_main

        return img_main(argv[1:])
    argv = _qemu_argv(argv)
    try:
        parser = build_parser()
        if argv[:1] == ["boot"]:
            _check_option_names(parser.boot_parser, argv[1:])
        args = parser.parse_args(argv)
        if args.command == "disasm":
            return _cmd_disasm(args)
        if args.command == "boot":
            return _cmd_boot(args)
        if args.command == "trace-diff":
            from emu.tracediff import main as trace_diff_main

            return trace_diff_main(args)
        if args.command == "fuzz":
            from emu.fuzz.campaign import cmd_fuzz

            return cmd_fuzz(args)
        raise UsageError("a command is needed: pyemu boot, disasm or img ... (see pyemu --help)")
    except UsageError as exc:
        print(f"pyemu: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        print("pyemu: interrupted", file=sys.stderr)
        return 130
    except Terminated as exc:  # before the run started (or in the instant after it ended)
        print(f"pyemu: terminating on signal {exc.signum}", file=sys.stderr)
        return 128 + exc.signum
