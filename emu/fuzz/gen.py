"""Random programs for the fuzzer: x86 encodings drawn from a table, mutated, mixed with random bytes.

A program is a plain dict (it is what a reproducer file holds):
    mode      real | pm16 | pm32 | paged | v86
    seed      the seed of everything not listed here (RAM contents, page tables, random descriptors)
    code      the code bytes, hex
    code_off  offset of the code from CODE_BASE (CS:IP / EIP)
    regs      the eight GPRs
    eflags    the initial EFLAGS (VM is added for v86)
    ring3     pm32/paged: the code runs at CPL 3
    cr4, wp   paged: CR4 (PSE/PGE) and CR0.WP

Guest-physical layout (1 MiB of RAM):
    00000-003FF  real-mode IVT: every vector -> a HLT stub
    00500-00567  32-bit TSS (ESP0 7F00h, SS0 10h, no I/O bitmap)
    00600-0065F  GDT (see GDT_ENTRIES)
    00800-00FFF  IDT: 256 interrupt gates -> 08:1000h+v (HLT), random DPL
    01000-011FF  HLT stubs
    02000, 03000 page directory, first page table (paged)
    04000-07FFF  stacks
    10000-10FFF  the code (CS base 10000h in real, pm16 and v86 modes)
    20000-3FFFF  data, random bytes (DS base in 16-bit modes)
    everything else from 04000h holds HLT (F4), so that a wild jump ends soon (a sled of 00 00
                 would make tier 1 compile a new block every 30 instructions)
"""

from __future__ import annotations

import random

MODES = ("real", "pm16", "pm32", "paged", "v86")
RAM = 1 << 20
CODE_BASE = 0x10000
DATA_BASE = 0x20000
TSS = 0x500
GDT = 0x600
IDT = 0x800
STUBS = 0x1000
PD = 0x2000
PT = 0x3000
ESP0 = 0x7F00

# selectors
SEL_CODE32, SEL_DATA32, SEL_CODE32_R3, SEL_DATA32_R3, SEL_TSS, SEL_CODE16, SEL_DATA16 = (
    0x08, 0x10, 0x1B, 0x23, 0x28, 0x30, 0x38)
GDT_ENTRIES = 12


def descriptor(base: int, limit: int, access: int, flags: int) -> bytes:
    """An 8-byte segment descriptor; `flags` is the high nibble (G, D/B, L, AVL)."""
    v = (limit & 0xFFFF) | ((base & 0xFFFFFF) << 16) | (access << 40) | (((limit >> 16) & 0xF) << 48)
    v |= (flags & 0xF) << 52 | ((base >> 24) & 0xFF) << 56
    return v.to_bytes(8, "little")


def gdt_bytes(rng: random.Random) -> bytes:
    out = bytearray(8)
    out += descriptor(0, 0xFFFFF, 0x9B, 0xC)  # 08 code32 ring 0, flat
    out += descriptor(0, 0xFFFFF, 0x93, 0xC)  # 10 data32 ring 0
    out += descriptor(0, 0xFFFFF, 0xFB, 0xC)  # 18 code32 ring 3
    out += descriptor(0, 0xFFFFF, 0xF3, 0xC)  # 20 data32 ring 3
    out += descriptor(TSS, 0x67, 0x8B, 0x0)  # 28 TSS (busy: TR holds it)
    out += descriptor(CODE_BASE, 0xFFFF, 0x9B, 0x0)  # 30 code16
    out += descriptor(DATA_BASE, 0xFFFF, 0x93, 0x0)  # 38 data16
    for _ in range(GDT_ENTRIES - 8):  # random descriptors, half of them plausible
        if rng.random() < 0.5:
            out += rng.getrandbits(64).to_bytes(8, "little")
        else:
            acc = 0x90 | rng.choice((0x0, 0x2, 0x3, 0x6, 0x8, 0xA, 0xB, 0xE)) | rng.randrange(4) << 5
            out += descriptor(rng.randrange(0, RAM), rng.getrandbits(20), acc, rng.choice((0, 4, 8, 0xC)))
    return bytes(out)


def idt_bytes(rng: random.Random) -> bytes:
    out = bytearray()
    for v in range(256):
        off = STUBS + v
        dpl = 3 if rng.random() < 0.7 else 0
        gate = 0x8E | dpl << 5
        out += ((off & 0xFFFF) | SEL_CODE32 << 16 | gate << 40 | (off >> 16) << 48).to_bytes(8, "little")
    return bytes(out)


def tss_bytes() -> bytes:
    t = bytearray(0x68)
    t[4:8] = ESP0.to_bytes(4, "little")
    t[8:10] = SEL_DATA32.to_bytes(2, "little")
    t[0x66:0x68] = (0x68).to_bytes(2, "little")  # I/O map base past the limit: no bitmap
    return bytes(t)


# ------------------------------------------------------------------------------ encodings
PREFIXES = (0x66, 0x67, 0xF2, 0xF3, 0xF0, 0x26, 0x2E, 0x36, 0x3E, 0x64, 0x65)
SEG_PREFIXES = (0x26, 0x2E, 0x36, 0x3E, 0x64, 0x65)
# one-byte opcodes with a ModRM byte, and how many immediate bytes follow (-1: operand size, -2: group 3)
MODRM_OPS = {op: 0 for op in (
    0x00, 0x01, 0x02, 0x03, 0x08, 0x09, 0x0A, 0x0B, 0x10, 0x11, 0x12, 0x13, 0x18, 0x19, 0x1A, 0x1B,
    0x20, 0x21, 0x22, 0x23, 0x28, 0x29, 0x2A, 0x2B, 0x30, 0x31, 0x32, 0x33, 0x38, 0x39, 0x3A, 0x3B,
    0x62, 0x63, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8B, 0x8C, 0x8D, 0x8E, 0x8F, 0xC4, 0xC5,
    0xD0, 0xD1, 0xD2, 0xD3, 0xFE, 0xFF, 0xD8, 0xD9, 0xDA, 0xDB, 0xDC, 0xDD, 0xDE, 0xDF)}
MODRM_OPS.update({0x80: 1, 0x82: 1, 0x83: 1, 0xC0: 1, 0xC1: 1, 0xC6: 1, 0x6B: 1, 0x81: -1, 0xC7: -1, 0x69: -1,
                  0xF6: -2, 0xF7: -2})
# opcodes without ModRM: immediate bytes (-1: operand size, -3: address size (moffs))
PLAIN_OPS = {op: 0 for op in (
    list(range(0x40, 0x62)) + list(range(0x90, 0xA0)) + list(range(0xA4, 0xB0)) + [
        0x06, 0x07, 0x0E, 0x16, 0x17, 0x1E, 0x1F, 0x27, 0x2F, 0x37, 0x3F, 0xC3, 0xC9, 0xCB, 0xCC, 0xCE,
        0xCF, 0xD6, 0xD7, 0xEC, 0xED, 0xEE, 0xEF, 0xF4, 0xF5, 0xF8, 0xF9, 0xFA, 0xFB, 0xFC, 0xFD, 0x6C,
        0x6D, 0x6E, 0x6F])}
PLAIN_OPS.update({op: 1 for op in [0x04, 0x0C, 0x14, 0x1C, 0x24, 0x2C, 0x34, 0x3C, 0xA8, 0x6A, 0xCD, 0xD4, 0xD5,
                                   0xE4, 0xE5, 0xE6, 0xE7, 0xEB] + list(range(0x70, 0x80)) + list(range(0xB0, 0xB8))
                   + [0xE0, 0xE1, 0xE2, 0xE3]})
PLAIN_OPS.update({op: -1 for op in [0x05, 0x0D, 0x15, 0x1D, 0x25, 0x2D, 0x35, 0x3D, 0xA9, 0x68, 0xE8, 0xE9]
                  + list(range(0xB8, 0xC0))})
PLAIN_OPS.update({0xA0: -3, 0xA1: -3, 0xA2: -3, 0xA3: -3, 0xC2: 2, 0xCA: 2, 0xC8: 3})
# two-byte (0F xx) opcodes with ModRM, immediate bytes
TWO_MODRM = {op: 0 for op in (
    [0x00, 0x01, 0x02, 0x03, 0x20, 0x22, 0xA3, 0xAB, 0xB3, 0xBB, 0xBC, 0xBD, 0xB6, 0xB7, 0xBE, 0xBF, 0xA5, 0xAD,
     0xAF, 0xB0, 0xB1, 0xC0, 0xC1, 0xC7, 0xB2, 0xB4, 0xB5]
    + list(range(0x40, 0x50)) + list(range(0x90, 0xA0)))}
TWO_MODRM.update({0xBA: 1, 0xA4: 1, 0xAC: 1})
TWO_PLAIN = {op: 0 for op in [0x06, 0x31, 0xA2, 0xA0, 0xA1, 0xA8, 0xA9, 0x08, 0x09] + list(range(0xC8, 0xD0))}
TWO_PLAIN.update({op: -1 for op in range(0x80, 0x90)})


def _modrm(rng: random.Random, addr32: bool, reg: int | None = None) -> bytes:
    mod = rng.choice((0, 1, 2, 3, 3))
    rm = rng.randrange(8)
    r = rng.randrange(8) if reg is None else reg
    out = bytearray([mod << 6 | r << 3 | rm])
    if mod == 3:
        return bytes(out)
    if addr32:
        if rm == 4:
            sib = rng.randrange(256)
            out.append(sib)
            if mod == 0 and sib & 7 == 5:
                out += _disp(rng, 4)
        if mod == 0 and rm == 5:
            out += _disp(rng, 4)
        elif mod == 1:
            out += _disp(rng, 1)
        elif mod == 2:
            out += _disp(rng, 4)
    else:
        if mod == 0 and rm == 6:
            out += _disp(rng, 2)
        elif mod == 1:
            out += _disp(rng, 1)
        elif mod == 2:
            out += _disp(rng, 2)
    return bytes(out)


def _disp(rng: random.Random, n: int) -> bytes:
    if n == 1:
        return bytes([rng.randrange(256)])
    if rng.random() < 0.6:  # mostly into the data area
        v = DATA_BASE + rng.randrange(0x20000) if n == 4 else rng.randrange(0x10000)
    else:
        v = rng.getrandbits(8 * n)
    return v.to_bytes(n, "little")


def _imm(rng: random.Random, n: int) -> bytes:
    v = rng.choice((0, 1, 0x7F, 0x80, (1 << 8 * n) - 1, rng.getrandbits(8 * n)))
    return (v & ((1 << 8 * n) - 1)).to_bytes(n, "little")


def instruction(rng: random.Random, bits: int) -> bytes:
    """One instruction drawn from the tables, with random prefixes."""
    pre = bytearray()
    while rng.random() < 0.3:
        pre.append(rng.choice(PREFIXES))
    op32 = (bits == 32) != (0x66 in pre)
    addr32 = (bits == 32) != (0x67 in pre)
    osz = 4 if op32 else 2
    k = rng.random()
    if k < 0.55:
        op = rng.choice(list(MODRM_OPS))
        n = MODRM_OPS[op]
        reg = None
        if n == -2:
            reg = rng.randrange(8)
            n = (1 if op == 0xF6 else osz) if reg < 2 else 0
        elif n == -1:
            n = osz
        return bytes(pre) + bytes([op]) + _modrm(rng, addr32, reg) + _imm(rng, n) if n else \
            bytes(pre) + bytes([op]) + _modrm(rng, addr32, reg)
    if k < 0.85:
        op = rng.choice(list(PLAIN_OPS))
        n = PLAIN_OPS[op]
        if n == -1:
            n = osz
        elif n == -3:
            return bytes(pre) + bytes([op]) + _disp(rng, 4 if addr32 else 2)
        if 0x70 <= op <= 0x7F or op in (0xEB, 0xE0, 0xE1, 0xE2, 0xE3):  # short jumps: mostly near, some back
            return bytes(pre) + bytes([op, rng.choice((rng.randrange(0, 16), (-rng.randrange(1, 40)) & 0xFF))])
        if op in (0xE8, 0xE9):
            return bytes(pre) + bytes([op]) + rng.randrange(0, 32).to_bytes(osz, "little")
        return bytes(pre) + bytes([op]) + _imm(rng, n) if n else bytes(pre) + bytes([op])
    if k < 0.97:
        if rng.random() < 0.7:
            op = rng.choice(list(TWO_MODRM))
            return bytes(pre) + bytes([0x0F, op]) + _modrm(rng, addr32) + _imm(rng, TWO_MODRM[op])
        op = rng.choice(list(TWO_PLAIN))
        if TWO_PLAIN[op] == -1:
            return bytes(pre) + bytes([0x0F, op]) + rng.randrange(0, 32).to_bytes(osz, "little")
        return bytes(pre) + bytes([0x0F, op])
    return bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 6)))  # pure random bytes


def mutate(rng: random.Random, code: bytes) -> bytes:
    """Flip, insert, delete or overwrite a few bytes."""
    b = bytearray(code)
    for _ in range(rng.randrange(1, 4)):
        if not b:
            break
        i = rng.randrange(len(b))
        m = rng.randrange(4)
        if m == 0:
            b[i] ^= 1 << rng.randrange(8)
        elif m == 1:
            b.insert(i, rng.getrandbits(8))
        elif m == 2:
            del b[i]
        else:
            b[i] = rng.getrandbits(8)
    return bytes(b)


def code_bytes(rng: random.Random, bits: int) -> bytes:
    kind = rng.random()
    if kind < 0.08:  # pure random bytes
        return bytes(rng.getrandbits(8) for _ in range(rng.randrange(4, 64)))
    code = b"".join(instruction(rng, bits) for _ in range(rng.randrange(3, 24)))
    if kind < 0.35:
        code = mutate(rng, code)
    return code


def _reg_value(rng: random.Random, bits: int) -> int:
    k = rng.random()
    if k < 0.4:
        return rng.randrange(0x10000) if bits == 16 else DATA_BASE + rng.randrange(0x20000)
    if k < 0.6:
        return rng.choice((0, 1, 0xFFFFFFFF, 0x80000000, 0x7FFFFFFF, 0xFFFF, 0x8000))
    if k < 0.8:
        return rng.randrange(256)
    return rng.getrandbits(32)


def program(seed: int, mode: str) -> dict:
    """Draw one program for `mode` from `seed`."""
    rng = random.Random(seed)
    bits = 16 if mode in ("real", "pm16", "v86") else 32
    regs = [_reg_value(rng, bits) for _ in range(8)]
    regs[4] = (0x6000 + rng.randrange(0, 0x400) * 4) if rng.random() < 0.9 else rng.getrandbits(32)
    eflags = (rng.getrandbits(12) & 0xCD5) | 2 | (0x200 if rng.random() < 0.3 else 0)
    if mode == "v86" and rng.random() < 0.5:
        eflags |= 0x3000  # IOPL 3
    p = {"mode": mode, "seed": seed, "code": code_bytes(rng, bits).hex(), "code_off": rng.randrange(0, 0xE00),
         "regs": regs, "eflags": eflags, "ring3": mode in ("pm32", "paged") and rng.random() < 0.2,
         "cr4": 0, "wp": False}
    if mode == "paged":
        p["cr4"] = (0x10 if rng.random() < 0.5 else 0) | (0x80 if rng.random() < 0.5 else 0)
        p["wp"] = rng.random() < 0.3
    return p
