"""Self-modifying code through the compiled engine: writes to translated code take effect at once.

- a store that rewrites the next instruction of the running block (16- and 32-bit code);
- code rewritten through a second linear mapping of the same physical page (paging);
- REP MOVSB copying new code over an existing block, and over the rest of the running block;
- the `--stats` counters (smc_writes, tb_invalidated) grow.
"""

from __future__ import annotations

import struct

import pytest

from emu.cpu import state as S
from emu.cpu.core import CpuCore
from tests.cpu.guestasm import assemble, needs_nasm

pytestmark = needs_nasm

CODE = 0x1000
OUT = 0x600


def u32(core: CpuCore, addr: int) -> int:
    return struct.unpack("<I", core.read_phys(addr, 4))[0]


def flat(src: str, paging: bool = False) -> CpuCore:
    core = CpuCore(16 << 20)
    core.setup_flat32(paging=paging)
    core.st[S.ESP] = 0x9000
    core.write_phys(CODE, assemble(src, bits=32, org=CODE))
    core.st[S.EIP] = CODE
    return core


def finish(core: CpuCore, budget: int = 10_000) -> None:
    reason = core.run(budget)
    assert reason == S.EXIT_HLT, S.EXIT_REASON_NAMES[reason]


def test_rewrite_next_instruction_32():
    core = flat("""
        xor eax, eax
        mov byte [t1], 0x40               ; NOP -> INC EAX
    t1: nop
        mov dword [t2 + 1], 0x12345678    ; the immediate of the next MOV
    t2: mov ebx, 0
        mov word [t3], 0xC931             ; MOV ECX,.. (5 bytes) -> XOR ECX,ECX + 3 NOPs
    t3: mov ecx, 0x90909090
        hlt
    """)
    core.st[S.ECX] = 0x5555
    before = core.stats_dict()
    finish(core)
    assert core.st[S.EAX] == 1
    assert core.st[S.EBX] == 0x12345678
    assert core.st[S.ECX] == 0
    after = core.stats_dict()
    assert after["smc_writes"] - before["smc_writes"] >= 3
    assert after["tb_invalidated"] - before["tb_invalidated"] >= 3


def test_rewrite_next_instruction_16():
    core = CpuCore(1 << 20)
    core.set_seg_real(S.CS, 0)
    core.set_seg_real(S.DS, 0)
    core.set_seg_real(S.SS, 0)
    core.st[S.ESP] = 0x8000
    core.write_phys(CODE, assemble("""
        xor ax, ax
        mov byte [t1], 0x40               ; NOP -> INC AX
    t1: nop
        mov word [t2 + 1], 0xBEEF
    t2: mov bx, 0
        hlt
    """, bits=16, org=CODE))
    core.st[S.EIP] = CODE
    finish(core)
    assert core.st[S.EAX] & 0xFFFF == 1
    assert core.st[S.EBX] & 0xFFFF == 0xBEEF


def test_rewrite_code_in_a_loop_already_translated():
    """The loop body runs once as written, then patches its own later instruction."""
    core = flat("""
        xor eax, eax
        mov ecx, 3
    top:
        add eax, 1
    t:  nop
        nop
        nop
        mov word [t], 0xC083              ; nop;nop;nop -> ADD EAX, 16
        mov byte [t + 2], 0x10
        loop top
        hlt
    """)
    finish(core)
    # iteration 1: +1 (the NOPs run); iterations 2 and 3: +1 +16
    assert core.st[S.EAX] == 1 + 2 * 17


def _alias(core: CpuCore, linear: int, phys: int, flags: int = 3) -> None:
    """Point the PTE of `linear` (setup_flat32's tables: PD 80000h, PTs from 81000h) at `phys`."""
    pte = 0x81000 + (linear >> 12) * 4
    core.write_phys(pte, struct.pack("<I", phys | flags))


def test_rewrite_through_a_second_mapping():
    """Linear 400000h and 800000h map the same physical page: run code at 800000h, patch it
    through 400000h, run it again."""
    core = flat(f"""
        call 0x800000
        mov [{OUT:#x}], eax
        mov dword [0x400001], 2           ; the immediate of MOV EAX, imm32, through the alias
        call 0x800000
        mov [{OUT + 4:#x}], eax
        call 0x800010                     ; a block that patches its own next instruction via the alias
        mov [{OUT + 8:#x}], eax
        hlt
    """, paging=True)
    _alias(core, 0x400000, 0x300000)
    _alias(core, 0x800000, 0x300000)
    code = assemble("""
        mov eax, 1
        ret
        times 0x10 - ($ - $$) nop
        mov eax, 7
        mov byte [0x400000 + t - $$], 0x40   ; NOP -> INC EAX, written through the other mapping
    t:  nop
        ret
    """, bits=32, org=0x800000)
    core.write_phys(0x300000, code)
    finish(core)
    assert u32(core, OUT) == 1
    assert u32(core, OUT + 4) == 2
    assert u32(core, OUT + 8) == 8


def test_rep_movsb_over_an_existing_block():
    core = flat(f"""
        call fn
        mov [{OUT:#x}], eax
        mov esi, new
        mov edi, fn
        mov ecx, new_end - new
        cld
        rep movsb
        call fn
        mov [{OUT + 4:#x}], eax
        hlt
    new:
        mov eax, 0x22222222
        ret
    new_end:
        times 0x100 - ($ - $$) nop
    fn:
        mov eax, 0x11111111
        ret
    """)
    finish(core)
    assert u32(core, OUT) == 0x11111111
    assert u32(core, OUT + 4) == 0x22222222


def test_rep_movsb_over_the_running_block():
    core = flat("""
        mov esi, new
        mov edi, t
        mov ecx, 5
        cld
        rep movsb
    t:  mov eax, 0x11111111
        hlt
    new:
        mov eax, 0x22222222
    """)
    before = core.stats_dict()
    finish(core)
    assert core.st[S.EAX] == 0x22222222
    after = core.stats_dict()
    assert after["smc_writes"] > before["smc_writes"]
    assert after["tb_invalidated"] > before["tb_invalidated"]


def test_write_to_code_of_another_page_does_not_stop_unrelated_blocks():
    """Data writes to a page without code keep the fast path (no SMC counted)."""
    core = flat("""
        mov ecx, 100
    l:  mov [0x50000 + ecx*4], ecx
        loop l
        hlt
    """)
    before = core.stats_dict()
    finish(core)
    assert core.stats_dict()["smc_writes"] == before["smc_writes"]
    assert u32(core, 0x50000 + 4 * 50) == 50


@pytest.mark.parametrize("far", [False, True])
def test_patched_jump_target(far):
    """A patched branch displacement redirects the branch at once."""
    core = flat("""
        mov byte [j + 1], b - (j + 2)     ; JMP short a -> JMP short b
    j:  jmp short a
    a:  mov eax, 1
        hlt
    b:  mov eax, 2
        hlt
    """ if not far else """
        mov dword [j + 1], b - (j + 5)
    j:  jmp dword a
    a:  mov eax, 1
        hlt
        times 0x1000 nop
    b:  mov eax, 2
        hlt
    """)
    finish(core)
    assert core.st[S.EAX] == 2


def test_data_beside_code_on_the_same_page_does_not_drop_the_code():
    """Stores to a variable a few bytes after the code (same page, same 128-byte granule) leave
    the blocks alone: only writes that overlap a block's bytes invalidate it (as GRUB needs)."""
    core = flat("""
        mov ecx, 1000
    again:
        inc dword [var]
        mov [var + 4], ecx
        loop again
        hlt
    var: dd 0, 0
    """)
    before = core.stats_dict()
    finish(core, budget=100_000)
    after = core.stats_dict()
    assert u32(core, core.st[S.EIP] + 0) == 1000  # EIP is just past HLT, at var
    assert after["tb_invalidated"] == before["tb_invalidated"]
    assert after["tb_translated"] - before["tb_translated"] <= 4


def test_a_write_to_the_second_page_of_a_block_that_crosses_pages_is_seen():
    """A block whose tail lies on the next page: that page's write TLB entries (made before the
    block existed) must go too, or a store there would skip the code check."""
    core = flat("""
        mov dword [0x2100], 1             ; a writable TLB entry for page 2000h
        xor edx, edx
        mov ecx, 2
    again:
        call block
        add edx, eax
        mov byte [patch], 0x40            ; NOP -> INC EAX, on page 2000h
        loop again
        hlt
        times 0xFF8 - ($ - $$) db 0xCC
    block:                                ; at 1FF8h: runs across the page boundary
        xor eax, eax
        times 8 nop
    patch:
        nop
        ret
    """)
    finish(core)
    assert core.st[S.EDX] == 1  # first call 0, second call (patched) 1
