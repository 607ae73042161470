"""Run x86 code in unicorn as a reference: a reusable oracle for differential tests.

    result = run_unicorn(code, bits=32, regs={"eax": 1, "ebx": 2}, eflags=0x202,
                         mem={0x2000: b"\\x01\\x02"})
    result.regs["eax"], result.eflags, result.read(0x2000, 2), result.exception

One unicorn instance per mode is created lazily and reused (creating one costs milliseconds).
Between runs every general register is reset to 0 (or the given value), EFLAGS to the given value,
segment registers to 0 (flat; 16-bit mode is real mode with CS = DS = ... = 0) and execution starts
at ``CODE_ADDR``.  Memory pages are mapped on demand, 4 KiB at a time, and persist between runs:
write what a test depends on.  Execution stops after ``count`` instructions (default: the number
of instructions needed to reach the end of ``code``, at most 1000) or on a CPU exception, whose
vector is returned in ``result.exception`` (None if there was none); the exception is not
delivered (EIP stays at the faulting instruction), and the instance is replaced by a fresh one
(about 8 ms) because unicorn would otherwise report the next exception as a double fault.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import unicorn
from unicorn import x86_const as X

CODE_ADDR = 0x1000
PAGE = 0x1000

REG_IDS = {
    "eax": X.UC_X86_REG_EAX, "ebx": X.UC_X86_REG_EBX, "ecx": X.UC_X86_REG_ECX,
    "edx": X.UC_X86_REG_EDX, "esi": X.UC_X86_REG_ESI, "edi": X.UC_X86_REG_EDI,
    "ebp": X.UC_X86_REG_EBP, "esp": X.UC_X86_REG_ESP,
}
SEG_IDS = {
    "cs": X.UC_X86_REG_CS, "ds": X.UC_X86_REG_DS, "es": X.UC_X86_REG_ES,
    "ss": X.UC_X86_REG_SS, "fs": X.UC_X86_REG_FS, "gs": X.UC_X86_REG_GS,
}
# Sub-registers accepted in ``regs``: (full register, shift, width in bits).
SUBREGS = {}
for _i, _r in enumerate(("a", "c", "d", "b")):
    SUBREGS[_r + "l"] = ("e" + _r + "x", 0, 8)
    SUBREGS[_r + "h"] = ("e" + _r + "x", 8, 8)
    SUBREGS[_r + "x"] = ("e" + _r + "x", 0, 16)
for _r in ("si", "di", "bp", "sp"):
    SUBREGS[_r] = ("e" + _r, 0, 16)


@dataclass
class UcResult:
    regs: dict[str, int]          # the eight 32-bit GPRs by name (eax ... esp), and "eip"
    eflags: int
    read: Callable[[int, int], bytes]  # read(addr, size) -> bytes of guest memory
    exception: int | None         # CPU exception vector raised (0 = #DE, 6 = #UD, ...)

    def __iter__(self):  # allows `regs, eflags, read, exc = run_unicorn(...)`
        return iter((self.regs, self.eflags, self.read, self.exception))


class _Machine:
    def __init__(self, bits: int):
        mode = {16: unicorn.UC_MODE_16, 32: unicorn.UC_MODE_32}[bits]
        self.bits = bits
        self.uc = unicorn.Uc(unicorn.UC_ARCH_X86, mode)
        self.mapped: set[int] = set()
        self.exception: int | None = None
        self.uc.hook_add(unicorn.UC_HOOK_INTR, self._on_intr)

    def _on_intr(self, uc, intno, _user):
        self.exception = intno
        uc.emu_stop()

    def map(self, addr: int, size: int) -> None:
        first = addr & ~(PAGE - 1)
        for page in range(first, addr + max(size, 1), PAGE):
            if page not in self.mapped:
                self.uc.mem_map(page, PAGE)
                self.mapped.add(page)

    def read(self, addr: int, size: int) -> bytes:
        return bytes(self.uc.mem_read(addr, size))


_machines: dict[int, _Machine] = {}


def machine(bits: int) -> _Machine:
    m = _machines.get(bits)
    if m is None:
        m = _machines[bits] = _Machine(bits)
    return m


def run_unicorn(code: bytes, bits: int = 32, regs: dict[str, int] | None = None, eflags: int = 0x2,
                mem: dict[int, bytes] | None = None, count: int | None = None) -> UcResult:
    """Run ``code`` at CODE_ADDR in 16- or 32-bit mode and return the final state."""
    m = machine(bits)
    uc = m.uc
    m.map(CODE_ADDR, len(code) + 16)
    uc.mem_write(CODE_ADDR, bytes(code))
    for addr, data in (mem or {}).items():
        m.map(addr, len(data))
        uc.mem_write(addr, bytes(data))
    full = dict.fromkeys(REG_IDS, 0)
    for name, value in (regs or {}).items():
        name = name.lower()
        if name in SUBREGS:
            base, shift, width = SUBREGS[name]
            mask = ((1 << width) - 1) << shift
            full[base] = (full[base] & ~mask) | ((value << shift) & mask)
        elif name in REG_IDS:
            full[name] = value & 0xFFFFFFFF
        elif name not in SEG_IDS:
            raise KeyError(f"unknown register {name!r}")
    for name, value in full.items():
        uc.reg_write(REG_IDS[name], value)
    for name, rid in SEG_IDS.items():
        if bits == 16:
            uc.reg_write(rid, (regs or {}).get(name, 0))
    uc.reg_write(X.UC_X86_REG_EFLAGS, (eflags & 0xFFFFFFFF) | 2)
    m.exception = None
    n = count if count is not None else 1000
    try:
        uc.emu_start(CODE_ADDR, CODE_ADDR + len(code), count=n)
    except unicorn.UcError as e:  # e.g. UC_ERR_INSN_INVALID
        if m.exception is None:
            m.exception = {unicorn.UC_ERR_INSN_INVALID: 6}.get(e.errno, -1)
    out = {name: uc.reg_read(rid) for name, rid in REG_IDS.items()}
    out["eip"] = uc.reg_read(X.UC_X86_REG_EIP)
    if m.exception is not None:
        # unicorn does not deliver an exception caught by the hook, so QEMU's double-fault
        # tracking would turn the next one into #DF: use a fresh instance from now on.
        _machines.pop(bits, None)
    return UcResult(out, uc.reg_read(X.UC_X86_REG_EFLAGS), m.read, m.exception)
