"""Protected-mode scenarios as small guest programs (nasm, assembled at test time), run through
emu.cpu.core.CpuCore and checked against the SDM (Vol 2 JMP/CALL/RET/IRET/INT pseudo-code,
Vol 3 chapters 5-7 and 20).

Every program starts in real mode at 0000:7C00, loads the common GDT/IDT below, enters protected
mode and runs its scenario. Results go to RES (0x500...): exception handlers record the vector, the
error code and the frame there (through SS, which is always the flat ring-0 stack in a handler) and
halt. RES+0x40.. are free for scenario values.
"""

from __future__ import annotations

import shutil
import struct
import subprocess

import pytest

from emu.cpu import flags as F
from emu.cpu import state as S

core_mod = pytest.importorskip("emu.cpu.core", reason="emu.cpu.core (CpuCore) is not built yet")
NASM = shutil.which("nasm")
pytestmark = pytest.mark.skipif(NASM is None, reason="nasm is not installed")

RES = 0x500
TSS0, TSS1 = 0x1000, 0x1100
GP, NP, SS_, TS = 13, 11, 12, 10

PROLOGUE = r"""
bits 16
org 0x7C00
RES equ 0x500
TSS0 equ 0x1000
TSS1 equ 0x1100
%macro GATE 3-4 0
    dw ((%1 - $$ + 0x7C00) & 0xFFFF)
    dw %2
    db %4, %3
    dw ((%1 - $$ + 0x7C00) >> 16)
%endmacro
start:
    cli
    xor ax, ax
    mov ds, ax
    mov ss, ax
    mov sp, 0x7000
    lgdt [gdt_desc]
    lidt [idt_desc]
    mov eax, cr0
    or al, 1
    mov cr0, eax
    jmp 0x08:pm32
bits 32
pm32:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov fs, ax
    mov gs, ax
    mov ss, ax
    mov esp, 0x90000
    mov dword [TSS0 + 4], 0x80000  ; ESP0
    mov dword [TSS0 + 8], 0x10     ; SS0
    mov ax, 0x28
    ltr ax
"""

EPILOGUE = r"""
; ---- exception stubs: record vector, error code, EIP, CS, EFLAGS and halt
%macro EXC 2
exc%1:
%if %2 == 0
    push dword 0xFFFFFFFF
%endif
    push dword %1
    jmp exc_common
%endmacro
EXC 0, 0
EXC 6, 0
EXC 8, 1
EXC 10, 1
EXC 11, 1
EXC 12, 1
EXC 13, 1
EXC 14, 1
exc_common:
    pop eax
    mov [ss:RES + 0], eax
    pop eax
    mov [ss:RES + 4], eax
    pop eax
    mov [ss:RES + 8], eax
    pop eax
    mov [ss:RES + 12], eax
    pop eax
    mov [ss:RES + 16], eax
    mov [ss:RES + 20], esp
    mov ax, ss
    mov [ss:RES + 24], ax
    hlt
    jmp $

align 8
gdt:
    dq 0
    dq 0x00CF9B000000FFFF       ; 08: code32 DPL0 flat
    dq 0x00CF93000000FFFF       ; 10: data32 DPL0 flat
    dq 0x00CFFB000000FFFF       ; 18: code32 DPL3 flat
    dq 0x00CFF3000000FFFF       ; 20: data32 DPL3 flat
    dw 0x67, TSS0, 0x8900, 0    ; 28: TSS0 (available 32-bit)
    GATE gate_target, 0x08, 0xEC, 1 ; 30: 32-bit call gate DPL3 -> 08:gate_target, 1 parameter
    dw 0x67, TSS1, 0x8900, 0    ; 38: TSS1
    dw 0, 0x38, 0x8500, 0       ; 40: task gate DPL0 -> TSS1
    dq 0x00CF13000000FFFF       ; 48: data, not present
    dq 0x00CF13000000FFFF       ; 50: data, not present (stack test)
    dq 0x00CF9B000000FFFF       ; 58: code32 DPL0 (a second selector)
gdt_end:
gdt_desc:
    dw gdt_end - gdt - 1
    dd gdt

align 8
idt:
%assign i 0
%rep 0x82
  %if i == 0 || i == 6 || i == 8 || i == 10 || i == 11 || i == 12 || i == 13 || i == 14
    GATE exc %+ i, 0x08, 0x8E
  %elif i == 0x80
    GATE int80, 0x08, 0xEE      ; DPL3 interrupt gate
  %elif i == 0x81
    dw 0, 0x38, 0xE500, 0       ; DPL3 task gate -> TSS1
  %else
    dq 0
  %endif
  %assign i i+1
%endrep
idt_end:
idt_desc:
    dw idt_end - idt - 1
    dd idt
"""

DEFAULT_HANDLERS = r"""
gate_target:
    hlt
int80:
    hlt
"""


def assemble(body: str, tmp_path, handlers: str = DEFAULT_HANDLERS, tail: str = "") -> bytes:
    src = tmp_path / "prog.asm"
    out = tmp_path / "prog.bin"
    src.write_text(PROLOGUE + body + handlers + EPILOGUE + tail)
    res = subprocess.run([NASM, "-f", "bin", "-o", str(out), str(src)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return out.read_bytes()


def boot(image: bytes, max_insns: int = 20000):
    core = core_mod.CpuCore(ram_bytes=2 << 20)
    core.write_phys(0x7C00, image)
    core.set_seg_real(S.CS, 0)
    core.st[S.EIP] = 0x7C00
    reason = core.run(max_insns=max_insns)
    return core, reason


def u32(core, addr: int) -> int:
    return struct.unpack("<I", core.read_phys(addr, 4))[0]


def u16(core, addr: int) -> int:
    return struct.unpack("<H", core.read_phys(addr, 2))[0]


def exc(core) -> tuple[int, int]:
    return u32(core, RES), u32(core, RES + 4)


def desc_type(core, sel: int) -> int:
    """Type field of GDT descriptor `sel` (the GDT base from GDTR)."""
    return (u32(core, int(core.st[S.GDTR_BASE]) + (sel & ~7) + 4) >> 8) & 0xF


# ------------------------------------------------------------------------------ scenarios
def test_enter_protected_mode_and_far_jump(tmp_path):
    body = r"""
    mov dword [RES + 0x40], 0x600DF00D
    jmp 0x58:.second
.second:
    mov ax, cs
    mov [RES + 0x44], ax
    hlt
"""
    core, reason = boot(assemble(body, tmp_path))
    assert reason == S.EXIT_HLT, S.EXIT_REASON_NAMES[reason]
    assert u32(core, RES + 0x40) == 0x600DF00D
    assert u16(core, RES + 0x44) == 0x58
    st = core.st
    assert st[S.CR0] & 1 and st[S.CPL] == 0
    assert st[S.HFLAGS] & S.HF_PE and st[S.HFLAGS] & S.HF_CS32 and st[S.HFLAGS] & S.HF_SS32
    assert st[S.seg_slot(S.TR_SEG, S.SEG_SEL)] == 0x28 and desc_type(core, 0x28) == 0xB  # LTR: busy


RING3 = r"""
    push dword 0x23          ; SS3
    push dword 0x60000       ; ESP3
    push dword 0x1B          ; CS3
    push dword ring3
    retf                     ; RET to an outer privilege level
ring3:
    mov ax, 0x23
    mov ds, ax
    mov es, ax
"""


def test_call_gate_to_ring0_and_retf_to_ring3_then_int_from_ring3(tmp_path):
    body = RING3 + r"""
    mov ax, cs
    mov [RES + 0x40], ax
    push dword 0x1234ABCD
    call 0x30:0              ; through the call gate: ring 0, one parameter copied
back3:
    mov [RES + 0x54], esp
    mov ax, cs
    mov [RES + 0x58], ax
    mov ax, ss
    mov [RES + 0x5C], ax
    mov eax, 0x77
    int 0x80                 ; DPL3 interrupt gate: stack switch to SS0:ESP0
    jmp $
"""
    handlers = r"""
gate_target:
    mov ax, cs
    mov [ss:RES + 0x44], ax
    mov ax, ss
    mov [ss:RES + 0x46], ax
    mov [ss:RES + 0x48], esp
    mov eax, [esp + 8]       ; the copied parameter
    mov [ss:RES + 0x4C], eax
    mov eax, [esp + 12]      ; the caller's ESP
    mov [ss:RES + 0x50], eax
    mov eax, [esp + 16]      ; the caller's SS
    mov [ss:RES + 0x60], eax
    retf 4
int80:
    mov [ss:RES + 0x64], esp
    mov ecx, [esp]           ; EIP
    mov [ss:RES + 0x68], ecx
    mov ecx, [esp + 4]       ; CS
    mov [ss:RES + 0x6C], ecx
    mov ecx, [esp + 12]      ; ESP3
    mov [ss:RES + 0x70], ecx
    mov ecx, [esp + 16]      ; SS3
    mov [ss:RES + 0x74], ecx
    mov [ss:RES + 0x78], eax
    hlt
"""
    core, reason = boot(assemble(body, tmp_path, handlers))
    assert reason == S.EXIT_HLT, (S.EXIT_REASON_NAMES[reason], exc(core))
    assert u16(core, RES + 0x40) == 0x1B  # RETF to ring 3
    assert u16(core, RES + 0x44) == 0x08 and u16(core, RES + 0x46) == 0x10  # ring 0, SS0
    assert u32(core, RES + 0x48) == 0x80000 - 20  # SS, ESP, 1 parameter, CS, EIP
    assert u32(core, RES + 0x4C) == 0x1234ABCD
    assert u32(core, RES + 0x50) == 0x60000 - 4 and u32(core, RES + 0x60) == 0x23
    assert u32(core, RES + 0x54) == 0x60000  # RETF 4 released the parameter on the outer stack
    assert u16(core, RES + 0x58) == 0x1B and u16(core, RES + 0x5C) == 0x23
    assert u32(core, RES + 0x64) == 0x80000 - 20  # SS, ESP, EFLAGS, CS, EIP
    assert u32(core, RES + 0x6C) == 0x1B and u32(core, RES + 0x70) == 0x60000 and u32(core, RES + 0x74) == 0x23
    assert u32(core, RES + 0x78) == 0x77
    assert core.st[S.CPL] == 0 and not core.get_flags() & F.IF


@pytest.mark.parametrize("body,vector,error", [
    ("    mov ax, 0x1000\n    mov ds, ax\n", GP, 0x1000),  # beyond the GDT limit
    ("    jmp 0x10:0\n", GP, 0x10),  # JMP to a data segment
    ("    mov ax, 0x48\n    mov ds, ax\n", NP, 0x48),  # not present
    ("    mov ax, 0x50\n    mov ss, ax\n", SS_, 0x50),  # stack segment not present
    ("    mov ax, 0x08\n    mov ss, ax\n", GP, 0x08),  # SS must be writable data
])
def test_protection_faults(tmp_path, body, vector, error):
    core, reason = boot(assemble(body + "    hlt\n", tmp_path))
    assert reason == S.EXIT_HLT, S.EXIT_REASON_NAMES[reason]
    assert exc(core) == (vector, error)


def test_gp_for_ring3_far_jump_to_ring0_code(tmp_path):
    body = RING3 + "    jmp 0x08:0\n"
    core, reason = boot(assemble(body, tmp_path))
    assert reason == S.EXIT_HLT
    assert exc(core) == (GP, 0x08)
    assert u32(core, RES + 12) == 0x1B  # faulted in ring 3


def test_retf_gp_for_outer_stack_with_wrong_rpl(tmp_path):
    body = r"""
    push dword 0x20          ; SS3 with RPL 0 (must equal the return RPL 3)
    push dword 0x6000
    push dword 0x1B
    push dword 0
    retf
"""
    core, reason = boot(assemble(body, tmp_path))
    assert reason == S.EXIT_HLT
    assert exc(core) == (GP, 0x20)
    assert u32(core, RES + 12) == 0x08 and core.st[S.CPL] == 0


TASK_B = r"""
    ; TSS1: a 32-bit task starting at taskb with its own stack
    mov dword [TSS1 + 0x20], taskb
    mov dword [TSS1 + 0x24], 0x2
    mov dword [TSS1 + 0x38], 0x70000     ; ESP
    mov dword [TSS1 + 0x28], 0x22222222  ; EAX
    mov word [TSS1 + 0x48], 0x10         ; ES
    mov word [TSS1 + 0x4C], 0x08         ; CS
    mov word [TSS1 + 0x50], 0x10         ; SS
    mov word [TSS1 + 0x54], 0x10         ; DS
    mov word [TSS1 + 0x58], 0x10         ; FS
    mov word [TSS1 + 0x5C], 0x10         ; GS
    mov word [TSS1 + 0x60], 0            ; LDT
"""


def test_task_switch_call_through_task_gate_and_iret_back(tmp_path):
    body = TASK_B + r"""
    mov eax, 0x11111111
    call 0x40:0              ; CALL through a task gate: nested task
aftercall:
    mov [RES + 0x40], eax    ; task A's EAX, restored from TSS0
    pushfd
    pop ecx
    mov [RES + 0x44], ecx
    str ax
    mov [RES + 0x48], ax
    hlt
taskb:
    str ax
    mov [RES + 0x50], ax
    pushfd
    pop ecx
    mov [RES + 0x54], ecx    ; NT set
    mov ax, [TSS1]
    mov [RES + 0x58], ax     ; back-link = TSS0
    mov [RES + 0x5C], esp
    mov eax, cr0
    mov [RES + 0x60], eax    ; CR0.TS set by the switch
    mov [RES + 0x64], ebx
    mov eax, 0x33333333
    iret                     ; NT=1: return to task A
    jmp $
"""
    core, reason = boot(assemble(body, tmp_path))
    assert reason == S.EXIT_HLT, (S.EXIT_REASON_NAMES[reason], exc(core))
    assert u16(core, RES + 0x50) == 0x38
    assert u32(core, RES + 0x54) & F.NT
    assert u16(core, RES + 0x58) == 0x28
    assert u32(core, RES + 0x5C) == 0x70000
    assert u32(core, RES + 0x60) & 8
    assert u32(core, RES + 0x40) == 0x11111111
    assert not u32(core, RES + 0x44) & F.NT  # IRET cleared NT in task A's image
    assert u16(core, RES + 0x48) == 0x28
    assert desc_type(core, 0x28) == 0xB and desc_type(core, 0x38) == 0x9  # busy A, available B
    assert u32(core, TSS1 + 0x28) == 0x33333333  # task B's state was saved on the way out


def test_task_switch_by_jmp_to_tss(tmp_path):
    body = TASK_B + r"""
    mov eax, 0x11111111
    jmp 0x38:0
afterjmp:
    jmp $
taskb:
    pushfd
    pop ecx
    mov [RES + 0x54], ecx
    hlt
"""
    image = assemble(body, tmp_path)
    core, reason = boot(image)
    assert reason == S.EXIT_HLT, (S.EXIT_REASON_NAMES[reason], exc(core))
    assert core.st[S.seg_slot(S.TR_SEG, S.SEG_SEL)] == 0x38
    assert not u32(core, RES + 0x54) & F.NT  # JMP does not nest
    assert desc_type(core, 0x28) == 0x9 and desc_type(core, 0x38) == 0xB
    assert u32(core, TSS0 + 0x28) == 0x11111111  # task A's EAX saved
    saved_eip = u32(core, TSS0 + 0x20)
    assert core.read_phys(saved_eip, 2) == b"\xeb\xfe"  # EIP after the JMP (the `jmp $`)
    assert core.st[S.EAX] == 0x22222222


def test_task_gate_in_idt_from_ring3(tmp_path):
    body = TASK_B + RING3 + r"""
    int 0x81
    jmp $
taskb:
    mov ax, [TSS1]
    mov [RES + 0x58], ax
    mov eax, [TSS0 + 0x4C]
    mov [RES + 0x5C], eax    ; task A's CS, saved
    hlt
"""
    core, reason = boot(assemble(body, tmp_path))
    assert reason == S.EXIT_HLT, (S.EXIT_REASON_NAMES[reason], exc(core))
    assert u16(core, RES + 0x58) == 0x28 and u32(core, RES + 0x5C) == 0x1B
    assert core.st[S.CPL] == 0


V86_TAIL = r"""
times 0x10000 - 0x7C00 - ($ - $$) db 0
bits 16
v86code:                      ; at 1000:0000
    mov word [0x600], 0xBEEF  ; DS = 0x0000 -> linear 0x600
    V86_INSN
    mov word [0x602], 0xDEAD
    hlt
"""

V86_ENTER = r"""
    push dword 0             ; GS
    push dword 0             ; FS
    push dword 0             ; DS
    push dword 0             ; ES
    push dword 0x0000        ; SS
    push dword 0x7000        ; ESP
    push dword 0x00020002    ; EFLAGS: VM=1, IOPL=0, IF=0
    push dword 0x1000        ; CS
    push dword 0             ; EIP
    iretd                    ; IRET to virtual-8086 mode
"""


@pytest.mark.parametrize("insn", ["cli", "int 0x21", "pushf", "popf", "sti"])
def test_v86_entered_by_iret_iopl0_sensitive_insns_fault(tmp_path, insn):
    tail = V86_TAIL.replace("V86_INSN", insn)
    core, reason = boot(assemble(V86_ENTER, tmp_path, tail=tail))
    assert reason == S.EXIT_HLT, (S.EXIT_REASON_NAMES[reason], exc(core))
    assert core.read_phys(0x600, 2) == b"\xef\xbe"  # ran in V86 mode
    assert core.read_phys(0x602, 2) == b"\0\0"
    assert exc(core) == (GP, 0)
    assert u32(core, RES + 8) == 6  # EIP of the faulting instruction (after the 6-byte MOV)
    assert u32(core, RES + 12) == 0x1000
    assert u32(core, RES + 16) & F.VM
    assert u32(core, RES + 20) == 0x80000 - 24  # after the stub's pops: ESP SS ES DS FS GS of the V86 frame
    assert core.st[S.CPL] == 0


def test_v86_iopl3_cli_runs_and_hlt_faults(tmp_path):
    enter = V86_ENTER.replace("0x00020002", "0x00023002")
    tail = V86_TAIL.replace("V86_INSN", "cli")
    core, reason = boot(assemble(enter, tmp_path, tail=tail))
    assert reason == S.EXIT_HLT
    assert core.read_phys(0x602, 2) == b"\xad\xde"
    assert exc(core) == (GP, 0)  # HLT at CPL 3


def test_system_instructions_in_a_guest(tmp_path):
    body = r"""
    xor eax, eax
    cpuid
    mov [RES + 0x40], ebx
    mov [RES + 0x44], edx
    mov [RES + 0x48], ecx
    mov eax, 0x80000002
    cpuid
    mov [RES + 0x4C], eax
    mov ecx, 0x277           ; PAT round trip
    mov eax, 0x00000106
    mov edx, 0x00070406
    wrmsr
    xor eax, eax
    xor edx, edx
    rdmsr
    mov [RES + 0x50], eax
    mov [RES + 0x54], edx
    mov ecx, 0x18            ; LAR/LSL/VERR/VERW on the DPL3 code selector
    lar eax, ecx
    mov [RES + 0x58], eax
    lsl eax, ecx
    mov [RES + 0x5C], eax
    mov dword [RES + 0x60], 0
    verr cx
    setz [RES + 0x60]
    verw cx
    setz [RES + 0x61]
    mov cx, 0x48
    lar eax, cx              ; not present: LAR still succeeds
    setz [RES + 0x62]
    mov ecx, 0xC0001234      ; unknown MSR
    rdmsr
    hlt
"""
    core, reason = boot(assemble(body, tmp_path))
    assert reason == S.EXIT_HLT, S.EXIT_REASON_NAMES[reason]
    assert core.read_phys(RES + 0x40, 12) == b"GenuineIntel"
    assert core.read_phys(RES + 0x4C, 4) == b"pyem"
    assert (u32(core, RES + 0x50), u32(core, RES + 0x54)) == (0x106, 0x70406)
    assert u32(core, RES + 0x58) == 0x00C0FB00  # masked with 00F0FF00h (limit 19:16 not reported)
    assert u32(core, RES + 0x5C) == 0xFFFF_FFFF
    assert core.read_phys(RES + 0x60, 3) == b"\x01\x00\x01"
    assert exc(core) == (GP, 0)
