"""The physical memory map as a guest sees it, through the compiled engine (CpuCore).

A20 wrap on and off, MMIO dispatch through EXIT_MMIO_READ/EXIT_MMIO_WRITE (serviced by a small
loop that does what emu/mainloop.py does), ROM write-ignore (C0000-FFFFF), open bus (all-ones),
page-crossing accesses (exact bytes, and no partial write when the second page faults), and an
unaligned access that straddles RAM and MMIO.
"""

from __future__ import annotations

import struct

import pytest

from emu.cpu import state as S
from emu.cpu.core import CpuCore
from emu.devices.bus import MmioRegion
from tests.cpu.guestasm import assemble, needs_nasm

pytestmark = needs_nasm

CODE = 0x1000
RAM = 16 << 20
DEV = RAM  # the test device sits right after RAM
PF = 14


class Device:
    """A 4 KiB MMIO register file that logs every access."""

    def __init__(self, base: int = DEV, size: int = 0x1000):
        self.regs = bytearray(size)
        self.log: list[tuple] = []
        self.region = MmioRegion(base, size, self.read, self.write, self)

    def read(self, off: int, size: int) -> int:
        self.log.append(("r", off, size))
        return int.from_bytes(self.regs[off: off + size], "little")

    def write(self, off: int, size: int, value: int) -> None:
        self.log.append(("w", off, size, value))
        self.regs[off: off + size] = value.to_bytes(size, "little")


def serve(core: CpuCore, budget: int = 100_000) -> int:
    """Run, servicing MMIO exits as the machine's main loop does; returns the final exit reason."""
    st = core.st
    for _ in range(10_000):
        reason = core.run(budget)
        if reason == S.EXIT_MMIO_READ:
            st[S.MMIO_VALUE] = core.phys.exit_read(st)
            st[S.MMIO_PENDING] = 1
        elif reason == S.EXIT_MMIO_WRITE:
            core.phys.exit_write(st)
        else:
            return reason
    raise AssertionError("MMIO exits never end (livelock)")


PF_HANDLER = CODE + 0x100
PF_RECORD = """
    pop ebx                               ; the error code
    mov [0x600], ebx
    mov ebx, cr2
    mov [0x604], ebx
    hlt
"""


def flat(src: str, paging: bool = False, ram: int = RAM, pf: str = "") -> CpuCore:
    """32-bit flat protected mode; with `pf`, a GDT and an IDT whose #PF gate runs `pf`
    (placed at PF_HANDLER)."""
    core = CpuCore(ram)
    core.setup_flat32(paging=paging)
    core.st[S.ESP] = 0x9000
    text = src + "\nhlt\n"
    if pf:
        text += f"times {PF_HANDLER - CODE:#x} - ($ - $$) nop\n" + pf
        _pf_idt(core)
    core.write_phys(CODE, assemble(text, bits=32, org=CODE))
    core.st[S.EIP] = CODE
    return core


def real(src: str) -> CpuCore:
    core = CpuCore(RAM)
    core.set_seg_real(S.CS, 0)
    core.set_seg_real(S.SS, 0)
    core.st[S.ESP] = 0x9000
    core.write_phys(CODE, assemble(src + "\nhlt\n", bits=16, org=CODE))
    core.st[S.EIP] = CODE
    return core


def u32(core: CpuCore, addr: int) -> int:
    return struct.unpack("<I", core.read_phys(addr, 4))[0]


def reg(core: CpuCore, r: int) -> int:
    return int(core.st[r]) & 0xFFFF_FFFF


# ------------------------------------------------------------------------------------ A20
A20_PROG = """
    mov ax, 0xFFFF
    mov ds, ax
    mov al, [0x10]
    mov byte [0x11], 0x5A
"""


@pytest.mark.parametrize("a20", [False, True])
def test_a20_wrap(a20):
    core = real(A20_PROG)
    core.write_phys(0x0, b"\x11\x00")
    core.write_phys(0x100000, b"\x22\x00")
    core.set_a20(a20)
    assert core.run(100) == S.EXIT_HLT
    assert reg(core, S.EAX) & 0xFF == (0x22 if a20 else 0x11)
    # the write goes to the same place the read came from
    assert core.read_phys(0x1, 1) == (b"\x00" if a20 else b"\x5A")
    assert core.read_phys(0x100001, 1) == (b"\x5A" if a20 else b"\x00")


def test_a20_switch_between_runs_flushes_translations():
    """The TLB holds FFFF:0010 -> 0 with A20 off; turning A20 on must not keep using it."""
    core = real("mov ax, 0xFFFF\nmov ds, ax\nmov al, [0x10]\nmov bl, [0x10]")
    core.write_phys(0x0, b"\x11")
    core.write_phys(0x100000, b"\x22")
    core.set_a20(False)
    assert core.run(3) == S.EXIT_BUDGET
    assert reg(core, S.EAX) & 0xFF == 0x11
    core.set_a20(True)
    assert core.run(100) == S.EXIT_HLT
    assert reg(core, S.EBX) & 0xFF == 0x22


# ------------------------------------------------------------------------------------ MMIO
def test_mmio_read_and_write_reach_the_device():
    dev = Device()
    dev.regs[0x10:0x14] = (0xCAFEBABE).to_bytes(4, "little")
    core = flat(f"""
        mov eax, [{DEV + 0x10:#x}]
        mov dword [{DEV + 0x20:#x}], 0x12345678
        mov word [{DEV + 0x30:#x}], 0xBEEF
        mov byte [{DEV + 0x40:#x}], 0x7F
        movzx ebx, word [{DEV + 0x12:#x}]
    """)
    core.phys.add_mmio(dev.region)
    assert serve(core) == S.EXIT_HLT
    assert reg(core, S.EAX) == 0xCAFEBABE
    assert reg(core, S.EBX) == 0xCAFE
    assert dev.log == [("r", 0x10, 4), ("w", 0x20, 4, 0x12345678), ("w", 0x30, 2, 0xBEEF),
                       ("w", 0x40, 1, 0x7F), ("r", 0x12, 2)]
    assert core.stats_dict()["exit_mmio"] >= 5


def test_mmio_read_modify_write():
    dev = Device()
    dev.regs[0:4] = (41).to_bytes(4, "little")
    core = flat(f"add dword [{DEV:#x}], 1\nmov eax, [{DEV:#x}]")
    core.phys.add_mmio(dev.region)
    assert serve(core) == S.EXIT_HLT
    assert reg(core, S.EAX) == 42
    assert dev.log[0] == ("r", 0, 4) and ("w", 0, 4, 42) in dev.log


def test_mmio_not_cached_in_tlb():
    """Every access reaches the device, also the second one to the same page in a loop."""
    dev = Device()
    core = flat(f"mov ecx, 5\n.l: mov eax, [{DEV:#x}]\nloop .l")
    core.phys.add_mmio(dev.region)
    assert serve(core) == S.EXIT_HLT
    assert dev.log == [("r", 0, 4)] * 5


# ------------------------------------------------------------------------------------ ROM
def test_rom_ignores_writes():
    core = flat("""
        mov dword [0xC0000], 0x11111111
        mov byte [0xF0010], 0x22
        mov eax, [0xC0000]
        mov ebx, [0xF0010]
        mov dword [0xFFFFC], 0x33333333
    """)
    core.phys.load_rom(0xC0000, b"\x55\xAA\x01\x02")
    core.phys.load_rom(0xF0010, b"\xEA\x5B\xE0\x00")
    core.phys.load_rom(0xFFFFC, b"\x01\x02\x03\x04")
    assert core.run(100) == S.EXIT_HLT
    assert reg(core, S.EAX) == 0x0201AA55
    assert reg(core, S.EBX) == 0x00E05BEA
    assert core.read_phys(0xC0000, 4) == b"\x55\xAA\x01\x02"
    assert core.read_phys(0xF0010, 4) == b"\xEA\x5B\xE0\x00"
    assert core.read_phys(0xFFFFC, 4) == b"\x01\x02\x03\x04"


def test_rom_write_straddling_ram_is_half_kept():
    """A dword at BFFFE: the RAM half (VGA window) is written, the ROM half is not."""
    core = flat("mov dword [0xBFFFE], 0x44332211")
    core.phys.load_rom(0xC0000, b"\xAA\xBB")
    assert core.run(100) == S.EXIT_HLT
    assert core.read_phys(0xBFFFE, 4) == b"\x11\x22\xAA\xBB"


# ------------------------------------------------------------------------------------ open bus
def test_open_bus_reads_all_ones_without_paging():
    core = flat("mov eax, [0x40000000]\nmov bx, [0x40000010]\nmov byte [0x40000000], 0")
    assert core.run(100) == S.EXIT_HLT
    assert reg(core, S.EAX) == 0xFFFFFFFF
    assert reg(core, S.EBX) & 0xFFFF == 0xFFFF


def test_open_bus_through_paging():
    """A PTE pointing above RAM: reads give all-ones, writes vanish, nothing faults."""
    # setup_flat32(paging=True) builds the identity map at 0x80000 (PD) / 0x81000.. (PTs)
    core = flat("""
        mov dword [0x81000 + 0x200*4], 0x80000003   ; linear 200000h -> phys 80000000h (no RAM)
        invlpg [0x200000]
        mov dword [0x200000], 0x12345678
        mov eax, [0x200000]
        mov ecx, [0x200ffc]
    """, paging=True)
    assert core.run(100) == S.EXIT_HLT
    assert reg(core, S.EAX) == 0xFFFFFFFF
    assert reg(core, S.ECX) == 0xFFFFFFFF
    assert core.st[S.CR2] == 0


# ------------------------------------------------------------------------------------ page crossing
@pytest.mark.parametrize("size,kw,split", [(2, "word", 1), (4, "dword", 1), (4, "dword", 2), (4, "dword", 3)])
def test_cross_page_exact_bytes(size, kw, split):
    addr = 0x5000 - split
    reg_name = {2: "ax", 4: "eax"}[size]
    core = flat(f"mov {reg_name}, [{addr:#x}]\nmov {kw} [{0x7000 - split:#x}], 0x{'44332211'[-2 * size:]}")
    core.write_phys(addr - 4, bytes(range(0xA0, 0xAC)))
    core.write_phys(0x7000 - split - 4, b"\xEE" * 12)
    assert core.run(100) == S.EXIT_HLT
    want = int.from_bytes(bytes(range(0xA4, 0xA4 + size)), "little")
    assert reg(core, S.EAX) & ((1 << 8 * size) - 1) == want
    out = core.read_phys(0x7000 - split - 4, 12)
    assert out == b"\xEE" * 4 + bytes([0x11, 0x22, 0x33, 0x44][:size]) + b"\xEE" * (8 - size)


def test_cross_page_second_page_faults_no_partial_write():
    """A dword store at 4FFEh with 5000h not present: #PF, CR2 = 5000h, no byte written."""
    core = flat("""
        mov dword [0x81000 + 5*4], 0          ; page 5000h not present
        invlpg [0x5000]
        mov dword [0x4FFE], 0x44332211
    """, paging=True, pf=PF_RECORD)
    core.write_phys(0x4FF8, b"\xEE" * 8)
    assert core.run(1000) == S.EXIT_HLT
    assert u32(core, 0x604) == 0x5000
    assert u32(core, 0x600) == 0x2  # not present, write, supervisor
    assert core.read_phys(0x4FF8, 8) == b"\xEE" * 8


def test_cross_page_read_second_page_faults():
    core = flat("""
        mov dword [0x81000 + 5*4], 0
        invlpg [0x5000]
        mov eax, 0x12345678
        mov eax, [0x4FFD]
    """, paging=True, pf=PF_RECORD)
    assert core.run(1000) == S.EXIT_HLT
    assert u32(core, 0x604) == 0x5000
    assert u32(core, 0x600) == 0x0
    assert reg(core, S.EAX) == 0x12345678  # the faulting load left EAX alone


def test_cross_page_first_page_faults_cr2_is_the_address():
    core = flat("""
        mov dword [0x81000 + 4*4], 0
        invlpg [0x4000]
        mov dword [0x4FFE], 0x44332211
    """, paging=True, pf=PF_RECORD)
    core.write_phys(0x5000, b"\xEE" * 4)
    assert core.run(1000) == S.EXIT_HLT
    assert u32(core, 0x604) == 0x4FFE
    assert core.read_phys(0x5000, 4) == b"\xEE" * 4


def _pf_idt(core: CpuCore) -> None:
    """A GDT with flat code 08h, and an IDT whose #PF gate points at PF_HANDLER."""
    gdt = 0x700
    core.write_phys(gdt, bytes(8) + (0x00CF9B000000FFFF).to_bytes(8, "little")
                    + (0x00CF93000000FFFF).to_bytes(8, "little"))
    core.st[S.GDTR_BASE] = gdt
    core.st[S.GDTR_LIMIT] = 23
    pf = PF_HANDLER
    idt = 0x800
    gate = (pf & 0xFFFF) | (0x08 << 16) | ((0x8E00 | ((pf >> 16) << 16)) << 32)
    core.write_phys(idt + 8 * PF, gate.to_bytes(8, "little"))
    core.st[S.IDTR_BASE] = idt
    core.st[S.IDTR_LIMIT] = 0xFF


# ------------------------------------------------------------------------------------ RAM | MMIO
def test_unaligned_read_straddling_ram_and_mmio():
    dev = Device()
    dev.regs[0:2] = b"\x33\x44"
    core = flat(f"mov eax, [{DEV - 2:#x}]")
    core.write_phys(DEV - 2, b"\x11\x22")
    core.phys.add_mmio(dev.region)
    assert serve(core) == S.EXIT_HLT
    assert reg(core, S.EAX) == 0x44332211
    assert dev.log == [("r", 0, 2)]


def test_unaligned_write_straddling_ram_and_mmio():
    dev = Device()
    core = flat(f"mov dword [{DEV - 1:#x}], 0x44332211\nmov eax, 1")
    core.write_phys(DEV - 4, b"\xEE" * 4)
    core.phys.add_mmio(dev.region)
    assert serve(core) == S.EXIT_HLT
    assert core.read_phys(DEV - 4, 4) == b"\xEE\xEE\xEE\x11"
    assert dev.log == [("w", 0, 3, 0x443322)]
    assert reg(core, S.EAX) == 1


def test_unaligned_read_straddling_mmio_and_ram():
    """The other way round: the low bytes come from the device, the high ones from RAM."""
    dev = Device(base=0x200000)
    core = flat("mov eax, [0x200FFE]")
    core.phys.add_mmio(dev.region)
    dev.regs[0xFFE:0x1000] = b"\x11\x22"
    core.write_phys(0x201000, b"\x33\x44")
    assert serve(core) == S.EXIT_HLT
    assert reg(core, S.EAX) == 0x44332211
    assert dev.log == [("r", 0xFFE, 2)]


def test_unaligned_read_straddling_two_mmio_pages():
    """Both halves in device memory: two device reads, then the instruction completes."""
    dev = Device(base=0x200000, size=0x2000)
    dev.regs[0xFFE:0x1002] = b"\x11\x22\x33\x44"
    core = flat("mov eax, [0x200FFE]")
    core.phys.add_mmio(dev.region)
    assert serve(core) == S.EXIT_HLT
    assert reg(core, S.EAX) == 0x44332211
    assert dev.log == [("r", 0xFFE, 2), ("r", 0x1000, 2)]  # one exit, each part read once


def test_unaligned_write_straddling_two_mmio_pages():
    """One exit carries both parts; each device page gets its own bytes."""
    dev = Device(base=0x200000, size=0x2000)
    core = flat("mov dword [0x200FFF], 0x44332211")
    core.phys.add_mmio(dev.region)
    assert serve(core) == S.EXIT_HLT
    assert bytes(dev.regs[0xFFF:0x1003]) == b"\x11\x22\x33\x44"
    assert dev.log == [("w", 0xFFF, 1, 0x11), ("w", 0x1000, 3, 0x443322)]
