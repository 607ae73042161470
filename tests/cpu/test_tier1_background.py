"""Tier 1 compiles on a worker thread while the guest goes on, and installs only what is still valid.

The promise (emu/translate/tier1.py, `Tier1`): a block that turned hot is handed to the worker
with a copy of its rows; the loop keeps interpreting it meanwhile; the finished address is stored
at an exit only if the record still holds the very block that was compiled. So the guest's
results never depend on when a compile finishes.
"""

from __future__ import annotations

import numpy as np

from emu import stats as K
from emu.cpu import state as S
from emu.cpu.core import CpuCore
from emu.translate import blockcache as B

CODE = 0x1000
THRESHOLD = 100  # >= TIER1_BATCH: the worker compiles (a smaller one compiles in place, for tests)


def loop(count: int, xor_reg_modrm: int = 0xC3) -> bytes:
    """mov ecx, count / top: add eax, ecx / xor ebx|edx, eax / loop top / hlt"""
    return (b"\xb9" + count.to_bytes(4, "little") + b"\x01\xc8" + bytes([0x31, xor_reg_modrm])
            + b"\xe2\xfa" + b"\xf4")


def start(core: CpuCore, code: bytes) -> None:
    core.mem[CODE:CODE + len(code)] = np.frombuffer(code, dtype=np.uint8)
    core.setup_flat32()
    core.st[S.EIP] = CODE
    for r in (S.EAX, S.EBX, S.EDX):
        core.st[r] = 0


def compiled_records(core: CpuCore) -> int:
    return int(np.count_nonzero(core.blocks.tbs[B.TB_FN::B.TB_WIDTH] > 0))


def test_a_hot_loop_compiles_in_the_background_and_matches_the_interpreter():
    ref = CpuCore(ram_bytes=1 << 20, tier1_threshold=0)
    start(ref, loop(300_000))
    assert ref.run(10_000_000) == S.EXIT_HLT

    core = CpuCore(ram_bytes=1 << 20, tier1_threshold=THRESHOLD)
    assert core.tier1.background
    start(core, loop(300_000))
    assert core.run(50_000) == S.EXIT_BUDGET  # the loop turned hot and went to the worker
    assert compiled_records(core) == 0  # nothing is installed before an exit has seen it finish
    core.tier1.wait()
    assert compiled_records(core) == 1
    before = int(core.stats[K.COMPILED_INSNS])
    assert core.run(10_000_000) == S.EXIT_HLT
    assert int(core.stats[K.COMPILED_INSNS]) - before > 800_000  # most of what was left ran compiled
    for r in (S.EAX, S.EBX, S.ECX, S.EIP):
        assert int(core.st[r]) == int(ref.st[r])
    assert int(core.st[S.ICOUNT]) == int(ref.st[S.ICOUNT])


def test_a_compile_of_code_that_changed_meanwhile_is_dropped():
    """The worker compiles `xor ebx, eax`; before it is installed the code is flushed and replaced
    by `xor edx, eax` at the same address: the stale function never runs."""
    core = CpuCore(ram_bytes=1 << 20, tier1_threshold=THRESHOLD)
    start(core, loop(300_000))
    assert core.run(50_000) == S.EXIT_BUDGET
    core.flush_blocks()  # what an SMC write or a CR0/CR4 change does to the records
    start(core, loop(20, xor_reg_modrm=0xC2))  # short: it never turns hot itself
    assert core.run(3) == S.EXIT_BUDGET  # translated again, into the records the old blocks had
    core.tier1.wait()  # the old batch finishes and is checked against the records now
    assert compiled_records(core) == 0
    assert core.run(10_000) == S.EXIT_HLT
    assert int(core.st[S.EBX]) == 0 and int(core.st[S.EDX]) != 0


def test_compiled_code_is_freed_when_its_blocks_are_gone():
    """Compiled code is bounded by the block cache: once no record holds a module's functions
    (here after a flush, as when the cache fills), `sweep` frees it, and the code runs on."""
    core = CpuCore(ram_bytes=1 << 20, tier1_threshold=THRESHOLD)
    start(core, loop(300_000))
    core.run(50_000)
    core.tier1.wait()
    assert len(core.tier1.libraries) == 1
    assert core.tier1.sweep() == 0  # still called through its record
    core.flush_blocks()
    assert core.tier1.sweep() == 1
    assert core.tier1.libraries == []
    assert core.run(10_000_000) == S.EXIT_HLT  # retranslated, interpreted (and compiled again)
    ref = CpuCore(ram_bytes=1 << 20, tier1_threshold=0)
    start(ref, loop(300_000))
    ref.run(10_000_000)
    assert int(core.st[S.EBX]) == int(ref.st[S.EBX])


def test_a_retired_lljit_goes_once_its_last_library_is_unloaded(monkeypatch):
    """ORC keeps a dylib per linked library for the life of its LLJIT, so an LLJIT links
    JIT_MODULES libraries and then hands over to a fresh one; the old one is disposed of when
    its code is no longer called, and code compiled on the new one runs as before."""
    from emu.translate import tier1 as T1

    monkeypatch.setattr(T1, "JIT_MODULES", 1)
    monkeypatch.setenv("PYEMU_T1_SYNC", "1")  # compile and unload in place, at once
    ref = CpuCore(ram_bytes=1 << 20, tier1_threshold=0)
    start(ref, loop(300_000))
    ref.run(10_000_000)
    core = CpuCore(ram_bytes=1 << 20, tier1_threshold=THRESHOLD)
    start(core, loop(300_000))
    core.run(50_000)
    core.tier1.drain()
    (first, _), = core.tier1.libraries
    core.flush_blocks()  # its blocks are gone
    core.tier1._flushes = int(core.blocks.bc[B.BC_FLUSHES])  # (the next install must not sweep: we do)
    core.run(50_000)  # hot again: compiled into a second library, on a second LLJIT
    core.tier1.drain()
    assert [lib.jit for lib, _ in core.tier1.libraries][-1] is not first.jit
    assert first.jit.retired and not first.jit.lljit.closed  # its library is still loaded
    core.tier1.sweep()
    assert first.tracker is None and first.jit.lljit.closed
    assert core.run(10_000_000) == S.EXIT_HLT
    assert int(core.st[S.EBX]) == int(ref.st[S.EBX])


def test_the_heap_is_trimmed_after_libraries_are_unloaded(monkeypatch):
    """LLVM's churn leaves free holes in the malloc arena that glibc keeps resident, so unloading
    TRIM_UNLOADS libraries gives the free pages back (`trim_heap`)."""
    from emu.translate import tier1 as T1

    assert isinstance(T1.trim_heap(), bool)  # (glibc: malloc_trim; elsewhere a no-op)
    trims = []
    monkeypatch.setattr(T1, "trim_heap", lambda: trims.append(1) or True)
    monkeypatch.setattr(T1, "TRIM_UNLOADS", 1)
    monkeypatch.setenv("PYEMU_T1_SYNC", "1")
    core = CpuCore(ram_bytes=1 << 20, tier1_threshold=THRESHOLD)
    start(core, loop(300_000))
    core.run(50_000)
    core.tier1.drain()
    assert core.tier1.sweep() == 0 and trims == []  # nothing unloaded: no trim
    core.flush_blocks()
    assert core.tier1.sweep() == 1 and trims == [1]
    # in the background the worker unloads (and trims) before its next compile
    monkeypatch.delenv("PYEMU_T1_SYNC")
    core = CpuCore(ram_bytes=1 << 20, tier1_threshold=THRESHOLD)
    start(core, loop(300_000))
    core.run(50_000)
    core.tier1.wait()
    core.flush_blocks()
    assert core.tier1.sweep() == 1 and trims == [1]  # queued for the worker
    core.run(50_000)  # hot again: the worker's next compile
    core.tier1.wait()
    assert trims == [1, 1]


def test_a_flush_frees_the_compiled_code_at_the_next_install(monkeypatch):
    """A block-cache flush leaves every library compiled before it dead; the next install sweeps
    them at once rather than when the library count reaches the sweep threshold again (a soak's
    RSS climbed by the dead code of a whole cache between two sweeps)."""
    monkeypatch.setenv("PYEMU_T1_SYNC", "1")
    core = CpuCore(ram_bytes=1 << 20, tier1_threshold=THRESHOLD)
    start(core, loop(300_000))
    core.run(50_000)
    core.tier1.drain()
    (first, _), = core.tier1.libraries
    core.flush_blocks()
    core.run(50_000)  # hot again: compiled and installed
    core.tier1.drain()
    assert first.tracker is None
    assert len(core.tier1.libraries) == 1 and core.tier1.libraries[0][0] is not first
