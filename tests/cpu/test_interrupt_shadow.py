"""The interrupt shadow lasts one instruction (SDM Vol 3, 6.8.3): after STI sets EFLAGS.IF, a
pending interrupt is taken right after the next instruction, even when a CLI follows it at once.

SeaBIOS waits for its floppy IRQ in `sti; nop; pause; cli`: a loop that checked for interrupts only
at block boundaries never saw IF=1 there, and every floppy boot timed out.
"""

from __future__ import annotations

import numpy as np
import pytest

from emu.cpu import flags as F
from emu.cpu import state as S
from emu.cpu.core import CpuCore
from tests.cpu.test_unicorn_diff import CODE, DATA_END, system_image

STI_NOP_CLI_LOOP = bytes.fromhex("fb 90 fa ebfb")  # .l: sti / nop / cli / jmp .l
# .l: sti / jmp .m / .m: cli / jmp .l: the shadow's instruction is a control transfer
STI_JMP_CLI_LOOP = bytes.fromhex("fb eb00 fa ebfa")


@pytest.mark.parametrize("code", [STI_NOP_CLI_LOOP, STI_JMP_CLI_LOOP], ids=["nop", "jmp"])
@pytest.mark.parametrize("threshold", [0, 1], ids=["interpreter", "compiled"])
def test_an_interrupt_is_taken_in_a_one_instruction_sti_window(threshold, code):
    core = CpuCore(ram_bytes=1 << 20, tier1_threshold=threshold)
    img = system_image(32)
    img[CODE:CODE + len(code)] = code
    core.mem[:DATA_END] = np.frombuffer(bytes(img), dtype=np.uint8)
    core.setup_flat32()
    core.st[S.EIP] = CODE
    core.st[S.EFLAGS] &= ~F.IF
    for _ in range(3):  # some passes with no interrupt: the blocks exist (and compile at threshold 1)
        assert core.run(40) == S.EXIT_BUDGET
    core.st[S.EIP] = CODE
    core.st[S.INTR_LINE] = 1  # the PIC raised INTR
    reason = core.run(1000)
    assert reason == S.EXIT_IRQ
    assert int(core.st[S.EIP]) == CODE + len(code) - 3  # after the NOP (JMP), before the CLI
    assert core.st[S.EFLAGS] & F.IF
