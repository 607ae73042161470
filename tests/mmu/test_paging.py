"""Paging rules (SDM Vol 3, chapter 4) as small guest programs run through the compiled engine.

Every program starts in flat 32-bit protected mode (CpuCore.setup_flat32, paging off) at 1000h.
The common prologue (nasm) loads a GDT (ring 0 and ring 3 flat segments, a TSS), an IDT, builds a
page directory at PD with the first 4 MiB identity-mapped through PT0 (present, writable, user),
points PDE 1 (linear 400000h-7FFFFFh) at the empty table PT1, and turns paging on. Scenarios then
map test pages by writing PTEs and touch them.

The #PF handler logs (CR2, error code) pairs at LOG and resumes at the address the `TRY` macro
stored in [RESUME], so one program can provoke many faults. `USER` runs a block in ring 3 (IRETD
to CPL 3, back with INT 30h). The test reads the log and the paging entries after the final HLT.
"""

from __future__ import annotations

import struct

import pytest

from emu.cpu import state as S
from emu.cpu.core import CpuCore
from tests.cpu.guestasm import assemble, needs_nasm

pytestmark = needs_nasm

CODE = 0x1000
RES = 0x600
LOG = RES + 0x20  # (cr2, error) pairs
OUT = RES + 0x100  # scenario values
PD, PT0, PT1, PT2, PT3 = 0x20000, 0x21000, 0x22000, 0x23000, 0x28000
P, RW, US, A, D, PS, G = 1, 2, 4, 0x20, 0x40, 0x80, 0x100

PROLOGUE = rf"""
bits 32
org {CODE:#x}
RES equ {RES:#x}
LOG equ {LOG:#x}
OUTV equ {OUT:#x}
RESUME equ RES + 0x10
BACK equ RES + 0x14
PD equ {PD:#x}
PT0 equ {PT0:#x}
PT1 equ {PT1:#x}
PT2 equ {PT2:#x}
PT3 equ {PT3:#x}
TSS equ 0x900
%macro GATE 3
    dw ((%1 - $$ + {CODE:#x}) & 0xFFFF)
    dw %2
    db 0, %3
    dw ((%1 - $$ + {CODE:#x}) >> 16)
%endmacro
%macro TRY 1+
    mov dword [RESUME], %%after
    %1
%%after:
%endmacro
%macro USER 1
    mov dword [BACK], %1_back
    mov [TSS + 4], esp
    mov ax, 0x23
    mov ds, ax
    mov es, ax
    push dword 0x23
    push dword 0x80000
    push dword 0x2
    push dword 0x1B
    push dword %1_user
    iretd
%1_user:
%endmacro
%macro ENDUSER 1
    int 0x30
%1_back:
%endmacro
start:
    lgdt [gdtr]
    lidt [idtr]
    mov dword [TSS + 8], 0x10
    mov ax, 0x28
    ltr ax
    mov edi, PT0
    mov eax, 7
    mov ecx, 1024
.fill:
    stosd
    add eax, 0x1000
    loop .fill
    mov dword [PD], PT0 | 7
    mov dword [PD + 4], PT1 | 7
    mov eax, PD
    mov cr3, eax
    mov eax, cr0
    or eax, 0x80000000
    mov cr0, eax
"""

EPILOGUE = r"""
    hlt
pf_handler:
    push eax
    push ebx
    mov ebx, [RES]
    mov eax, cr2
    mov [LOG + ebx*8], eax
    mov eax, [esp + 8]
    mov [LOG + 4 + ebx*8], eax
    inc dword [RES]
    mov eax, [RESUME]
    mov [esp + 12], eax
    pop ebx
    pop eax
    add esp, 4
    iretd
gp_handler:
    mov dword [RES + 4], 13
    hlt
back_handler:                 ; INT 30h from ring 3: drop the frame, continue in ring 0 at [BACK]
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov esp, [TSS + 4]
    jmp [BACK]

align 8
gdt:
    dq 0
    dq 0x00CF9B000000FFFF       ; 08 code ring 0
    dq 0x00CF93000000FFFF       ; 10 data ring 0
    dq 0x00CFFB000000FFFF       ; 18 code ring 3
    dq 0x00CFF3000000FFFF       ; 20 data ring 3
    dw 0x67, TSS, 0x8900, 0     ; 28 TSS
gdt_end:
gdtr:
    dw gdt_end - gdt - 1
    dd gdt
align 8
idt:
%assign i 0
%rep 0x31
  %if i == 14
    GATE pf_handler, 0x08, 0x8E
  %elif i == 13
    GATE gp_handler, 0x08, 0x8E
  %elif i == 0x30
    GATE back_handler, 0x08, 0xEE
  %else
    dq 0
  %endif
  %assign i i+1
%endrep
idt_end:
idtr:
    dw idt_end - idt - 1
    dd idt
"""


def run(body: str, setup=None, budget: int = 200_000) -> CpuCore:
    core = CpuCore(16 << 20)
    core.setup_flat32()
    core.st[S.ESP] = 0x90000
    core.write_phys(CODE, assemble(PROLOGUE + body + EPILOGUE))
    if setup:
        setup(core)
    core.st[S.EIP] = CODE
    reason = core.run(budget)
    assert reason == S.EXIT_HLT, S.EXIT_REASON_NAMES[reason]
    assert u32(core, RES + 4) == 0, "unexpected #GP"
    return core


def u32(core: CpuCore, addr: int) -> int:
    return struct.unpack("<I", core.read_phys(addr, 4))[0]


def faults(core: CpuCore) -> list[tuple[int, int]]:
    n = u32(core, RES)
    return [(u32(core, LOG + 8 * i), u32(core, LOG + 8 * i + 4)) for i in range(n)]


def out(core: CpuCore, i: int) -> int:
    return u32(core, OUT + 4 * i)


def pte1(core: CpuCore, linear: int) -> int:
    return u32(core, PT1 + ((linear - 0x400000) >> 12) * 4)


def fill(core: CpuCore, phys: int, value: int) -> None:
    core.write_phys(phys, struct.pack("<I", value))


# ------------------------------------------------------------------------------------ A and D
def test_accessed_and_dirty_bits():
    core = run(r"""
    mov dword [PT1 + 0*4], 0x300000 | 3     ; rw
    mov dword [PT1 + 1*4], 0x301000 | 3     ; rw
    mov dword [PT1 + 2*4], 0x302000 | 1     ; read-only
    mov dword [PT1 + 3*4], 0x303000 | 3     ; never touched
    mov eax, [0x400000]                     ; read: A
    mov eax, [PT1 + 0*4]
    mov [OUTV + 0], eax                      ; PTE 0 after the read
    mov dword [0x400004], 5                 ; then a write to the same page: D
    mov dword [0x401000], 1                 ; a write first: A and D
    mov eax, cr0
    or eax, 0x10000                         ; WP
    mov cr0, eax
    TRY mov dword [0x402000], 1             ; faults: neither A nor D
    mov eax, [PT1 + 2*4]
    mov [OUTV + 4], eax
    mov eax, [0x402000]                     ; a read: A only
""")
    assert faults(core) == [(0x402000, P | RW)]
    assert out(core, 0) & (A | D) == A
    assert pte1(core, 0x400000) & (A | D) == A | D
    assert pte1(core, 0x401000) & (A | D) == A | D
    assert out(core, 1) & (A | D) == 0
    assert pte1(core, 0x402000) & (A | D) == A
    assert pte1(core, 0x403000) & (A | D) == 0
    assert u32(core, PD + 4) & A  # the PDE used by every walk
    assert u32(core, PD + 4) & D == 0  # D exists only in the last level
    assert u32(core, 0x300004) == 5 and u32(core, 0x301000) == 1


def test_not_present_fault_sets_no_accessed_bit():
    core = run(r"""
    mov dword [PD + 2*4], PT2 | 7           ; PDE present, PTE not
    TRY mov eax, [0x800000]
    mov dword [PD + 3*4], PT3 | 6           ; PDE not present
    TRY mov eax, [0xC00000]
""")
    assert faults(core) == [(0x800000, 0), (0xC00000, 0)]
    assert u32(core, PD + 8) & A == 0
    assert u32(core, PD + 12) & A == 0


# ------------------------------------------------------------------------------------ error codes
def test_error_codes_supervisor():
    core = run(r"""
    mov dword [PT1 + 2*4], 0x302000 | 1     ; read-only
    mov eax, cr0
    or eax, 0x10000
    mov cr0, eax
    TRY mov eax, [0x404000]                 ; read, not present
    TRY mov dword [0x404010], 0             ; write, not present
    TRY mov dword [0x402008], 0             ; write, read-only (WP=1)
    TRY add [0x402ff0], eax                 ; read-modify-write of a read-only page
    TRY jmp 0x405000                        ; fetch, not present: no I/D bit without NX
    TRY mov eax, [0x402004]                 ; allowed
""")
    assert faults(core) == [(0x404000, 0), (0x404010, RW), (0x402008, P | RW), (0x402FF0, P | RW),
                            (0x405000, 0)]


def test_user_supervisor_rules():
    core = run(r"""
    mov dword [PT1 + 0*4], 0x300000 | 3     ; supervisor rw
    mov dword [PT1 + 1*4], 0x301000 | 7     ; user rw
    mov dword [PT1 + 2*4], 0x302000 | 5     ; user read-only
    mov dword [PD + 2*4], PT2 | 3           ; a supervisor PDE...
    mov dword [PT2], 0x303000 | 7           ; ...over a user PTE
    mov dword [PD + 3*4], PT3 | 5           ; a read-only user PDE...
    mov dword [PT3], 0x304000 | 7           ; ...over a writable user PTE
    ; supervisor: user pages are fine (WP=0: read-only is writable too)
    mov dword [0x401000], 0x11
    mov dword [0x402000], 0x22
    mov dword [0xC00000], 0x33
    USER u1
    TRY mov eax, [0x400000]                 ; user read of a supervisor page
    TRY mov dword [0x400000], 1             ; user write of a supervisor page
    TRY mov dword [0x402000], 1             ; user write of a read-only user page
    TRY mov eax, [0x404000]                 ; user read, not present
    TRY mov dword [0x404000], 1             ; user write, not present
    TRY mov eax, [0x800000]                 ; supervisor PDE, user PTE
    TRY mov dword [0xC00000], 1             ; read-only PDE, writable PTE
    TRY jmp 0x400010                        ; user fetch from a supervisor page
    mov eax, [0x401000]                     ; allowed: user page
    mov [OUTV + 0], eax
    mov eax, [0x402000]
    mov [OUTV + 4], eax
    mov eax, [0xC00000]
    mov [OUTV + 8], eax
    mov dword [0x401004], 0x44              ; allowed: user write of a user rw page
    ENDUSER u1
""")
    U = US
    assert faults(core) == [
        (0x400000, U | P), (0x400000, U | RW | P), (0x402000, U | RW | P), (0x404000, U),
        (0x404000, U | RW), (0x800000, U | P), (0xC00000, U | RW | P), (0x400010, U | P)]
    assert [out(core, i) for i in range(3)] == [0x11, 0x22, 0x33]
    assert u32(core, 0x301004) == 0x44
    assert u32(core, 0x300000) == 0  # no user write got through


@pytest.mark.parametrize("wp", [0, 1])
def test_cr0_wp_supervisor_write_to_read_only(wp):
    core = run(rf"""
    mov dword [PT1 + 2*4], 0x302000 | 1     ; supervisor read-only
    mov dword [PT1 + 3*4], 0x303000 | 5     ; user read-only
    mov eax, cr0
    {'or eax, 0x10000' if wp else 'and eax, ~0x10000'}
    mov cr0, eax
    TRY mov dword [0x402000], 0x1234
    TRY mov dword [0x403000], 0x5678
    USER u2
    TRY mov dword [0x403004], 1             ; a user write faults whatever WP says
    ENDUSER u2
""")
    user_fault = (0x403004, US | RW | P)
    if wp:
        assert faults(core) == [(0x402000, P | RW), (0x403000, P | RW), user_fault]
        assert u32(core, 0x302000) == 0 and u32(core, 0x303000) == 0
        assert pte1(core, 0x402000) & D == 0
    else:
        assert faults(core) == [user_fault]
        assert u32(core, 0x302000) == 0x1234 and u32(core, 0x303000) == 0x5678
        assert pte1(core, 0x402000) & D


def test_wp_toggle_drops_cached_write_permission():
    """A supervisor write with WP=0 may leave a writable TLB entry; setting WP must not use it."""
    core = run(r"""
    mov dword [PT1 + 2*4], 0x302000 | 1
    mov dword [0x402000], 1                 ; WP=0: allowed
    mov eax, cr0
    or eax, 0x10000
    mov cr0, eax
    TRY mov dword [0x402000], 2             ; WP=1: faults
""")
    assert faults(core) == [(0x402000, P | RW)]
    assert u32(core, 0x302000) == 1


# ------------------------------------------------------------------------------------ PSE
def test_pse_4mib_pages():
    def setup(core):
        fill(core, 0x401234, 0xA5A5A5A5)
        fill(core, 0x305000, 0x5EE5)

    core = run(r"""
    mov eax, cr4
    or eax, 0x10                            ; PSE
    mov cr4, eax
    mov dword [PD + 2*4], 0x400000 | 0x83   ; 800000h: a 4 MiB page at 400000h
    mov eax, [0x801234]
    mov [OUTV + 0], eax
    mov eax, [PD + 2*4]
    mov [OUTV + 4], eax                      ; A after the read
    mov dword [0x9FFFFC], 0x600DD00D        ; phys 5FFFFCh, D on the PDE
    ; with CR4.PSE=0 the PS bit is ignored: the PDE points at a page table
    mov dword [PT3 + 0], 0x305000 | 3
    mov dword [PD + 3*4], PT3 | 0x83
    mov eax, cr4
    and eax, ~0x10
    mov cr4, eax
    mov eax, [0xC00000]
    mov [OUTV + 8], eax
""", setup)
    assert faults(core) == []
    assert out(core, 0) == 0xA5A5A5A5
    assert out(core, 1) & (A | D) == A
    assert u32(core, 0x5FFFFC) == 0x600DD00D
    assert u32(core, PD + 8) & (A | D) == A | D
    assert out(core, 2) == 0x5EE5


def test_pse_4mib_page_rights():
    core = run(r"""
    mov eax, cr4
    or eax, 0x10
    mov cr4, eax
    mov dword [PD + 2*4], 0x400000 | 0x81   ; supervisor read-only 4 MiB page
    mov eax, cr0
    or eax, 0x10000
    mov cr0, eax
    TRY mov dword [0x800000], 1
    USER u3
    TRY mov eax, [0xBFF000]
    ENDUSER u3
""")
    assert faults(core) == [(0x800000, P | RW), (0xBFF000, US | P)]


# ------------------------------------------------------------------------------------ PGE / INVLPG
def _tlb_values(core):
    for phys, v in ((0x306000, 0x6666), (0x307000, 0x7777), (0x308000, 0x8888), (0x309000, 0x9999)):
        fill(core, phys, v)


@pytest.mark.parametrize("pge", [0, 1])
def test_global_entries_survive_cr3_reload(pge):
    core = run(rf"""
    mov eax, cr4
    {'or eax, 0x80' if pge else 'and eax, ~0x80'}
    mov cr4, eax
    mov dword [PT1 + 6*4], 0x306000 | 0x103 ; global
    mov dword [PT1 + 7*4], 0x307000 | 0x003 ; not global
    mov eax, [0x406000]                     ; both translations are now cached
    mov eax, [0x407000]
    mov dword [PT1 + 6*4], 0x308000 | 0x103 ; new PTEs in memory, no INVLPG
    mov dword [PT1 + 7*4], 0x309000 | 0x003
    mov eax, cr3
    mov cr3, eax
    mov eax, [0x406000]
    mov [OUTV + 0], eax
    mov eax, [0x407000]
    mov [OUTV + 4], eax
    ; clearing CR4.PGE flushes global entries too
    mov eax, cr4
    and eax, ~0x80
    mov cr4, eax
    mov eax, [0x406000]
    mov [OUTV + 8], eax
""", _tlb_values)
    assert out(core, 0) == (0x6666 if pge else 0x8888)
    assert out(core, 1) == 0x9999
    assert out(core, 2) == 0x8888


def test_invlpg_drops_one_entry():
    core = run(r"""
    mov eax, cr4
    or eax, 0x80
    mov cr4, eax
    mov dword [PT1 + 6*4], 0x306000 | 3
    mov dword [PT1 + 7*4], 0x307000 | 3
    mov dword [PT1 + 8*4], 0x306000 | 0x103 ; a global one
    mov eax, [0x406000]
    mov eax, [0x407000]
    mov eax, [0x408000]
    mov dword [PT1 + 6*4], 0x308000 | 3
    mov dword [PT1 + 7*4], 0x309000 | 3
    mov dword [PT1 + 8*4], 0x309000 | 0x103
    invlpg [0x406123]
    invlpg [0x408000]
    mov eax, [0x406000]
    mov [OUTV + 0], eax
    mov eax, [0x407000]
    mov [OUTV + 4], eax
    mov eax, [0x408000]
    mov [OUTV + 8], eax
    ; INVLPG of a page whose PTE became not present: the next access faults
    mov dword [PT1 + 7*4], 0
    invlpg [0x407000]
    TRY mov eax, [0x407000]
""", _tlb_values)
    assert out(core, 0) == 0x8888  # re-walked
    assert out(core, 1) == 0x7777  # still the cached translation
    assert out(core, 2) == 0x9999  # global entries go too
    assert faults(core) == [(0x407000, 0)]


def test_invlpg_drops_write_and_user_entries():
    """INVLPG must drop the entry whatever kind (read/write/fetch) and privilege filled it."""
    core = run(r"""
    mov dword [PT1 + 6*4], 0x306000 | 7
    USER u4
    mov dword [0x406000], 0x1111            ; a user write entry
    ENDUSER u4
    mov dword [PT1 + 6*4], 0x306000 | 5     ; now read-only
    invlpg [0x406000]
    USER u5
    TRY mov dword [0x406000], 0x2222
    ENDUSER u5
""")
    assert faults(core) == [(0x406000, US | RW | P)]
    assert u32(core, 0x306000) == 0x1111


# ------------------------------------------------------------------------------------ PAE
PAE_SETUP = r"""
    mov eax, cr0                            ; paging off to switch formats
    and eax, ~0x80000000
    mov cr0, eax
    PDPT equ 0x24000
    PDP equ 0x25000
    PTA equ 0x26000
    PTB equ 0x27000
    mov dword [PDPT + 0], PDP | 1
    mov dword [PDPT + 4], 0
    mov edi, PTA                            ; identity 0..2 MiB, 4 KiB pages
    mov eax, 7
    mov ecx, 512
.pae_fill:
    mov [edi], eax
    mov dword [edi + 4], 0
    add edi, 8
    add eax, 0x1000
    loop .pae_fill
    mov dword [PDP + 0*8], PTA | 7
    mov dword [PDP + 1*8], 0x400000 | 0x83  ; 200000h: a 2 MiB page at 400000h
    mov dword [PDP + 2*8], PTB | 7          ; 400000h: a 4 KiB table
    mov dword [PTB + 0*8], 0x30A000 | 3
    mov dword [PTB + 1*8], 0x30B000 | 3
    mov dword [PTB + 1*8 + 4], 0x80000000   ; XD
    mov eax, cr4
    or eax, 0x20                            ; PAE
    mov cr4, eax
    mov eax, PDPT
    mov cr3, eax
    mov eax, cr0
    or eax, 0x80000000
    mov cr0, eax
"""


def test_pae_walk_2mib_pages_and_xd():
    def setup(core):
        fill(core, 0x401234, 0xBEEF0001)
        fill(core, 0x30A010, 0xBEEF0002)

    core = run(PAE_SETUP + r"""
    mov eax, 0x80000000
    cpuid
    mov [OUTV + 0], eax
    mov eax, 0x80000001
    cpuid
    mov [OUTV + 4], edx
    mov eax, [0x201234]                     ; through the 2 MiB page
    mov [OUTV + 8], eax
    mov dword [0x3FFFF8], 0x600D            ; its last bytes: phys 5FFFF8h, D on the PDE
    mov eax, [0x400010]                     ; through the 4 KiB table
    mov [OUTV + 12], eax
    TRY mov eax, [0x401000]                 ; XD set without NX: a reserved bit
    TRY mov dword [0x401008], 1
    TRY mov eax, [0x40000000]               ; PDPTE 1 not present
    TRY mov eax, [0x600000]                 ; PDE 3 not present
""", setup)
    nx_exposed = out(core, 0) >= 0x80000001 and out(core, 1) & (1 << 20)
    assert out(core, 2) == 0xBEEF0001
    assert u32(core, 0x5FFFF8) == 0x600D
    assert u32(core, 0x25000 + 8) & (A | D) == A | D
    assert out(core, 3) == 0xBEEF0002
    assert u32(core, 0x27000) & (A | D) == A
    assert u32(core, 0x25000 + 16) & A
    if nx_exposed:
        pytest.skip("the CPU exposes NX: XD bits are not reserved; write the NX test")
    RSVD = 8
    assert faults(core) == [(0x401000, RSVD | P), (0x401008, RSVD | RW | P), (0x40000000, 0), (0x600000, 0)]
    assert u32(core, 0x27008) & A == 0  # a reserved-bit fault sets no A bit


def test_pae_user_and_write_rights():
    core = run(PAE_SETUP + r"""
    mov dword [PTB + 2*8], 0x30C000 | 5     ; user read-only
    mov dword [PTB + 3*8], 0x30D000 | 3     ; supervisor
    mov eax, cr0
    or eax, 0x10000
    mov cr0, eax
    TRY mov dword [0x402000], 1
    USER u6
    TRY mov dword [0x402000], 1
    TRY mov eax, [0x403000]
    mov eax, [0x402000]
    ENDUSER u6
""")
    assert faults(core) == [(0x402000, P | RW), (0x402000, US | RW | P), (0x403000, US | P)]


def test_pae_page_above_4gib_is_not_an_alias_of_low_memory():
    """A PTE pointing at 1_0030_A000h: there is no memory there (reads all-ones, writes vanish),
    not RAM at 30A000h."""
    def setup(core):
        fill(core, 0x30A000, 0x1234)

    core = run(PAE_SETUP + r"""
    mov dword [PTB + 4*8], 0x30A000 | 3
    mov dword [PTB + 4*8 + 4], 1            ; physical bit 32
    mov eax, [0x404000]
    mov [OUTV + 0], eax
    mov dword [0x404000], 0x5678
""", setup)
    assert faults(core) == []
    assert out(core, 0) == 0xFFFFFFFF
    assert u32(core, 0x30A000) == 0x1234
