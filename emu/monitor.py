"""The human monitor (HMP): `-monitor stdio`, `-monitor unix:PATH,server[,nowait]`, `-monitor tcp:...`.

QEMU's monitor commands, with QEMU's output formats where QEMU has one:

    info status | registers | pic | irq | pci | block | tlb | mem | jit | version | cpus
    x /Nfu ADDR    xp /Nfu ADDR     (f: x d u o c i, u: b h w g; ADDR an expression: 0x7c00, $eip+4, $pc)
    stop | cont | c | system_reset | system_powerdown | sendkey KEYS | screendump FILE | quit | q | help
    savevm [NAME] | loadvm NAME | delvm NAME | info snapshots   (machine snapshots, emu/snapshot.py)

`Control` is what the main loop (emu/mainloop.py) sees of every monitor and QMP server: `poll()`
serves whatever arrived, without blocking, between two runs of the guest; `wait(seconds)` blocks
on the sockets while the guest is stopped or halted; `event()` sends QMP events (emu/qmp.py);
`finish()` says goodbye. Everything is on the main loop's thread: a command sees the machine
between two instructions.

Lines end in CR LF on the wire, as QEMU's monitor writes them; input is a line at a time (no echo,
no line editing: a terminal in cooked mode does that for stdio, a tool like socat for sockets).
"""

from __future__ import annotations

import ast
import os
import select
import sys
import time

from emu import pagewalk
from emu.chardev import ChardevError, Server, parse_server
from emu.cpu import state as S

PROMPT = "(qemu) "
BANNER = "pyemu {version} monitor - type 'help' for more information"
POLL_PERIOD_S = 0.01

HELP = """\
cont|c -- resume emulation
delvm tag -- delete a VM snapshot
gdbserver [device] -- start gdbserver on the given device (default 'tcp::1234'), stop with 'none'
help|? [cmd] -- show the help
info status -- show the current VM status (running|paused)
info registers -- show the cpu registers
info pic -- show the i8259 (PIC) state
info irq -- show the interrupt statistics (delivered per IRQ line)
info pci -- show PCI info
info block -- show the block devices
info tlb -- show virtual to physical memory mappings
info mem -- show the active virtual memory mappings
info jit -- show the translation block cache statistics
info snapshots -- show the currently saved VM snapshots
info cpus -- show infos for each CPU
info version -- show the version of pyemu
loadvm tag -- restore a VM snapshot from its tag
log item1[,...] -- activate logging of the specified items (in_asm,exec,cpu,int,unimp; 'none': off)
q|quit -- quit the emulator
savevm [tag] -- save a VM snapshot (without a tag: vm-DATE)
screendump filename [-f format] -- save the screen: .txt (text), .png or .ppm (image)
sendkey keys -- send keys to the VM (e.g. 'sendkey ctrl-alt-delete')
stop -- stop emulation
system_powerdown -- send a power down event (no ACPI: the machine is switched off)
system_reset -- reset the system
x /fmt addr -- virtual memory dump starting at 'addr'
xp /fmt addr -- physical memory dump starting at 'addr'
"""

# QEMU's key names (qcodes) that pyemu's scancode table spells differently
KEY_ALIASES = {"ret": "enter", "return": "enter", "bracket_left": "bracketleft", "bracket_right": "bracketright",
               "grave_accent": "grave", "asterisk": "kp_multiply", "print": "sysrq", "altgr": "alt_r",
               "altgr_r": "alt_r", "space": "spc", "del": "delete", "control": "ctrl", "kp_comma": "kp_decimal"}

SIZE_UNITS = {"b": 1, "h": 2, "w": 4, "g": 8}
FORMATS = "xduoci"
SEG_LABELS = ("ES", "CS", "SS", "DS", "FS", "GS", "LDT", "TR")
SYS_TYPES = ("Reserved", "TSS16-avl", "LDT", "TSS16-busy", "CallGate16", "TaskGate", "IntGate16", "TrapGate16",
             "Reserved", "TSS32-avl", "Reserved", "TSS32-busy", "CallGate32", "Reserved", "IntGate32",
             "TrapGate32")
PCI_CLASSES = {0x0100: "SCSI controller", 0x0101: "IDE controller", 0x0200: "Ethernet controller",
               0x0300: "VGA controller", 0x0600: "Host bridge", 0x0601: "ISA bridge", 0x0680: "Bridge"}


class MonitorError(Exception):
    """A command that cannot be done: its message is the monitor's answer."""


# -- the commands --------------------------------------------------------------------------------
class Hmp:
    """The command interpreter: one line in, the text QEMU's monitor would print out."""

    def __init__(self, control):
        self.control = control

    @property
    def loop(self):
        return self.control.loop

    @property
    def m(self):
        return self.control.loop.m

    def execute(self, line: str) -> str:
        line = line.strip()
        if not line:
            return ""
        try:
            return self._dispatch(line)
        except MonitorError as exc:
            return f"{exc}\n"
        except Exception as exc:  # noqa: BLE001 - a pyemu bug must not take the machine down with it
            if os.environ.get("PYEMU_DEBUG"):
                raise
            return f"internal error: {type(exc).__name__}: {exc}\n"

    def _dispatch(self, line: str) -> str:
        word, _, rest = line.partition(" ")
        arg = ""
        if "/" in word and word.split("/", 1)[0] in ("x", "xp"):
            word, arg = word.split("/", 1)
            arg = "/" + arg
        rest = (arg + " " + rest).strip() if arg else rest.strip()
        if word == "info":
            return self.info(rest)
        if word in ("x", "xp"):
            return self.memory_dump(rest, physical=word == "xp")
        if word in ("help", "?", "h"):
            return self.help(rest)
        simple = {"stop": self.stop, "cont": self.cont, "c": self.cont, "system_reset": self.system_reset,
                  "system_powerdown": self.system_powerdown, "quit": self.quit, "q": self.quit}
        if word in simple:
            if rest:
                raise MonitorError(f"{word}: extraneous characters at the end of line")
            return simple[word]()
        if word == "sendkey":
            return self.sendkey(rest)
        if word == "screendump":
            return self.screendump(rest)
        if word in ("savevm", "loadvm", "delvm"):
            return self.snapshot_command(word, rest)
        if word == "gdbserver":
            return self.gdbserver(rest)
        if word == "log":
            return self.log(rest)
        raise MonitorError(f"unknown command: '{word}'")

    def help(self, rest: str) -> str:
        if not rest:
            return HELP
        lines = [ln for ln in HELP.splitlines() if rest in ln.split(" -- ")[0].replace("|", " ").split()]
        if not lines:
            raise MonitorError(f"unknown command: '{rest}'")
        return "\n".join(lines) + "\n"

    # -- run control ------------------------------------------------------------------------------
    def stop(self) -> str:
        self.loop.pause("paused")
        return ""

    def cont(self) -> str:
        gdb = self.loop.gdb
        if gdb is not None and gdb.state != "running":
            raise MonitorError("the guest is stopped by gdb: continue it from gdb")
        self.loop.resume()
        return ""

    def system_reset(self) -> str:
        self.loop.request_reset("host-qmp-system-reset")
        return ""

    def system_powerdown(self) -> str:
        self.control.event("POWERDOWN")
        self.loop.request_quit("host-qmp-quit")  # no ACPI for the guest to act on: power goes off
        return ""

    def quit(self) -> str:
        self.loop.request_quit("host-qmp-quit")
        return ""

    # -- info ---------------------------------------------------------------------------------------
    def info(self, what: str) -> str:
        table = {"status": self.info_status, "registers": self.info_registers, "pic": self.info_pic,
                 "pci": self.info_pci, "block": self.info_block, "tlb": self.info_tlb, "mem": self.info_mem,
                 "jit": self.info_jit, "version": self.info_version, "cpus": self.info_cpus,
                 "irq": self.info_irq, "snapshots": self.info_snapshots}
        if not what:
            return "".join(ln + "\n" for ln in HELP.splitlines() if ln.startswith("info "))
        fn = table.get(what.split()[0])
        if fn is None:
            raise MonitorError(f"info: unknown item '{what}' (pyemu has: {', '.join(table)})")
        return fn()

    def info_status(self) -> str:
        status = self.control.run_status()
        if status == "running":
            return "VM status: running\n"
        return f"VM status: paused{'' if status == 'paused' else f' ({status})'}\n"

    def info_snapshots(self) -> str:
        from emu import snapshot

        return snapshot.info_text(self.m)

    def info_version(self) -> str:
        from emu import __version__

        return f"{__version__} (pyemu)\n"

    def info_cpus(self) -> str:
        pc = self._pc()
        return f"* CPU #0: pc=0x{pc:08x} thread_id={os.getpid()}\n"

    def info_registers(self) -> str:
        return cpu_state_text(self.m.core)

    def info_pic(self) -> str:
        out = []
        for i, chip in enumerate((self.m.pic.master, self.m.pic.slave)):
            out.append(f"pic{i}: irr={chip.irr:02x} imr={chip.imr:02x} isr={chip.isr:02x} "
                       f"hprio={(chip.lowest + 1) & 7} irq_base={chip.vector_base:02x} "
                       f"rr_sel={int(chip.read_isr)} elcr={chip.elcr:02x} fnm={int(chip.sfnm)}\n")
        return "".join(out)

    def info_irq(self) -> str:
        counts = self.loop.irq_counts
        return "IRQ statistics for isa-i8259:\n" + "".join(f"{i:2d}: {n}\n" for i, n in enumerate(counts) if n)

    def info_pci(self) -> str:
        out = []
        for (dev, fn), f in sorted(self.m.pci.functions.items()):
            cfg = f.config
            vendor, device = cfg[0] | cfg[1] << 8, cfg[2] | cfg[3] << 8
            cls = cfg[0x0B] << 8 | cfg[0x0A]
            name = PCI_CLASSES.get(cls, f"Class {cls:04x}")
            out.append(f"  Bus  0, device {dev:3d}, function {fn}:\n")
            out.append(f"    {name}: PCI device {vendor:04x}:{device:04x}\n")
            pin, line = cfg[0x3D], cfg[0x3C]
            if pin:
                out.append(f"      IRQ {line}, pin {chr(ord('A') + pin - 1)}\n")
            for index, size in sorted(f.bar_sizes.items()):
                raw = int.from_bytes(cfg[0x10 + 4 * index:0x14 + 4 * index], "little")
                if raw & 1:
                    base = raw & 0xFFFC
                    where = (f"I/O at 0x{base:04x} [0x{base + size - 1:04x}]" if base
                             else f"I/O at 0xffffffffffffffff [0x{size - 2:04x}]")
                else:
                    base = raw & 0xFFFF_FFF0
                    pref = " prefetchable" if raw & 8 else ""
                    where = (f"32 bit{pref} memory at 0x{base:08x} [0x{base + size - 1:08x}]" if base
                             else f"32 bit{pref} memory at 0xffffffffffffffff [0x{size - 2:08x}]")
                out.append(f"      BAR{index}: {where}.\n")
            if f.rom_size:
                raw = int.from_bytes(cfg[0x30:0x34], "little")
                base = raw & 0xFFFF_F800
                out.append(f"      BAR6: 32 bit memory at 0x{base:08x} [0x{base + f.rom_size - 1:08x}].\n")
            out.append(f'      id "{f.name}"\n')
        return "".join(out)

    def info_block(self) -> str:
        m = self.m
        out = []
        drives = [(f"floppy{i}", img, True) for i, img in enumerate(m.floppies)]
        drives += [(f"ide0-hd{i}", img, False) for i, img in enumerate(m.disks)]
        drives.append(("ide1-cd0", m.cdrom, True))
        for name, img, removable in drives:
            if img is None and not removable:
                continue
            if img is None:
                out.append(f"{name}: [not inserted]\n")
            else:
                flags = ["raw"]
                if img.readonly:
                    flags.append("read-only")
                if img.snapshot:
                    flags.append("snapshot")
                out.append(f"{name}: {img.path or '(memory)'} ({', '.join(flags)})\n")
            if removable:
                out.append("    Removable device: not locked, tray closed\n")
        return "".join(out)

    def info_tlb(self) -> str:
        core = self.m.core
        if not pagewalk.paging_enabled(core):
            return "PG disabled\n"
        out = []
        for va, size, entry, phys, _prot in pagewalk.mappings(core):
            e = entry
            bits = "".join(c if e & b else "-" for c, b in (
                ("X", pagewalk.PG_NX), ("G", pagewalk.PG_G), ("P", pagewalk.PG_PS), ("D", pagewalk.PG_D),
                ("A", pagewalk.PG_A), ("C", pagewalk.PG_PCD), ("T", pagewalk.PG_PWT), ("U", pagewalk.PG_US),
                ("W", pagewalk.PG_RW)))
            del size
            out.append(f"{va:016x}: {phys:016x} {bits}\n")
        return "".join(out)

    def info_mem(self) -> str:
        core = self.m.core
        if not pagewalk.paging_enabled(core):
            return "PG disabled\n"
        out = []
        run_start = run_end = None
        run_prot = 0

        def emit() -> None:
            if run_start is not None:
                out.append(f"{run_start:08x}-{run_end:08x} {run_end - run_start:08x} "
                           f"{'u' if run_prot & pagewalk.PG_US else '-'}r"
                           f"{'w' if run_prot & pagewalk.PG_RW else '-'}\n")

        for va, size, _entry, _phys, prot in pagewalk.mappings(core):
            prot &= pagewalk.PG_US | pagewalk.PG_RW
            if run_start is not None and va == run_end and prot == run_prot:
                run_end = va + size
                continue
            emit()
            run_start, run_end, run_prot = va, va + size, prot
        emit()
        return "".join(out)

    def info_jit(self) -> str:
        return jit_text(self.loop.stats())

    # -- memory -------------------------------------------------------------------------------------
    def _pc(self) -> int:
        st = self.m.st
        return (int(st[S.seg_slot(S.CS, S.SEG_BASE)]) + int(st[S.EIP])) & 0xFFFF_FFFF

    def memory_dump(self, rest: str, physical: bool) -> str:
        count, fmt, size = 1, "x", 4
        if rest.startswith("/"):
            spec, _, rest = rest[1:].partition(" ")
            digits = ""
            while spec and spec[0].isdigit():
                digits, spec = digits + spec[0], spec[1:]
            if digits:
                count = int(digits)
            for ch in spec:
                if ch in FORMATS:
                    fmt = ch
                elif ch in SIZE_UNITS:
                    size = SIZE_UNITS[ch]
                else:
                    raise MonitorError(f"invalid char in format: '{ch}'")
            if fmt == "c" and not any(ch in SIZE_UNITS for ch in spec):
                size = 1
        if not rest.strip():
            raise MonitorError("x: an address is needed (e.g. x/8xb 0x7c00)")
        addr = self._expression(rest)
        if count > 4096:
            raise MonitorError("x: at most 4096 items")
        if fmt == "i":
            return self._disassemble(addr, count, physical)
        data = self._read(addr, count * size, physical)
        line_size = 8 if size == 1 else 16
        out = []
        for off in range(0, len(data), line_size):
            chunk = data[off:off + line_size]
            head = f"{addr + off:016x}:" if physical else f"{(addr + off) & 0xFFFF_FFFF:08x}:"
            items = []
            for i in range(0, len(chunk) - size + 1, size):
                v = int.from_bytes(chunk[i:i + size], "little")
                if fmt == "x":
                    items.append(f" 0x{v:0{size * 2}x}")
                elif fmt == "o":
                    items.append(f" {'0' + format(v, 'o') if v else '0':>{(size * 8 + 2) // 3}}")
                elif fmt == "u":
                    items.append(f" {v:{(size * 8 * 10 + 32) // 33}d}")
                elif fmt == "d":
                    if v >> (size * 8 - 1):
                        v -= 1 << (size * 8)
                    items.append(f" {v:{(size * 8 * 10 + 32) // 33}d}")
                else:  # c
                    items.append(" " + (chr(v) if 0x20 <= v < 0x7F else f"\\x{v:02x}"))
            out.append(head + "".join(items) + "\n")
        if len(data) < count * size:
            out.append(f"Cannot access memory at {'physical' if physical else 'virtual'} address "
                       f"0x{addr + len(data):x}\n")
        return "".join(out)

    def _read(self, addr: int, n: int, physical: bool) -> bytes:
        core = self.m.core
        if physical:
            end = min(addr + n, 1 << 32)
            if addr >= end:
                return b""
            try:
                return core.read_phys(addr, end - addr)
            except (IndexError, ValueError):
                return b""
        return pagewalk.read_linear(core, addr, n) or b""

    def _disassemble(self, addr: int, count: int, physical: bool) -> str:
        bits = 32 if int(self.m.st[S.HFLAGS]) & S.HF_CS32 else 16
        code = self._read(addr, count * 15 + 15, physical)
        out = []
        try:
            import capstone

            md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_32 if bits == 32 else capstone.CS_MODE_16)
            for insn in md.disasm(code, addr):
                out.append(f"0x{insn.address:08x}:  {insn.mnemonic} {insn.op_str}".rstrip() + "\n")
                if len(out) == count:
                    break
        except ImportError:
            from emu.translate.disasm import disassemble_lines

            for line in disassemble_lines(code, bits=bits, org=addr)[:count]:
                a, _, text = line.partition(": ")
                out.append(f"0x{int(a, 16):08x}:  {text.split('  ', 1)[-1].strip()}\n")
        if len(out) < count:
            out.append(f"Cannot access memory at address 0x{addr:x}\n" if not code else "")
        return "".join(out)

    def _registers(self) -> dict[str, int]:
        st, core = self.m.st, self.m.core
        regs = {name: int(st[i]) & 0xFFFF_FFFF for i, name in enumerate(S.GPR_NAMES)}
        regs["eip"] = int(st[S.EIP]) & 0xFFFF_FFFF
        regs["pc"] = self._pc()
        regs["eflags"] = core.get_flags()
        for seg, name in enumerate(S.SEG_NAMES[:6]):
            regs[name] = int(st[S.seg_slot(seg, S.SEG_SEL)])
        for i, slot in enumerate((S.CR0, None, S.CR2, S.CR3, S.CR4)):
            if slot is not None:
                regs[f"cr{i}"] = int(st[slot]) & 0xFFFF_FFFF
        for i, name in enumerate(("ax", "cx", "dx", "bx", "sp", "bp", "si", "di")):
            regs[name] = int(st[i]) & 0xFFFF
        return regs

    def _expression(self, text: str) -> int:
        """QEMU's monitor expressions, reduced: numbers (0x.. hex, else decimal), $register, + - * / & | ( )."""
        regs = self._registers()
        src = text.strip()
        for name in sorted(regs, key=len, reverse=True):
            src = src.replace("$" + name, f"_{name}")
        try:
            tree = ast.parse(src, mode="eval")
        except SyntaxError:
            raise MonitorError(f"invalid expression: '{text.strip()}'") from None

        def ev(node) -> int:
            if isinstance(node, ast.Expression):
                return ev(node.body)
            if isinstance(node, ast.Constant) and isinstance(node.value, int):
                return node.value
            if isinstance(node, ast.Name) and node.id.startswith("_") and node.id[1:] in regs:
                return regs[node.id[1:]]
            if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.Invert)):
                v = ev(node.operand)
                return -v if isinstance(node.op, ast.USub) else ~v
            if isinstance(node, ast.BinOp):
                a, b = ev(node.left), ev(node.right)
                ops = {ast.Add: lambda: a + b, ast.Sub: lambda: a - b, ast.Mult: lambda: a * b,
                       ast.BitAnd: lambda: a & b, ast.BitOr: lambda: a | b,
                       ast.FloorDiv: lambda: a // b, ast.Div: lambda: a // b}
                fn = ops.get(type(node.op))
                if fn is not None and not (isinstance(node.op, (ast.Div, ast.FloorDiv)) and b == 0):
                    return fn()
            raise MonitorError(f"invalid expression: '{text.strip()}'")

        return ev(tree) & 0xFFFF_FFFF

    # -- devices -------------------------------------------------------------------------------------
    def gdbserver(self, rest: str) -> str:
        """Start a gdb stub while the guest runs (as -gdb would have), or stop it with 'none'."""
        from emu.gdbstub import GdbSpecError, GdbStub, Listener

        loop, spec = self.loop, rest or "tcp::1234"
        if spec == "none":
            if loop.gdb is None:
                return "No gdbserver to disable\n"
            loop.gdb.finish(0)
            loop.gdb = None
            return "Disabled gdbserver\n"
        if loop.gdb is not None:
            raise MonitorError(f"gdbserver already running on '{loop.gdb.listener.spec}'")
        try:
            listener = Listener(spec)
        except GdbSpecError as exc:
            raise MonitorError(f"Could not open gdbserver on device '{spec}': {exc}") from None
        loop.gdb = GdbStub(self.m, listener, loop=loop)
        listener.listen()
        return f"Waiting for gdb connection on device '{spec}'\n"

    def log(self, rest: str) -> str:
        """Switch -d's log items at run time; the log goes to the -D file, else to stderr."""
        from emu.cpu.tracelog import TraceLog, parse_items

        if not rest:
            raise MonitorError("log: needs items (in_asm,exec,cpu,int,unimp or none)")
        items = rest
        if items.strip() == "none":
            mask = 0
        else:
            try:
                mask = parse_items(items)
            except ValueError:
                raise MonitorError(f"Invalid parameter '{rest}'") from None
        loop = self.loop
        if loop.trace is None:
            if not mask:
                return ""
            loop.trace = TraceLog(self.m.core, mask, loop.log_out or sys.stderr)
        loop.trace.mask = mask
        self.m.st[S.LOG_MASK] = mask
        return ""

    def sendkey(self, rest: str) -> str:
        from emu import hostkeys

        parts = rest.split()
        if not parts:
            raise MonitorError("sendkey: which keys? (e.g. sendkey ctrl-alt-delete)")
        names = []
        for key in parts[0].split("-"):
            key = key.lower()
            name = KEY_ALIASES.get(key, key)
            if key.startswith("0x"):
                raise MonitorError(f"sendkey: give key names, not numbers ('{key}')")
            try:
                hostkeys.key_make(name)
            except KeyError:
                raise MonitorError(f"unknown key: '{key}'") from None
            names.append(name)
        codes = b"".join(hostkeys.key_make(n) for n in names)
        codes += b"".join(hostkeys.key_break(n) for n in reversed(names))
        fe = self.loop.frontend
        if fe is not None:
            fe.keys.append(codes)  # typed when the keyboard has taken what is before it
        else:
            self.m.i8042.key_set1(codes)
        return ""

    def snapshot_command(self, word: str, rest: str) -> str:
        """savevm [NAME], loadvm NAME, delvm NAME: nothing printed on success, as QEMU."""
        from emu import snapshot

        args = rest.split()
        if len(args) > 1:
            raise MonitorError(f"{word}: extraneous characters at the end of line")
        if not args and word != "savevm":
            raise MonitorError(f"{word}: a snapshot name is needed")
        name = args[0] if args else time.strftime("vm-%Y%m%d%H%M%S")
        try:
            if word == "savevm":
                snapshot.save(self.m, self.loop, name)
            elif word == "loadvm":
                snapshot.load(self.m, self.loop, name)
            else:
                snapshot.delete(self.m, name)
        except snapshot.SnapshotError as exc:
            raise MonitorError(f"Error: {exc}") from None
        return ""

    def screendump(self, rest: str) -> str:
        parts = rest.split()
        fmt = None
        if "-f" in parts:
            i = parts.index("-f")
            if i + 1 >= len(parts):
                raise MonitorError("screendump: -f needs a format (ppm, png)")
            fmt = parts[i + 1]
            del parts[i:i + 2]
        if len(parts) != 1:
            raise MonitorError("screendump: one file name is needed")
        write_screen(self.m.vga, parts[0], fmt)
        return ""


# -- formats --------------------------------------------------------------------------------------------
def cpu_state_text(core) -> str:
    """`info registers` as QEMU's i386 target prints it (target/i386/cpu-dump.c), FPU included."""
    from emu.cpu.fpu import f64_to_ext

    st = core.st
    r = [int(st[i]) & 0xFFFF_FFFF for i in range(8)]
    fl = core.get_flags()
    flag_text = "".join(c if fl >> b & 1 else "-" for c, b in zip("DOSZAPC", (10, 11, 7, 6, 4, 2, 0), strict=True))
    pe = bool(int(st[S.CR0]) & 1)
    lines = [f"EAX={r[0]:08x} EBX={r[3]:08x} ECX={r[1]:08x} EDX={r[2]:08x}",
             f"ESI={r[6]:08x} EDI={r[7]:08x} EBP={r[5]:08x} ESP={r[4]:08x}",
             f"EIP={int(st[S.EIP]) & 0xFFFF_FFFF:08x} EFL={fl:08x} [{flag_text}] CPL={int(st[S.CPL])} "
             f"II={1 if int(st[S.INHIBIT_IRQ]) else 0} A20={int(st[S.A20_MASK]) >> 20 & 1} SMM=0 "
             f"HLT={1 if int(st[S.HALTED]) else 0}"]
    for seg, label in enumerate(SEG_LABELS):
        lines.append(_segment_line(st, seg, label, pe))
    lines.append(f"GDT=     {int(st[S.GDTR_BASE]) & 0xFFFF_FFFF:08x} {int(st[S.GDTR_LIMIT]):08x}")
    lines.append(f"IDT=     {int(st[S.IDTR_BASE]) & 0xFFFF_FFFF:08x} {int(st[S.IDTR_LIMIT]):08x}")
    lines.append(f"CR0={int(st[S.CR0]) & 0xFFFF_FFFF:08x} CR2={int(st[S.CR2]) & 0xFFFF_FFFF:08x} "
                 f"CR3={int(st[S.CR3]) & 0xFFFF_FFFF:08x} CR4={int(st[S.CR4]) & 0xFFFF_FFFF:08x}")
    lines.append("".join(f"DR{i}={int(st[S.DR0 + i]) & 0xFFFF_FFFF:08x} " for i in range(4)))
    lines.append(f"DR6={int(st[S.DR0 + 6]) & 0xFFFF_FFFF:08x} DR7={int(st[S.DR0 + 7]) & 0xFFFF_FFFF:08x}")
    lines.append(f"EFER={int(st[S.EFER]) & 0xFFFF_FFFF_FFFF_FFFF:016x}")
    fsw = int(st[S.FPU_FSW]) & 0xFFFF
    ftw = int(st[S.FPU_FTW])
    abridged = sum(1 << i for i in range(8) if (ftw >> (2 * i)) & 3 != 3)
    lines.append(f"FCW={int(st[S.FPU_FCW]) & 0xFFFF:04x} FSW={fsw:04x} [ST={(fsw >> 11) & 7}] FTW={abridged:02x} "
                 f"MXCSR={int(st[S.MXCSR]) & 0xFFFF_FFFF:08x}")
    fpr = []
    for i in range(8):
        mant, se = f64_to_ext.py_func(int(st[S.FPU_R0 + i]))
        fpr.append(f"FPR{i}={mant & 0xFFFF_FFFF_FFFF_FFFF:016x} {se & 0xFFFF:04x}")
    lines += [f"{fpr[i]} {fpr[i + 1]}" for i in range(0, 8, 2)]
    return "\n".join(lines) + "\n"


def _segment_line(st, seg: int, label: str, pe: bool) -> str:
    attr = int(st[S.seg_slot(seg, S.SEG_ATTR)]) & 0xF0FF  # the descriptor's attribute bits (no summary)
    limit = int(st[S.seg_slot(seg, S.SEG_LIMIT)]) & 0xFFFF_FFFF
    limit_hi = (limit >> 28) & 0xF if attr & S.ATTR_G else (limit >> 16) & 0xF
    flags = (attr << 8) | (limit_hi << 16)
    text = (f"{label:<3}={int(st[S.seg_slot(seg, S.SEG_SEL)]) & 0xFFFF:04x} "
            f"{int(st[S.seg_slot(seg, S.SEG_BASE)]) & 0xFFFF_FFFF:08x} {limit:08x} {flags:08x}")
    if not pe or not attr & S.ATTR_P:
        return text
    text += f" DPL={(attr >> S.ATTR_DPL_SHIFT) & 3} "
    if attr & S.ATTR_S:
        if attr & S.ATTR_CODE:
            text += "CS64" if attr & S.ATTR_L else ("CS32" if attr & S.ATTR_DB else "CS16")
            text += f" [{'C' if attr & 4 else '-'}{'R' if attr & 2 else '-'}"
        else:
            text += "DS  " if attr & S.ATTR_DB else "DS16"
            text += f" [{'E' if attr & 4 else '-'}{'W' if attr & 2 else '-'}"
        text += f"{'A' if attr & 1 else '-'}]"
    else:
        text += SYS_TYPES[attr & 0xF]
    return text


JIT_GROUPS = (
    ("Translation buffer state:", ("tb_translated", "tb_insns", "tb_live", "tb_cross_page", "compiled_blocks",
                                   "compiled_insns", "compile_ns", "compiled_share")),
    ("Block cache:", ("lookups", "lookup_fast_hits", "lookup_slow_hits", "lookup_misses", "lookup_hit_rate",
                      "chained", "chain_links")),
    ("Statistics:", ("tb_flushes", "tb_invalidated", "smc_writes", "tlb_hits", "tlb_misses", "tlb_hit_rate",
                     "tlb_flushes", "tlb_flushes_global_kept", "tlb_invlpg", "mem_slow", "mem_cross_page",
                     "exceptions", "interrupts")),
    ("Execution:", ("guest_instructions", "insns", "wall_seconds", "mips", "resets")),
)


def jit_text(stats: dict) -> str:
    """The `--stats` counters, grouped as QEMU's `info jit` groups its own."""
    out = []
    seen = set()
    for title, keys in JIT_GROUPS:
        out.append(title)
        for key in keys:
            if key in stats:
                seen.add(key)
                out.append(f"{key:<24}{stats[key]}")
        out.append("")
    rest = [k for k in stats if k not in seen]
    if rest:
        out.append("Exits:")
        out += [f"{key:<24}{stats[key]}" for key in rest]
    return "\n".join(out).rstrip("\n") + "\n"


def write_screen(vga, path: str, fmt: str | None = None) -> None:
    """The screen to `path`: `fmt` ppm or png, else the extension (.txt text, .png, anything else PPM,
    QEMU's default). MonitorError on a failure."""
    from emu.screendump import encode_png

    if fmt is None:
        low = path.lower()
        fmt = "txt" if low.endswith(".txt") else "png" if low.endswith(".png") else "ppm"
    if fmt not in ("ppm", "png", "txt"):
        raise MonitorError(f"screendump: unsupported format '{fmt}' (ppm, png)")
    try:
        if fmt == "txt":
            with open(path, "w", encoding="utf-8") as out:
                out.write(vga.screendump_text())
            return
        rgb = vga.render_rgb()
        if fmt == "png":
            data = encode_png(rgb)
        else:
            h, w = rgb.shape[:2]
            data = f"P6\n{w} {h}\n255\n".encode() + rgb.astype("uint8").tobytes()
        with open(path, "wb") as out:
            out.write(data)
    except OSError as exc:
        raise MonitorError(f"screendump: {path}: {exc.strerror or exc}") from None


# -- sessions ---------------------------------------------------------------------------------------------
def _crlf(text: str) -> bytes:
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8", "replace")


class HmpServer:
    """A monitor on a socket: every client gets the banner and a prompt, then a reply per line."""

    def __init__(self, control, server: Server):
        self.control = control
        self.server = server

    def fds(self) -> list:
        return self.server.fds()

    def poll(self) -> None:
        while True:
            client = self.server.accept()
            if client is None:
                break
            client.write(_crlf(self.control.banner() + "\n" + PROMPT))
        for client in self.server.clients:
            if client.read() or client.inbuf:
                while b"\n" in client.inbuf and not client.closed:
                    raw, _, rest = bytes(client.inbuf).partition(b"\n")
                    client.inbuf[:] = rest
                    reply = self.control.hmp.execute(raw.decode("utf-8", "replace").strip("\r"))
                    client.write(_crlf(reply) + PROMPT.encode())
        self.server.reap()

    def finish(self) -> None:
        self.server.close()


class StdioMonitor:
    """`-monitor stdio`: lines from standard input, answers on standard output."""

    def __init__(self, control, fd: int = 0, out=None):
        self.control = control
        self.fd = fd
        self.out = out if out is not None else sys.stdout
        self.buf = bytearray()
        self.eof = False
        self.started = False

    def fds(self) -> list:
        return [] if self.eof else [self.fd]

    def _write(self, text: str) -> None:
        try:
            self.out.write(text)
            self.out.flush()
        except (OSError, ValueError):
            pass

    def poll(self) -> None:
        if not self.started:
            self.started = True
            self._write(self.control.banner() + "\n" + PROMPT)
        while not self.eof:
            try:
                ready, _, _ = select.select([self.fd], [], [], 0)
            except (OSError, ValueError):
                self.eof = True
                break
            if not ready:
                break
            try:
                data = os.read(self.fd, 4096)
            except OSError:
                data = b""
            if not data:
                self.eof = True
                break
            self.buf += data
            while b"\n" in self.buf:
                raw, _, rest = bytes(self.buf).partition(b"\n")
                self.buf[:] = rest
                self._write(self.control.hmp.execute(raw.decode("utf-8", "replace").strip("\r")) + PROMPT)

    def finish(self) -> None:
        if self.started:
            self._write("\n")


class MuxMonitor:
    """The monitor behind Ctrl-A c on a -nographic terminal (QEMU's `mon:stdio`). The terminal is in
    raw mode, so this echoes what is typed, handles Backspace, and ends a line at CR or LF."""

    def __init__(self, control, out=None):
        self.control = control
        self.out = out
        self.line = bytearray()

    def _write(self, text: str) -> None:
        out = self.out if self.out is not None else sys.stdout
        try:
            out.write(text.replace("\r\n", "\n").replace("\n", "\r\n"))
            out.flush()
        except (OSError, ValueError):
            pass

    def enter(self) -> None:
        self.line.clear()
        self._write("\n" + self.control.banner() + "\n" + PROMPT)

    def leave(self) -> None:
        self._write("\n")

    def feed(self, data: bytes) -> None:
        for b in data:
            if b in (0x0D, 0x0A):
                self._write("\n")
                line = self.line.decode("utf-8", "replace")
                self.line.clear()
                self._write(self.control.hmp.execute(line) + PROMPT)
            elif b in (0x08, 0x7F):
                if self.line:
                    del self.line[-1]
                    self._write("\b \b")
            elif 0x20 <= b < 0x7F:
                self.line.append(b)
                self._write(chr(b))

    def fds(self) -> list:
        return []

    def poll(self) -> None:
        pass

    def finish(self) -> None:
        pass


class Control:
    """Every monitor and QMP server of one pyemu, as the main loop sees them."""

    def __init__(self, loop):
        self.loop = loop
        loop.control = self
        self.hmp = Hmp(self)
        self.endpoints: list = []  # HmpServer, StdioMonitor, emu.qmp.QmpServer
        self.next_poll = 0.0

    # -- construction (from the CLI) --------------------------------------------------------------
    def add_monitor(self, spec: str) -> None:
        if spec == "stdio":
            self.endpoints.append(StdioMonitor(self))
            return
        if spec in ("none", "null"):
            return
        self.endpoints.append(HmpServer(self, Server(parse_server(spec, "-monitor"), "-monitor")))

    def add_qmp(self, spec: str) -> None:
        from emu.qmp import QmpServer

        self.endpoints.append(QmpServer(self, Server(parse_server(spec, "-qmp"), "-qmp")))

    def add_mux(self, frontend) -> None:
        """Ctrl-A c on the -nographic terminal."""
        mux = MuxMonitor(self)
        frontend.monitor = mux
        self.endpoints.append(mux)

    @property
    def holds_machine(self) -> bool:
        """A monitor or QMP server (not only Ctrl-A c) keeps a halted machine up."""
        return any(not isinstance(ep, MuxMonitor) for ep in self.endpoints)

    def banner(self) -> str:
        from emu import __version__

        return BANNER.format(version=__version__)

    # -- the main loop's hooks ------------------------------------------------------------------------
    def start(self) -> None:
        """Before the guest's first instruction: wait for the first client of every server that was
        not given `nowait` (QEMU's default), and greet the others."""
        for ep in self.endpoints:
            server = getattr(ep, "server", None)
            if server is None or not server.spec.wait:
                continue
            print(f"pyemu: waiting for a connection on {server.spec.text}", file=sys.stderr, flush=True)
            fe = self.loop.frontend
            while not server.clients and self.loop.m.exit_status is None:
                select.select([server], [], [], 0.05)
                ep.poll()
                if fe is not None:
                    fe.poll()
                    if fe.quit_requested:
                        self.loop.request_quit("host-ui")
        self.poll()

    def poll(self) -> None:
        for ep in self.endpoints:
            ep.poll()

    def poll_due(self, now: float) -> None:
        if now >= self.next_poll:
            self.next_poll = now + POLL_PERIOD_S
            self.poll()

    def wait(self, seconds: float) -> None:
        fds = [fd for ep in self.endpoints for fd in ep.fds()]
        if fds:
            try:
                select.select(fds, [], [], seconds)
            except (OSError, ValueError):
                time.sleep(seconds)
        elif seconds > 0:
            time.sleep(seconds)
        self.poll()

    def run_status(self) -> str:
        loop = self.loop
        if loop.m.exit_status is not None:
            return "shutdown"
        gdb = loop.gdb
        if gdb is not None and gdb.state != "running":
            return "debug"
        return loop.pause_reason or "running"

    def event(self, name: str, data: dict | None = None) -> None:
        for ep in self.endpoints:
            send = getattr(ep, "event", None)
            if send is not None:
                send(name, data)

    def finish(self, reason: str) -> None:
        self.event("SHUTDOWN", {"guest": reason.startswith("guest"), "reason": reason})
        for ep in self.endpoints:
            ep.finish()


__all__ = ["ChardevError", "Control", "Hmp", "MonitorError", "cpu_state_text", "jit_text", "write_screen"]
