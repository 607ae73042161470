"""Compiled blocks go on in compiled blocks: a CALL, a RET and a CALL through a register whose target
is compiled and on the same page tail-call it instead of returning to the loop (emu/translate/tier1.py,
`_jump_indirect`), with the results, the instruction count and the budget of the interpreter."""

from __future__ import annotations

import numpy as np
import pytest

from emu import stats as K
from emu.cpu import state as S
from emu.cpu.core import CpuCore

CODE = 0x1000
N = 20_000
FUNC = b"\x01\xc8\x31\xc3\xc3"  # f: add eax, ecx / xor ebx, eax / ret


def direct_call() -> bytes:
    """mov ecx, N / top: call f / loop top / hlt ... f at +20h"""
    head = b"\xb9" + N.to_bytes(4, "little") + b"\xe8" + (0x20 - 10).to_bytes(4, "little") + b"\xe2\xf9\xf4"
    return head.ljust(0x20, b"\x90") + FUNC


def call_through_register() -> bytes:
    """mov ecx, N / top: mov edx, f / call edx / loop top / hlt ... f at +20h"""
    head = (b"\xb9" + N.to_bytes(4, "little") + b"\xba" + (CODE + 0x20).to_bytes(4, "little") + b"\xff\xd2"
            + b"\xe2\xf7\xf4")
    return head.ljust(0x20, b"\x90") + FUNC


def start(core: CpuCore, code: bytes) -> None:
    core.mem[CODE:CODE + len(code)] = np.frombuffer(code, dtype=np.uint8)
    core.setup_flat32()
    core.st[S.EIP] = CODE
    core.st[S.ESP] = 0x8000
    for r in (S.EAX, S.EBX, S.EDX):
        core.st[r] = 0


@pytest.mark.parametrize("code", [direct_call(), call_through_register()], ids=["call", "call-reg"])
def test_calls_and_returns_stay_in_compiled_code(code):
    ref = CpuCore(ram_bytes=1 << 20, tier1_threshold=0)
    start(ref, code)
    assert ref.run(10_000_000) == S.EXIT_HLT

    core = CpuCore(ram_bytes=1 << 20, tier1_threshold=1)  # below 16: compiled in place at the next exit
    start(core, code)
    assert core.run(1000) == S.EXIT_BUDGET
    assert core.run(10_000_000) == S.EXIT_HLT
    for r in (S.EAX, S.EBX, S.ECX, S.ESP, S.EIP, S.ICOUNT):
        assert int(core.st[r]) == int(ref.st[r])
    assert int(core.stats[K.TIER1_CHAINED]) > 2 * N * 9 // 10  # into f and back, on nearly every pass
    assert int(core.stats[K.TIER1_ENTRIES]) < N // 10  # the loop itself is rarely entered


def test_a_chain_stops_at_the_budget_exactly():
    """Chained blocks never run past the budget: slices of 1,000 stop where the interpreter's do."""
    ref = CpuCore(ram_bytes=1 << 20, tier1_threshold=0)
    core = CpuCore(ram_bytes=1 << 20, tier1_threshold=1)
    for c in (ref, core):
        start(c, direct_call())
    while True:
        a, b = ref.run(1000), core.run(1000)
        assert a == b
        for r in (S.EAX, S.EBX, S.ECX, S.ESP, S.EIP, S.ICOUNT):
            assert int(core.st[r]) == int(ref.st[r])
        if a == S.EXIT_HLT:
            break
    assert int(core.stats[K.TIER1_CHAINED]) > N
