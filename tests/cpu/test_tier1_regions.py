"""A hot loop of several blocks runs as one native loop (emu/translate/tier1.py, `CodeGen.region_ir`):
the blocks the loop has chained from a compiled block join its function, and a branch between them
stays inside it. A block that falls off its end (the row cap) goes on as after a JMP, and a direct
branch to another page finds its target through the execute TLB. Each case gives the results, the
instruction count and the budget of the interpreter, and a write that drops a block of a region
is seen by the next pass."""

from __future__ import annotations

import pytest

from emu import stats as K
from emu.cpu import state as S
from emu.cpu.core import CpuCore
from emu.translate.translator import MAX_BLOCK_INSNS
from tests.cpu.test_tier1_chaining import CODE, N, start


def asm(*parts: bytes) -> bytes:
    return b"".join(parts)


def rel8(frm: int, to: int) -> bytes:
    """The rel8 of a 2-byte branch at `frm` to `to`."""
    return ((to - (frm + 2)) & 0xFF).to_bytes(1, "little")


def diamond() -> bytes:
    """Three blocks a pass, one of them on odd passes only:
        mov ecx, N
    top: add eax, ecx / test cl, 1 / jz even      (block A)
         add ebx, eax                              (block B, odd passes)
    even: xor edx, eax / dec ecx / jnz top         (block C)
         hlt"""
    top = 5
    a = asm(b"\x01\xc8", b"\xf6\xc1\x01")  # add eax, ecx / test cl, 1
    jz_at = top + len(a)
    b_blk = b"\x01\xc3"  # add ebx, eax
    even = jz_at + 2 + len(b_blk)
    c = b"\x31\xc2\x49"  # xor edx, eax / dec ecx
    jnz_at = even + len(c)
    return asm(b"\xb9" + N.to_bytes(4, "little"), a, b"\x74" + rel8(jz_at, even), b_blk, c,
               b"\x75" + rel8(jnz_at, top), b"\xf4")


def long_body() -> bytes:
    """A loop body longer than a block's row cap, so its first block falls off its end:
        mov ecx, N / top: (MAX_BLOCK_INSNS + 8) x add eax, ecx / dec ecx / jnz top / hlt"""
    body = b"\x01\xc8" * (MAX_BLOCK_INSNS + 8) + b"\x49"
    jnz_at = 5 + len(body)
    return asm(b"\xb9" + N.to_bytes(4, "little"), body, b"\x75" + rel8(jnz_at, 5), b"\xf4")


def across_pages() -> bytes:
    """A loop whose two blocks sit on two pages (the loop links only on a page):
        mov ecx, N / top: add eax, ecx / jmp far_part      (page 1, at the end)
        far_part: xor ebx, eax / dec ecx / jnz top / hlt   (page 2)"""
    code = bytearray(b"\x90" * 0x1020)
    top = 0xFF0
    code[0:5] = b"\xb9" + N.to_bytes(4, "little")
    code[5:10] = b"\xe9" + (top - 10).to_bytes(4, "little")  # jmp top
    code[top: top + 2] = b"\x01\xc8"
    code[top + 2: top + 4] = b"\xeb" + rel8(top + 2, 0x1008)
    far = b"\x31\xc3\x49"  # xor ebx, eax / dec ecx
    code[0x1008: 0x1008 + 3] = far
    code[0x100B: 0x100D] = b"\x75" + rel8(0x100B, top)
    code[0x100D] = 0xF4
    return bytes(code)


def same_as_interpreter(code: bytes, slice_: int = 10_000_000) -> CpuCore:
    ref = CpuCore(ram_bytes=1 << 20, tier1_threshold=0)
    core = CpuCore(ram_bytes=1 << 20, tier1_threshold=1)  # below 16: compiled in place at the next exit
    for c in (ref, core):
        start(c, code)
    assert core.run(1000) == S.EXIT_BUDGET  # every block seen (and linked), then compiled
    assert ref.run(1000) == S.EXIT_BUDGET
    while True:
        a, b = ref.run(slice_), core.run(slice_)
        assert a == b
        for r in (S.EAX, S.EBX, S.ECX, S.EDX, S.ESP, S.EIP, S.ICOUNT, S.BUDGET):
            assert int(core.st[r]) == int(ref.st[r])
        if a == S.EXIT_HLT:
            return core


@pytest.mark.parametrize("code", [diamond(), long_body(), across_pages()], ids=["diamond", "row-cap", "two-pages"])
def test_a_loop_of_several_blocks_stays_in_compiled_code(code):
    core = same_as_interpreter(code)
    assert core.stats[K.COMPILED_INSNS] > 0.9 * core.stats[K.INSNS]
    # neither the loop nor a tail call between functions on nearly every pass
    assert int(core.stats[K.TIER1_ENTRIES]) < N // 10
    if code != across_pages():
        assert int(core.stats[K.TIER1_CHAINED]) < N // 10  # one function: branches inside it


@pytest.mark.parametrize("code", [diamond(), long_body(), across_pages()], ids=["diamond", "row-cap", "two-pages"])
def test_a_region_stops_at_the_budget_exactly(code):
    same_as_interpreter(code, slice_=997)


def test_a_write_that_drops_a_region_block_is_seen():
    """Half-way through, the loop rewrites the immediate of a block its compiled region includes (on
    the same page, in another 128-byte granule, so the region's first block stays valid); the next
    pass must add the new immediate, as the interpreter does.
        mov ecx, N
    top: cmp ecx, N/2 / jne body                       (block A)
         mov dword [imm], 7                            (once)
    body: jmp tail                                     (block B)
    ... tail (+0x100): add eax, 3 (imm32) / dec ecx / jnz top / hlt"""
    tail = 0x100
    code = bytearray(b"\x90" * (tail + 16))
    code[0:5] = b"\xb9" + N.to_bytes(4, "little")
    top = 5
    code[top: top + 6] = b"\x81\xf9" + (N // 2).to_bytes(4, "little")  # cmp ecx, N/2
    jne_at = top + 6
    store = bytes(b"\xc7\x05" + (CODE + tail + 1).to_bytes(4, "little") + (7).to_bytes(4, "little"))
    body = jne_at + 2 + len(store)
    code[jne_at: jne_at + 2] = b"\x75" + rel8(jne_at, body)
    code[jne_at + 2: body] = store
    code[body: body + 5] = b"\xe9" + (tail - (body + 5)).to_bytes(4, "little", signed=True)
    code[tail: tail + 5] = b"\x05" + (3).to_bytes(4, "little")  # add eax, 3
    code[tail + 5] = 0x49  # dec ecx
    code[tail + 6: tail + 12] = b"\x0f\x85" + (top - (tail + 12)).to_bytes(4, "little", signed=True)  # jnz top
    code[tail + 12] = 0xF4
    core = same_as_interpreter(bytes(code))
    assert int(core.st[S.EAX]) == 3 * (N // 2) + 7 * (N // 2)  # (the pass at ECX = N/2 adds 7)
