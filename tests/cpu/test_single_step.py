"""EFLAGS.TF: a single-step trap (#DB, vector 1) after every instruction that starts with TF=1
(SDM Vol 3, 17.3.1.4), with DR6.BS set; the handler itself runs with TF clear."""

import shutil

import pytest

from emu.cpu import state as S
from emu.cpu.core import CpuCore

pytestmark = pytest.mark.skipif(shutil.which("nasm") is None, reason="nasm is not installed")

PROGRAM = """
  xor ax, ax
  mov ds, ax
  mov word [4], handler   ; IVT vector 1
  mov word [6], 0
  pushf
  pop ax
  or ax, 0x100
  push ax
  popf                    ; TF=1 from the next instruction on
  nop                     ; trap 1
  nop                     ; trap 2
  inc cx                  ; trap 3
  pushf                   ; trap 4
  pop ax                  ; trap 5
  and ax, 0xFEFF          ; trap 6
  push ax                 ; trap 7
  popf                    ; trap 8: TF was set when POPF began
  nop                     ; no trap
  hlt
handler:
  inc word [0x600]
  iret
"""


def test_tf_traps_after_each_instruction_until_cleared():
    from tests.cpu.guestasm import assemble

    core = CpuCore(ram_bytes=1 << 20)
    core.write_phys(0x7C00, assemble(PROGRAM, bits=16, org=0x7C00))
    core.set_seg_real(S.CS, 0)
    core.set_seg_real(S.SS, 0)
    core.st[S.ESP] = 0x7000
    core.st[S.EIP] = 0x7C00
    assert core.run(10_000) == S.EXIT_HLT
    assert int.from_bytes(core.read_phys(0x600, 2), "little") == 8
    assert core.st[S.DR0 + 6] & (1 << 14)  # DR6.BS
    assert core.get_reg16(S.ECX) == 1
