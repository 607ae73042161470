"""Bounds safety: random guest code over random page tables never crashes the host process and
never writes host memory outside the guest's RAM (issue 4).

The engine's arrays (RAM, CPU state, TLB, physical map) are replaced by views into larger buffers
whose margins hold a known pattern (guards); after every example the guards must be intact and the
physical map unchanged. Each example: a small RAM (2 MiB, so page-table entries and addresses
often point beyond it), random RAM contents, a random mode (real, flat 32-bit, 32-bit paging with
or without PSE/PGE, PAE) with random page directories/tables whose entries point anywhere in the
4 GiB physical space, random registers and segment bases, an MMIO region answering random values,
and code that mixes random bytes with instructions biased towards memory operands at wild
addresses (moffs, base+disp32, string ops with wild pointers and counts, CMPXCHG8B, PUSH/POP
through memory, MOV CR3/CR0/CR4, INVLPG, LGDT/LIDT, far jumps, INT). It runs with a budget of
2,000 instructions, servicing I/O and MMIO exits; any exit reason is fine.

A crash (a segfault in compiled code) must fail the test, not kill pytest: the examples run in a
child process (`python -m tests.mmu.test_bounds_safety N`), and the parent checks its exit status.
The child prints each example's seed before running it, so a crash names its reproducer.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis.strategies import integers as st_integers

GUARD = 1 << 16
PATTERN = 0xA5
RAM = 2 << 20

# ------------------------------------------------------------------------------ the child side


def guarded(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(big buffer, view of len(arr) in its middle holding a copy of arr); margins = PATTERN."""
    nbytes = arr.nbytes
    big = np.full(nbytes + 2 * GUARD, PATTERN, dtype=np.uint8)
    view = big[GUARD: GUARD + nbytes].view(arr.dtype)
    view[:] = arr
    return big, view


def guards_intact(big: np.ndarray) -> bool:
    return bool((big[:GUARD] == PATTERN).all() and (big[-GUARD:] == PATTERN).all())


class GuardedCore:
    """A CpuCore whose RAM, state, TLB and pmap live inside guard-padded buffers."""

    def __init__(self):
        from emu.cpu.core import CpuCore
        from emu.devices.bus import MmioRegion
        from emu.mmu import softmmu as M

        core = CpuCore(RAM)
        self.core = core
        self.bigs = {}
        big, view = guarded(core.mem)
        self.bigs["mem"] = big
        core.mem = core.phys.mem = view
        core.ctx[M.CTX_MEM] = view.ctypes.data
        big, view = guarded(core.st)
        self.bigs["st"] = big
        core.st = view
        core.ctx[M.CTX_STATE] = view.ctypes.data
        big, view = guarded(core.tlb)
        self.bigs["tlb"] = big
        core.tlb = view
        core.ctx[M.CTX_TLB] = view.ctypes.data
        big, view = guarded(core.phys.pmap)
        self.bigs["pmap"] = big
        core.phys.pmap = view
        core.ctx[M.CTX_PMAP] = view.ctypes.data
        self.rng_value = 0
        self.mmio = MmioRegion(0x00F00000, 0x2000, self._mmio_read, lambda off, size, v: None)
        core.phys.add_mmio(self.mmio)
        self.pmap_copy = core.phys.pmap.copy()

    def _mmio_read(self, off: int, size: int) -> int:
        self.rng_value = (self.rng_value * 6364136223846793005 + 1442695040888963407) & (2**64 - 1)
        return self.rng_value & ((1 << 8 * size) - 1)

    def check(self) -> None:
        bad = [name for name, big in self.bigs.items() if not guards_intact(big)]
        assert not bad, f"host memory outside the arrays was written: guards of {bad}"
        assert (self.core.phys.pmap == self.pmap_copy).all(), "the physical map changed"
        # the RAM array itself: the ROM copy after RAM is read-only for the guest
        rom = self.core.mem[RAM: RAM + 0x40000]
        assert (rom == self.rom_copy).all(), "the guest wrote the ROM copy"


# instruction templates: (bytes builder) biased towards memory operands at wild addresses
def _templates(rng: np.random.Generator, bits: int) -> bytes:
    u32 = int(rng.integers(0, 2**32, dtype=np.uint64))
    r = int(rng.integers(0, 8))
    k = int(rng.integers(0, 26))
    le = u32.to_bytes(4, "little")
    pre = b""
    if rng.random() < 0.2:
        pre += bytes([0x66])
    if rng.random() < 0.15:
        pre += bytes([0x67])
    if rng.random() < 0.15:
        pre += bytes([int(rng.choice([0x26, 0x2E, 0x36, 0x3E, 0x64, 0x65]))])
    if k == 0:
        return pre + b"\xA1" + le  # mov eax, [moffs]
    if k == 1:
        return pre + b"\xA3" + le  # mov [moffs], eax
    if k == 2:
        return pre + bytes([0x8B, 0x80 | (r << 3) | int(rng.integers(0, 8))]) + le  # mov r, [b+d32]
    if k == 3:
        return pre + bytes([0x89, 0x80 | (r << 3) | int(rng.integers(0, 8))]) + le  # mov [b+d32], r
    if k == 4:
        return bytes([0xB8 + r]) + le  # mov r, imm32 (wild pointers and counts)
    if k == 5:
        return pre + bytes([0xF3, int(rng.choice([0xA4, 0xA5, 0xAA, 0xAB, 0xAC, 0xAD, 0xA6, 0xAE]))])
    if k == 6:
        return b"\x0F\x22\xD8"  # mov cr3, eax
    if k == 7:
        return b"\x0F\x01\x38"  # invlpg [eax]
    if k == 8:
        return b"\x0F\xC7\x08"  # cmpxchg8b [eax]
    if k == 9:
        return pre + b"\xFF\x30"  # push [eax]
    if k == 10:
        return pre + b"\x8F\x00"  # pop [eax]
    if k == 11:
        return b"\x0F\x01" + bytes([0x10 | int(rng.integers(0, 2)) << 3])  # lgdt/lidt [eax]
    if k == 12:
        return b"\xCD" + bytes([int(rng.integers(0, 256))])  # int n
    if k == 13:
        return b"\x0F\x22\xC0"  # mov cr0, eax
    if k == 14:
        return b"\x0F\x22\xE0"  # mov cr4, eax
    if k == 15:
        return pre + bytes([0x01, 0x84 | (r << 3), int(rng.integers(0, 256))]) + le  # add [sib+d32], r
    if k == 16:
        return pre + b"\xFF\xE0"  # jmp eax
    if k == 17:
        return b"\xEA" + le + int(rng.integers(0, 0x40)).to_bytes(2, "little")  # jmp far
    if k == 18:
        return pre + bytes([0x8E, 0xC0 | (int(rng.choice([0, 2, 3, 4, 5])) << 3)])  # mov sreg, ax
    if k == 19:
        return pre + b"\x0F\xB1\x08"  # cmpxchg [eax], ecx
    if k == 20:
        return pre + b"\xC4\x00"  # les eax, [eax]
    if k == 21:
        return b"\x0F\x00" + bytes([0xD0 | int(rng.integers(0, 2)) << 3])  # lldt/ltr ax
    if k == 22:
        return pre + b"\xC8" + int(rng.integers(0, 65536)).to_bytes(2, "little") + bytes([int(rng.integers(0, 32))])
    if k == 23:
        return b"\xCF"  # iret
    if k == 24:
        return pre + b"\x61"  # popa
    return bytes(rng.integers(0, 256, int(rng.integers(1, 8)), dtype=np.uint8))  # random bytes


def random_code(rng: np.random.Generator, bits: int, n: int) -> bytes:
    out = bytearray()
    for _ in range(n):
        out += _templates(rng, bits)
    return bytes(out)


def setup_example(g: GuardedCore, seed: int) -> None:
    from emu.cpu import state as S

    rng = np.random.default_rng(seed)
    core = g.core
    core.reset()
    core.flush_blocks()
    core.flush_tlb()
    mem = core.mem
    # random RAM (page tables, descriptor tables, data), with a bias towards "present" dwords
    mem[:RAM] = rng.integers(0, 256, RAM, dtype=np.uint8)
    words = mem[:RAM].view(np.uint32)
    if rng.random() < 0.5:
        idx = rng.integers(0, len(words), len(words) // 4)
        words[idx] |= 1
    mem[0xC0000:0x100000] = 0  # (the guest never sees this RAM: C0000-FFFFF is ROM)
    g.rom_copy = core.mem[RAM: RAM + 0x40000].copy()
    mode = int(rng.integers(0, 5))
    code_at = 0x1000 + int(rng.integers(0, 0x7F000))
    bits = 16 if mode == 0 else 32
    code = random_code(rng, bits, int(rng.integers(5, 60)))
    core.write_phys(code_at, code)
    for i in range(8):
        core.st[i] = int(rng.integers(0, 2**32, dtype=np.uint64))
    if rng.random() < 0.5:  # some small, in-RAM values too
        core.st[int(rng.integers(0, 8))] = int(rng.integers(0, RAM))
    if mode == 0:
        core.set_seg_real(S.CS, code_at >> 4)
        core.st[S.EIP] = code_at & 0xF
        for seg in (S.DS, S.ES, S.SS, S.FS, S.GS):
            core.set_seg_real(seg, int(rng.integers(0, 65536)))
        core.set_a20(bool(rng.integers(0, 2)))
        if rng.random() < 0.8:  # an IVT whose vectors land in the code
            ivt = b"".join(((code_at & 0xF) + int(rng.integers(0, max(len(code), 1)))).to_bytes(2, "little")
                           + (code_at >> 4).to_bytes(2, "little") for _ in range(256))
            core.write_phys(0, ivt)
    else:
        paging = mode >= 2
        core.setup_flat32(paging=paging, page_tables=0x180000, map_mib=2)
        core.st[S.EIP] = code_at
        # Mostly valid descriptor tables next to the code (so exceptions land in more random code
        # instead of ending in a triple fault at once); sometimes random ones.
        page = code_at & ~0xFFF
        if rng.random() < 0.8:
            gdt, idt = page + 0x1000, page + 0x1100
            core.write_phys(gdt, bytes(8) + (0x00CF9B000000FFFF).to_bytes(8, "little")
                            + (0x00CF93000000FFFF).to_bytes(8, "little")
                            + (0x00CFFB000000FFFF).to_bytes(8, "little")
                            + (0x00CFF3000000FFFF).to_bytes(8, "little"))
            gates = bytearray()
            for _ in range(256):
                off = code_at + int(rng.integers(0, max(len(code), 1)))
                gates += ((off & 0xFFFF) | (0x08 << 16) | ((0xEE00 | ((off >> 16) << 16)) << 32)).to_bytes(8, "little")
            core.write_phys(idt, bytes(gates))
            core.st[S.GDTR_BASE], core.st[S.GDTR_LIMIT] = gdt, 0x27
            core.st[S.IDTR_BASE], core.st[S.IDTR_LIMIT] = idt, 0x7FF
            core.st[S.ESP] = page + 0x4000 - int(rng.integers(0, 0x100)) * 4
        else:
            core.st[S.GDTR_BASE] = int(rng.integers(0, 2**32, dtype=np.uint64))
            core.st[S.IDTR_BASE] = int(rng.integers(0, RAM))
            core.st[S.IDTR_LIMIT] = int(rng.integers(0, 0x800))
        if paging:
            # keep the code's own page mapped (identity) so something runs; everything else random
            pd = 0x180000
            words[(pd >> 2) + 1: (pd >> 2) + 1024] = rng.integers(0, 2**32, 1023, dtype=np.uint64).astype(np.uint32)
            pt = 0x181000
            keep = code_at >> 12
            for j in range(512):
                if not (keep - 1 <= j <= keep + 4) and rng.random() < 0.7:
                    words[(pt >> 2) + j] = int(rng.integers(0, 2**32, dtype=np.uint64))
            cr4 = 0
            if rng.random() < 0.5:
                cr4 |= 0x10  # PSE
            if rng.random() < 0.5:
                cr4 |= 0x80  # PGE
            if mode == 4:  # PAE with random PDPTEs (the walk uses the cached ones)
                cr4 |= 0x20
                for i in range(4):
                    core.st[S.PDPTE0 + i] = int(rng.integers(0, 2**63, dtype=np.uint64)) | int(rng.integers(0, 2))
                core.st[S.PDPTE0] = 0x182000 | 1
                core.st[S.CR3] = int(rng.integers(0, RAM)) & ~0x1F
            core.st[S.CR4] = cr4
            if rng.random() < 0.3:
                core.st[S.CR0] |= 0x10000  # WP
        if rng.random() < 0.2:  # ring 3
            core.st[S.CPL] = 3
            core.st[S.seg_slot(S.CS, S.SEG_ATTR)] |= 3 << S.ATTR_DPL_SHIFT
            core.st[S.seg_slot(S.SS, S.SEG_ATTR)] |= 3 << S.ATTR_DPL_SHIFT
        core.flush_tlb()
        core._update_hflags()
    core.set_flags(int(rng.integers(0, 0x1000)) & 0xCD5 | 2)


def run_example(g: GuardedCore, seed: int, budget: int = 2000) -> None:
    from emu.cpu import state as S

    setup_example(g, seed)
    core = g.core
    st = core.st
    left = budget
    for _ in range(200):
        if left <= 0:
            break
        before = int(st[S.ICOUNT])
        reason = core.run(left)
        left -= int(st[S.ICOUNT]) - before + 1
        if reason == S.EXIT_IO_IN:
            st[S.IO_VALUE] = 0xFFFFFFFF
            st[S.IO_PENDING] = 1
        elif reason == S.EXIT_MMIO_READ:
            st[S.MMIO_VALUE] = g._mmio_read(0, 4)
            st[S.MMIO_PENDING] = 1
        elif reason in (S.EXIT_IO_OUT, S.EXIT_MMIO_WRITE, S.EXIT_BUDGET, S.EXIT_IRQ):
            continue
        else:  # HLT, triple fault, unimplemented, BIOS trap, reset: this example is over
            break
    g.check()


def child_main(n: int, first_seed: int) -> None:
    """Run n examples drawn by hypothesis (seeds), printing each seed before it runs."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as hst

    g = GuardedCore()

    @settings(max_examples=n, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(seed=hst.integers(0, 2**63 - 1))
    def examples(seed):
        seed = (seed + first_seed) % 2**63
        print(f"seed {seed}", flush=True)
        run_example(g, seed)

    examples()
    print("ok", flush=True)


# ------------------------------------------------------------------------------ the parent side
def _warm_engine() -> None:
    """Compile (or load) the engine in this process, so the child finds a warm cache."""
    from emu.cpu import state as S
    from emu.cpu.core import CpuCore

    core = CpuCore(1 << 20)
    core.write_phys(0x1000, b"\xF4")
    core.set_seg_real(S.CS, 0)
    core.st[S.EIP] = 0x1000
    core.run(10)


def _run_child(n: int, first_seed: int, timeout: int = 600) -> None:
    _warm_engine()
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-m", "tests.mmu.test_bounds_safety", str(n), str(first_seed)],
                          cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
    lines = proc.stdout.strip().splitlines()
    last_seed = next((ln for ln in reversed(lines) if ln.startswith("seed")), "no seed")
    if proc.returncode < 0:
        pytest.fail(f"the host process died with signal {-proc.returncode} at {last_seed} "
                    f"(reproduce: python -c 'from tests.mmu.test_bounds_safety import *; "
                    f"g = GuardedCore(); run_example(g, {last_seed.split()[-1]})')")
    assert proc.returncode == 0, f"{last_seed}:\n{proc.stderr[-3000:]}"
    assert lines and lines[-1] == "ok"


def test_random_code_over_random_page_tables():
    _run_child(1000, 0)


@pytest.mark.slow
@pytest.mark.parametrize("batch", range(8))
def test_random_code_over_random_page_tables_many(batch):
    _run_child(20_000, (batch + 1) * 1_000_003, timeout=1800)


def test_guards_detect_a_write_outside_ram():
    """The harness itself: a write just past the RAM view is seen."""
    big, view = guarded(np.zeros(64, dtype=np.uint8))
    assert guards_intact(big)
    big[GUARD + 64] = 0
    assert not guards_intact(big)


if __name__ == "__main__":
    child_main(int(sys.argv[1]), int(sys.argv[2]))


_HYPOTHESIS_CORE: list = []


@settings(max_examples=150, deadline=None, derandomize=True)
@given(seed=st_integers(min_value=0, max_value=2**63 - 1), budget=st_integers(min_value=1, max_value=4000))
def test_hypothesis_random_code_over_random_page_tables(seed, budget):
    """The same property driven by hypothesis in this process (the child-process test above is the
    one that survives a crash): each drawn seed builds random page tables, registers and code,
    and after running `budget` instructions every guard byte around the host arrays is intact."""
    if not _HYPOTHESIS_CORE:
        _HYPOTHESIS_CORE.append(GuardedCore())
    run_example(_HYPOTHESIS_CORE[0], seed, budget)
