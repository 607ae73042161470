"""CPUID feature flags that table rows name, and which of them the CPU advertises.

A row of the opcode table (emu/translate/opcodes.py) whose instruction belongs to an optional
extension names its feature in its semantic column. The feature is advertised (its CPUID bit set)
exactly when every row that names it is implemented, i.e. names a registered semantic function
(emu/cpu/semantics.py): CPUID never promises an instruction that raises #UD, and an implemented
instruction is never hidden. SDM Vol. 2A, CPUID: Table 3-8 (leaves 07H and 80000001H) and
Table 3-10 (leaf 01H, ECX).
"""

from __future__ import annotations

from typing import NamedTuple

EAX, EBX, ECX, EDX = range(4)  # the register a feature bit is reported in


class Feature(NamedTuple):
    leaf: int
    subleaf: int
    reg: int
    bit: int


FEATURES = {
    "popcnt": Feature(0x01, 0, ECX, 23),  # CPUID.01H:ECX.POPCNT[bit 23]
    "bmi1": Feature(0x07, 0, EBX, 3),  # CPUID.(EAX=07H, ECX=0):EBX.BMI1[bit 3] (TZCNT, ...)
    "lzcnt": Feature(0x8000_0001, 0, ECX, 5),  # CPUID.80000001H:ECX.LZCNT[bit 5] (AMD: ABM)
}


def implemented() -> set[str]:
    """The features all of whose rows are implemented."""
    from emu.cpu.semantics import by_name
    from emu.translate.opcodes import TABLE

    known = by_name()
    named: dict[str, bool] = {}
    for *_row, sem in TABLE:
        if sem is not None and sem.feature:
            named[sem.feature] = named.get(sem.feature, True) and sem.fn in known
    return {f for f, ok in named.items() if ok}


def advertised(leaf: int, subleaf: int, reg: int) -> int:
    """The feature bits of CPUID leaf `leaf`.`subleaf`, register `reg`, that rows implement."""
    have = implemented()
    mask = 0
    for name, f in FEATURES.items():
        if name in have and (f.leaf, f.subleaf, f.reg) == (leaf, subleaf, reg):
            mask |= 1 << f.bit
    return mask
