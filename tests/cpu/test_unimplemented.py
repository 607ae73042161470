"""A guest can never stop the emulator: what pyemu lacks raises #UD in the guest (issue 14).

CPUID reports no MMX/SSE, so their encodings are #UD on the CPU pyemu models, exactly as an
invalid encoding is. Code fetched where nothing answers (open bus reads all-ones, FF FF is an
invalid encoding) raises #UD too. `-d unimp` logs each such instruction.
"""

from __future__ import annotations

import io

import numpy as np
import pytest

from emu.cpu import state as S
from emu.cpu.core import CpuCore
from emu.cpu.tracelog import TraceLog
from tests.cpu.guestasm import assemble, needs_nasm
from tests.cpu.test_unicorn_diff import CODE, DATA_END, GDT, IDT, STUBS, system_image

pytestmark = needs_nasm
UD = 6


def _run(code: bytes, log: io.StringIO | None = None) -> CpuCore:
    core = CpuCore(ram_bytes=1 << 20)
    img = system_image(32)
    img[CODE:CODE + len(code)] = code
    core.mem[:DATA_END] = np.frombuffer(bytes(img), dtype=np.uint8)
    core.setup_flat32()
    core.st[S.GDTR_BASE], core.st[S.GDTR_LIMIT] = GDT, 23
    core.st[S.IDTR_BASE], core.st[S.IDTR_LIMIT] = IDT, 32 * 8 - 1
    core.st[S.ESP] = 0x80000
    core.st[S.EIP] = CODE
    trace = TraceLog(core, S.LOG_UNIMP, log) if log is not None else None
    reason = core.run(10_000)
    if trace:
        trace.drain()
    assert reason == S.EXIT_HLT, S.EXIT_REASON_NAMES[reason]
    return core


@pytest.mark.parametrize("insn", ["emms", "movd mm0, eax", "addps xmm0, xmm1"])
def test_an_instruction_pyemu_lacks_raises_ud(insn):
    core = _run(assemble(f"mov eax, 1\n{insn}\nhlt\n", bits=32, org=CODE))
    assert core.st[S.EIP] == STUBS + UD + 1  # the #UD handler's HLT ran
    assert core.stats_dict()["unimplemented"] == 1
    ret = int.from_bytes(core.read_phys(0x80000 - 12, 4), "little")
    assert ret == CODE + 5  # the fault points at the instruction (after the 5-byte MOV)


def test_jumping_to_unbacked_memory_raises_ud_and_logs():
    log = io.StringIO()
    core = _run(assemble("mov eax, 0xE0000000\njmp eax\n", bits=32, org=CODE), log)
    assert core.st[S.EIP] == STUBS + UD + 1
    assert int.from_bytes(core.read_phys(0x80000 - 12, 4), "little") == 0xE0000000
    assert "e0000000" in log.getvalue() and "#UD" in log.getvalue()
