"""`-d in_asm,exec,cpu,int`: the compiled loop records what QEMU's log items promise."""

import io

import pytest

from emu.cpu import state as S
from emu.cpu.core import CpuCore
from emu.cpu.tracelog import TraceLog, parse_items

# 0000:7C00: mov ax, 0x1234 ; int 0x21 ; hlt        handler at 0000:0500: inc bx ; iret
PROGRAM = bytes([0xB8, 0x34, 0x12, 0xCD, 0x21, 0xF4])
HANDLER = bytes([0x43, 0xCF])


def run_logged(items: str) -> tuple[str, CpuCore]:
    core = CpuCore(ram_bytes=1 << 20)
    core.write_phys(0x7C00, PROGRAM)
    core.write_phys(0x500, HANDLER)
    core.write_phys(0x21 * 4, (0x0500).to_bytes(2, "little") + (0).to_bytes(2, "little"))
    core.set_seg_real(S.CS, 0)
    core.st[S.EIP] = 0x7C00
    out = io.StringIO()
    log = TraceLog(core, parse_items(items), out)
    for _ in range(100):
        reason = core.run(1000)
        log.drain()
        if reason != S.EXIT_LOG:
            break
    assert reason == S.EXIT_HLT
    return out.getvalue(), core


def test_in_asm_shows_each_translated_block_disassembled():
    text, _ = run_logged("in_asm")
    assert "IN:" in text
    assert "mov ax, 0x1234" in text
    assert "int 0x21" in text
    assert "inc bx" in text


def test_exec_traces_every_block_run_in_order():
    text, _ = run_logged("exec")
    traces = [line for line in text.splitlines() if line.startswith("Trace")]
    assert len(traces) == 3  # the entry block, the handler, the return block
    assert "00007c00" in traces[0] and "00000500" in traces[1]


def test_int_logs_the_software_interrupt_with_its_return_address():
    text, _ = run_logged("int")
    assert "v=21" in text and "i=1" in text and "IP=0000:00007c05" in text


def test_cpu_dumps_registers_before_each_block():
    text, core = run_logged("cpu")
    assert text.count("EAX=") == 3
    assert "EAX=00001234" in text  # before the handler's block
    assert core.get_reg16(S.EBX) == 1


def test_unknown_item_is_rejected_with_its_name():
    with pytest.raises(ValueError, match="bogus"):
        parse_items("in_asm,bogus")
