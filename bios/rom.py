"""The built-in BIOS image: 64 KiB at F0000-FFFFF, built here from our own tiny stubs.

Every service is a few bytes of 16-bit code whose work traps to Python: `out TRAP_PORT, al` leaves
the compiled loop as an ordinary port write, and the machine recognises it by the port and by
CS:IP (the address just after the OUT names the service). The stubs are:

    vector stub (8 bytes, at A):   A+0  out TRAP_PORT, al   ; Python runs the service
                                   A+2  iret
                                   A+3  sti                 ; wait path: a blocking service that
                                   A+4  hlt                 ; cannot finish yet sets IP = A+3, the
                                   A+5  cli                 ; guest sleeps until an interrupt and
                                   A+6  jmp A               ; retries
    INT 08h (timer):               out TRAP_PORT, al ; int 1Ch ; iret
    POST (from the reset vector):  cli ; out TRAP_PORT, al ; sti ; int 19h ; then the halt loop
    halt loop:                     cli ; hlt ; jmp halt

Python adjusts the FLAGS image that the IRET pops (CF/ZF results) and any register in the state
array. Fixed tables that guests read from the ROM (the INT 15h C0h configuration table, the INT 1Eh
diskette parameters, the model byte, the date string, the VGA's fonts for INT 10h AX=1130h) are
laid out here too.
"""

from __future__ import annotations

ROM_SIZE = 0x10000
ROM_SEGMENT = 0xF000
ROM_BASE = 0xF0000

TRAP_PORT = 0xE5  # private: nothing on a PC/AT or in QEMU's pc machine decodes port E5h

STUB_SIZE = 8
STUB_RET = 2  # IP after the OUT: what the trap sees
STUB_WAIT = 3  # where a blocking service sends the guest to sleep and retry

# Layout inside segment F000.
VECTOR_STUBS = 0x1000  # 256 stubs of 8 bytes: F000:1000-17FF
INT08_STUB = 0x1800
POST_ENTRY = 0x1810
HALT_LOOP = 0x1820
CONFIG_TABLE = 0xE6F5  # INT 15h C0h system configuration table (the IBM address)
DISKETTE_PARAMS = 0xEFC7  # INT 1Eh diskette parameter table (the IBM address)
FONT8X16 = 0xA000  # INT 10h AX=1130h: copies of the VGA's ROM fonts (emu/devices/vgafont.py)
FONT8X14 = 0xB000
FONT8X8 = 0xC000
FONT_ALTERNATES = 0xC800  # the 9-dot replacement glyph lists: empty (a terminating 00h)
FONT8X8_LEGACY = 0xFA6E  # where the PC/AT BIOS keeps the 8x8 font's first 128 characters
DATE_STRING = 0xFFF5
MODEL_BYTE = 0xFFFE
RESET_VECTOR = 0xFFF0

MODEL_AT = 0xFC
BIOS_DATE = b"11/24/26"

OP_OUT_IMM8 = 0xE6
OP_IRET = 0xCF
OP_STI = 0xFB
OP_CLI = 0xFA
OP_HLT = 0xF4
OP_JMP_SHORT = 0xEB
OP_INT = 0xCD
OP_JMP_FAR = 0xEA

# Configuration table (IBM PS/2 and AT BIOS technical reference, INT 15h AH=C0h): length word, model,
# submodel, BIOS revision, feature bytes 1-5. Feature 1: 0x70 = EBDA present, INT 15h/4Fh keyboard
# intercept, real-time clock present (no DMA channel 3 use, no slave PIC missing).
CONFIG_TABLE_BYTES = bytes([0x08, 0x00, MODEL_AT, 0x00, 0x01, 0x74, 0x40, 0x00, 0x00, 0x00])

# Diskette parameter table for a 1.44M drive (step rate/head unload, head load/DMA, motor off delay,
# 512 bytes per sector, 18 sectors per track, gap length, data length, format gap, fill, settle, motor
# start).
DISKETTE_PARAM_BYTES = bytes([0xAF, 0x02, 0x25, 0x02, 0x12, 0x1B, 0xFF, 0x6C, 0xF6, 0x0F, 0x08])


def vector_stub(vector: int) -> int:
    """Offset in segment F000 of the stub that IVT entry `vector` points to."""
    return VECTOR_STUBS + STUB_SIZE * vector


def build_rom() -> bytes:
    """The 64 KiB image, ending at FFFFF (reset vector at FFFF0)."""
    rom = bytearray(b"\xff" * ROM_SIZE)

    def put(off: int, data: bytes) -> None:
        rom[off: off + len(data)] = data

    for v in range(256):
        a = vector_stub(v)
        put(a, bytes([OP_OUT_IMM8, TRAP_PORT, OP_IRET, OP_STI, OP_HLT, OP_CLI,
                      OP_JMP_SHORT, (-8) & 0xFF]))
    put(INT08_STUB, bytes([OP_OUT_IMM8, TRAP_PORT, OP_INT, 0x1C, OP_IRET]))
    put(POST_ENTRY, bytes([OP_CLI, OP_OUT_IMM8, TRAP_PORT, OP_STI, OP_INT, 0x19,
                           OP_JMP_SHORT, HALT_LOOP - (POST_ENTRY + 8) & 0xFF]))
    put(HALT_LOOP, bytes([OP_CLI, OP_HLT, OP_JMP_SHORT, (-4) & 0xFF]))
    put(CONFIG_TABLE, CONFIG_TABLE_BYTES)
    put(DISKETTE_PARAMS, DISKETTE_PARAM_BYTES)
    put(RESET_VECTOR, bytes([OP_JMP_FAR]) + POST_ENTRY.to_bytes(2, "little")
        + ROM_SEGMENT.to_bytes(2, "little"))
    from emu.devices import vgafont

    put(FONT8X16, vgafont.FONT8X16)
    put(FONT8X14, vgafont.FONT8X14)
    put(FONT8X8, vgafont.FONT8X8)
    put(FONT_ALTERNATES, b"\x00")
    put(FONT8X8_LEGACY, vgafont.FONT8X8[: 128 * 8])
    put(DATE_STRING, BIOS_DATE)
    put(MODEL_BYTE, bytes([MODEL_AT, 0x00]))
    return bytes(rom)


def trap_site(ip: int) -> tuple[str, int] | None:
    """What a trap at IP (just after the OUT) is: ("vector", n), ("int08", 8), ("post", 0) or None."""
    if VECTOR_STUBS <= ip - STUB_RET < VECTOR_STUBS + 256 * STUB_SIZE and (ip - STUB_RET) % STUB_SIZE == 0:
        return "vector", (ip - STUB_RET - VECTOR_STUBS) // STUB_SIZE
    if ip == INT08_STUB + STUB_RET:
        return "int08", 8
    if ip == POST_ENTRY + 3:
        return "post", 0
    return None
