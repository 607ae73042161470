"""Decoder, translation blocks, block cache and tier-1 code generation."""

from emu import numbaload  # noqa: F401 - before any engine code compiles: one compile per function
