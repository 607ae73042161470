"""Pure scalar semantic functions: what an instruction computes, apart from where its operands live.

A row of the opcode table (emu/translate/opcodes.py) that names one of these in its semantic
column runs through one handler, H_SCALAR, in both tiers: the operand layer (generated into
emu/cpu/scalar_dispatch.py) reads the destination and the source from a register or memory, calls
the function and writes the result back, so a memory form is its register form after a load (as
Bochs's /m forms call the /r forms).

Each function takes ``(dst, src, size)``: the destination's old value and the source value, both
zero-extended from ``size`` bytes (1, 2 or 4), and returns ``(result, flags)``: the value for the
destination (masked to the operand size) and the EFLAGS status flags it sets, as literal bits.
``@semantic`` registers it and numbers it (its sub-operation, R_AUX of the row) in the order of
this file; ``defines`` names the status flags it writes (the others keep their values) and
``writes=False`` marks a compare that leaves its destination alone.

Flags the SDM leaves undefined are set as QEMU (and so unicorn, the tests' oracle) sets them.
After adding a function, run ``python3 -m emu.cpu.gen_dispatch`` to regenerate the dispatch.
"""

from __future__ import annotations

from typing import NamedTuple

from numba import njit

from emu.cpu.flags import CF, STATUS_MASK, ZF


class Semantic(NamedTuple):
    name: str  # the function's name, which table rows use
    number: int  # its sub-operation number (R_AUX)
    fn: object  # the compiled function
    writes: bool  # False: a compare, the destination is only read
    defines: int  # the status flags it sets; the others are kept


REGISTRY: list[Semantic] = []


def semantic(defines: int = STATUS_MASK, writes: bool = True):
    """Register a semantic function (compiled with numba) under its own name."""

    def wrap(py):
        fn = njit(cache=True)(py)
        REGISTRY.append(Semantic(py.__name__, len(REGISTRY), fn, writes, defines))
        return fn

    return wrap


def by_name() -> dict[str, Semantic]:
    return {s.name: s for s in REGISTRY}


@njit(cache=True)
def _lsb_index(x):
    """Index of the lowest set bit of a nonzero 32-bit value."""
    i = 0
    if (x & 0xFFFF) == 0:
        x >>= 16
        i += 16
    if (x & 0xFF) == 0:
        x >>= 8
        i += 8
    if (x & 0xF) == 0:
        x >>= 4
        i += 4
    if (x & 0x3) == 0:
        x >>= 2
        i += 2
    if (x & 1) == 0:
        i += 1
    return i


@njit(cache=True)
def _msb_index(x):
    """Index of the highest set bit of a nonzero 32-bit value."""
    i = 0
    if x >> 16:
        x >>= 16
        i += 16
    if x >> 8:
        x >>= 8
        i += 8
    if x >> 4:
        x >>= 4
        i += 4
    if x >> 2:
        x >>= 2
        i += 2
    if x >> 1:
        i += 1
    return i


# ---------------------------------------------------------------- bit scans (SDM Vol. 2A)
@semantic(defines=ZF)
def bsf(dst, src, size):
    """BSF: the index of the source's lowest set bit. A zero source sets ZF and leaves the
    destination as it was (the SDM says undefined; CPUs and QEMU keep it). CF OF SF AF PF are
    undefined: they keep their values."""
    if src == 0:
        return dst, ZF
    return _lsb_index(src), 0


@semantic(defines=ZF)
def bsr(dst, src, size):
    """BSR: the index of the source's highest set bit; a zero source as BSF."""
    if src == 0:
        return dst, ZF
    return _msb_index(src), 0


# ---------------------------------------------------------------- bit counts (SDM Vol. 2)
@semantic()
def popcnt(dst, src, size):
    """POPCNT: the number of set bits of the source. ZF = (src == 0); OF SF AF CF PF cleared."""
    x = src - ((src >> 1) & 0x5555_5555)
    x = (x & 0x3333_3333) + ((x >> 2) & 0x3333_3333)
    x = (x + (x >> 4)) & 0x0F0F_0F0F
    n = ((x * 0x0101_0101) & 0xFFFF_FFFF) >> 24
    return n, (ZF if src == 0 else 0)


@semantic()
def lzcnt(dst, src, size):
    """LZCNT: leading zero bits of the source; the operand width when it is 0. CF = (src == 0),
    ZF = (result == 0); OF SF PF AF undefined: 0 (QEMU's CC_OP_BMILG)."""
    bits = size * 8
    n = bits if src == 0 else bits - 1 - _msb_index(src)
    return n, (CF if src == 0 else 0) | (ZF if n == 0 else 0)


@semantic()
def tzcnt(dst, src, size):
    """TZCNT: trailing zero bits of the source; the operand width when it is 0. CF = (src == 0),
    ZF = (result == 0); OF SF PF AF undefined: 0 (QEMU's CC_OP_BMILG)."""
    n = size * 8 if src == 0 else _lsb_index(src)
    return n, (CF if src == 0 else 0) | (ZF if n == 0 else 0)
