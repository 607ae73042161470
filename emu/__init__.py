"""pyemu: a PC emulator that runs x86 guest code as cached, compiled translation blocks."""

__version__ = "0.1.0"
