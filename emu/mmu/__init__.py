"""Physical memory map, paging and the TLB."""

from emu import numbaload  # noqa: F401 - before any engine code compiles: one compile per function
