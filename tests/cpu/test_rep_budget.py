"""A REP string instruction never retires more than the budget (fuzz finding `overrun`).

`CpuCore.run(n)` promises at most n instructions (gdb's stepi, TF and -icount rely on it); a long
REP pauses between iterations with EIP on the instruction and each iteration counts as one.
"""

from __future__ import annotations

import numpy as np
import pytest

from emu.cpu import state as S
from emu.cpu.core import CpuCore
from tests.cpu.test_unicorn_diff import CODE, DATA_END, system_image

REP_STOSD = bytes.fromhex("f3ab")  # rep stosd


@pytest.mark.parametrize("budget", [1, 100, 2000, 5000])
def test_rep_stosd_retires_exactly_the_budget(budget):
    core = CpuCore(ram_bytes=1 << 20, tier1_threshold=0)
    img = system_image(32)
    img[CODE:CODE + 2] = REP_STOSD
    core.mem[:DATA_END] = np.frombuffer(bytes(img), dtype=np.uint8)
    core.setup_flat32()
    core.st[S.EIP] = CODE
    core.st[S.ECX] = 100_000
    core.st[S.EDI] = 0x20000
    reason = core.run(budget)
    assert reason == S.EXIT_BUDGET
    assert int(core.st[S.ICOUNT]) == budget
    assert int(core.st[S.ECX]) == 100_000 - budget  # one element per counted iteration
    assert int(core.st[S.EIP]) == CODE  # not retired yet: it goes on at the next run
