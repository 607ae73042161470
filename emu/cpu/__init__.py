"""CPU state, modes, exceptions and instruction semantics."""

from emu import numbaload  # noqa: F401 - before any engine code compiles: one compile per function
