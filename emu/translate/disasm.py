"""Disassembler text for ``pyemu disasm``: Intel syntax, lower case, close to capstone's output.

The njit decoder (decoder.py) decodes each instruction; the text is formatted here in Python from
the decoder's output fields and the form metadata of opcodes.py. An undecodable byte prints as
``(bad)`` and the walk resumes at the next byte.

The listing (``listing`` / ``disassemble_lines``, used by ``pyemu disasm`` and ``-d in_asm``) walks
the bytes the way capstone does, so that its instruction boundaries agree with capstone's (and with
QEMU's capstone-based ``in_asm``). It departs from the decoder's view of an instruction in three
cases only; what the engine executes (``decoder.decode``) is unchanged:

* Encodings outside the opcode table's scope that the decoder recognises for their length only
  (VEX, EVEX, XOP, 3DNow!: form ``EXT``): the text and length come from capstone (a runtime
  dependency) when capstone decodes them, else they print as a one-byte ``(bad)``. Capstone knows
  the opcodes defined in those maps; for undefined ones it has no length, and neither does the CPU
  (they raise #UD at the first byte that makes them undefined).
* Encodings the decoder rejects (#UD per the SDM, or not in the emulated CPU model: LOCK on a
  non-lockable form, MOV CS, CR1/CR5-CR7, VMX, TSX, ...) print as ``(bad)``. When capstone decodes
  the bytes as one instruction, the ``(bad)`` covers capstone's length (the extent of the encoding
  under the general instruction format: prefixes, opcode, ModRM, SIB, displacement, immediate);
  the decoder stops reading at the byte that makes the encoding invalid, so its consumed length
  (``F_LEN``) is not the encoding's extent. Otherwise ``(bad)`` covers one byte.
* The undocumented x87 register-form aliases DC D0+i (FCOM2), DC D8+i (FCOMP3), DD C8+i (FXCH4),
  DE D0+i (FCOMP5), DF C8+i (FXCH7), DF D0+i (FSTP8) and DF D8+i (FSTP9) are blank cells of the
  SDM's x87 opcode map (Vol. 2 Appendix A.5). Real CPUs execute them, so the decoder accepts them,
  but the listing follows the documented map, as capstone does: a one-byte ``(bad)``.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from emu.translate import decoder as D
from emu.translate import opcodes as O

GPR = {1: ["al", "cl", "dl", "bl", "ah", "ch", "dh", "bh"],
       2: ["ax", "cx", "dx", "bx", "sp", "bp", "si", "di"],
       4: ["eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi"]}
SREG = ["es", "cs", "ss", "ds", "fs", "gs", "?6", "?7"]
PTR = {1: "byte ptr ", 2: "word ptr ", 4: "dword ptr ", 8: "qword ptr ", 10: "xword ptr ",
       16: "xmmword ptr "}

# operations whose printed name depends on the operand size (index 0: 16-bit, 1: 32-bit)
_BY_OPSIZE = {"pusha": ("pusha", "pushal"), "popa": ("popa", "popal"), "pushf": ("pushf", "pushfd"),
              "popf": ("popf", "popfd"), "iret": ("iret", "iretd"), "cbw": ("cbw", "cwde"),
              "cwd": ("cwd", "cdq")}
_STRING = {"movs", "cmps", "stos", "lods", "scas", "ins", "outs"}
_RENAME = {"callf": "lcall", "jmpf": "ljmp"}
_REPE = {"cmps", "scas"}


def disasm_mnemonic(form: int, opsize: int, adsize: int) -> str:
    """The printed mnemonic of a form for the given operand and address size (2 or 4; 1 = byte op)."""
    name = O.FORMS[form].name
    if name in _STRING:
        return name + {1: "b", 2: "w", 4: "d"}[opsize]
    if name in _BY_OPSIZE:
        return _BY_OPSIZE[name][opsize == 4]
    if name == "jcxz":
        return "jecxz" if adsize == 4 else "jcxz"
    return _RENAME.get(name, name)


def _num(v: int) -> str:
    if v < 0:
        return "-" + _num(-v)
    return str(v) if v < 10 else hex(v)


def _mem(out, size: int, seg_text: str) -> str:
    asz = int(out[D.F_ADSIZE])
    names = GPR[asz]
    parts = []
    base, index = int(out[D.F_BASE]), int(out[D.F_INDEX])
    if base >= 0:
        parts.append(names[base])
    if index >= 0:
        scale = 1 << int(out[D.F_SCALE])
        parts.append(names[index] + (f"*{scale}" if scale > 1 else ""))
    disp = int(out[D.F_DISP])
    inner = " + ".join(parts)
    if not parts:
        inner = _num(disp & (0xFFFF if asz == 2 else 0xFFFFFFFF))
    elif disp:
        inner += f" - {_num(-disp)}" if disp < 0 else f" + {_num(disp)}"
    return f"{PTR.get(size, '')}{seg_text}[{inner}]"


def format_operands(out, addr_next: int) -> str:
    """Operand text of a decoded instruction (``out`` from decoder.decode)."""
    form = O.FORMS[int(out[D.F_FORM])]
    seg = int(out[D.F_SEG])
    seg_text = SREG[seg] + ":" if seg >= 0 else ""
    asz = int(out[D.F_ADSIZE])
    res = []
    for i in range(int(out[D.F_NOPS])):
        k = int(out[D.F_OPK + 3 * i])
        sz = int(out[D.F_OPSZ + 3 * i])
        reg = int(out[D.F_OPREG + 3 * i])
        am, _, msz, _ = form.ops[i]
        if k == D.OPK_REG:
            res.append(GPR.get(sz, GPR[4])[reg])
        elif k == D.OPK_MEM:
            if am == O.AM_X:
                res.append(f"{PTR.get(sz, '')}{seg_text}[{GPR[asz][6]}]")
            elif am == O.AM_Y:
                res.append(f"{PTR.get(sz, '')}es:[{GPR[asz][7]}]")
            elif am == O.AM_O:
                res.append(f"{PTR.get(sz, '')}{seg_text}[{_num(int(out[D.F_DISP]))}]")
            elif msz == O.SZ_P:
                res.append("ptr " + _mem(out, 0, seg_text))
            elif msz in (0, 6):
                res.append(_mem(out, 0, seg_text))
            else:
                res.append(_mem(out, sz, seg_text))
        elif k == D.OPK_IMM:
            v = int(out[D.F_IMM] if i == 0 or form.ops[0][0] not in (O.AM_I, O.AM_IS) else out[D.F_IMM2])
            res.append(_num(v))
        elif k == D.OPK_REL:
            mask = 0xFFFF if int(out[D.F_OPSIZE]) == 2 else 0xFFFFFFFF
            res.append(_num((addr_next + int(out[D.F_IMM])) & mask))
        elif k == D.OPK_FAR:
            res.append(f"{_num(int(out[D.F_IMM2]))}, {_num(int(out[D.F_IMM]))}")
        elif k == D.OPK_SREG:
            res.append(SREG[reg])
        elif k == D.OPK_CREG:
            res.append(f"cr{reg}")
        elif k == D.OPK_DREG:
            res.append(f"dr{reg}")
        elif k == D.OPK_ST:
            res.append(f"st({reg})")
        elif k == D.OPK_MMX:
            res.append(f"mm{reg}")
        elif k == D.OPK_XMM:
            res.append(f"xmm{reg}")
        elif k == D.OPK_CONST1:
            res.append("1")
    return ", ".join(res)


def instruction_text(out, addr_next: int) -> str:
    """``mnemonic operands`` of a decoded instruction, with lock/rep prefixes as capstone prints them."""
    f = int(out[D.F_FORM])
    form = O.FORMS[f]
    if form.flags & O.EXT:
        return f"({form.name})"
    name = disasm_mnemonic(f, int(out[D.F_OPSIZE]), int(out[D.F_ADSIZE]))
    pfx = ""
    if out[D.F_LOCK]:
        pfx = "lock "
    rep = int(out[D.F_REP])
    if rep and form.name in _STRING:
        if form.name in _REPE:
            pfx += "repe " if rep == 0xF3 else "repne "
        elif rep == 0xF3:
            pfx += "rep "
    ops = format_operands(out, addr_next)
    return f"{pfx}{name} {ops}" if ops else pfx + name


def decode_all(code: bytes, bits: int, org: int = 0) -> Iterator[tuple[int, int, np.ndarray | None]]:
    """Walk ``code`` linearly: yields (offset, length, out or None for an undecodable byte)."""
    buf = np.frombuffer(bytes(code), np.uint8)
    end = len(buf)
    out = np.zeros(D.OUT_SIZE, np.int64)
    pos = 0
    bits32 = bits == 32
    decode = D.decode
    while pos < end:
        n = decode(buf, pos, end, bits32, out)
        if n > 0:
            yield pos, n, out
            pos += n
        else:
            yield pos, 1, None
            pos += 1


# Undocumented x87 aliases (blank in the SDM x87 opcode map) that capstone rejects: see the docstring.
_X87_ALIAS_SPECS = ("DC D0+i", "DC D8+i", "DD C8+i", "DE D0+i", "DF C8+i", "DF D0+i", "DF D8+i")
X87_ALIAS_FORMS = frozenset(f.index for f in O.FORMS if f.spec in _X87_ALIAS_SPECS)
_CS: dict[int, object] = {}


def _capstone_insn(code: bytes, pos: int, bits: int, org: int):
    """capstone's decoding of the instruction at ``code[pos]`` (None if it rejects the bytes)."""
    md = _CS.get(bits)
    if md is None:
        import capstone

        md = _CS[bits] = capstone.Cs(capstone.CS_ARCH_X86,
                                     capstone.CS_MODE_32 if bits == 32 else capstone.CS_MODE_16)
    return next(md.disasm(code[pos:pos + 15], org + pos, 1), None)


def listing(code: bytes, bits: int = 32, org: int = 0) -> Iterator[tuple[int, int, str]]:
    """Walk ``code`` as ``pyemu disasm`` lists it: yields (offset, length, text), see the docstring."""
    buf = np.frombuffer(bytes(code), np.uint8)
    end = len(buf)
    out = np.zeros(D.OUT_SIZE, np.int64)
    pos = 0
    bits32 = bits == 32
    decode = D.decode
    while pos < end:
        n = decode(buf, pos, end, bits32, out)
        text = "(bad)"
        if n > 0:
            form = int(out[D.F_FORM])
            if O.FORMS[form].flags & O.EXT:
                ins = _capstone_insn(code, pos, bits, org)
                n = ins.size if ins is not None else 1
                if ins is not None:
                    text = f"{ins.mnemonic} {ins.op_str}" if ins.op_str else ins.mnemonic
            elif form in X87_ALIAS_FORMS:
                n = 1
            else:
                text = instruction_text(out, org + pos + n)
        elif n == D.DEC_INVALID:
            ins = _capstone_insn(code, pos, bits, org)
            n = ins.size if ins is not None else 1
        else:
            n = 1
        yield pos, n, text
        pos += n


def disassemble_lines(code: bytes, bits: int = 32, org: int = 0) -> Iterator[str]:
    """One line per instruction: ``ADDR: BYTES  MNEMONIC OPERANDS`` (pyemu disasm)."""
    width = 8 if bits == 32 else 4
    for pos, n, text in listing(code, bits, org):
        raw = code[pos:pos + n].hex(" ")
        yield f"{org + pos:0{width}x}: {raw:<20}  {text}"


# A real-mode sample: print "Hello" through INT 10h teletype, read a key (INT 16h), echo it, halt.
_SAMPLE16 = bytes.fromhex(
    "0e"            # push cs
    "1f"            # pop ds
    "be 1e 01"      # mov si, msg (org 0x100: msg at 0x11e)
    "b4 0e"         # mov ah, 0x0e           ; teletype output
    "ac"            # next: lodsb
    "84 c0"         # test al, al
    "74 04"         # jz key
    "cd 10"         # int 0x10
    "eb f7"         # jmp next
    "31 c0"         # key: xor ax, ax
    "cd 16"         # int 0x16               ; wait for a key -> al
    "b4 0e"         # mov ah, 0x0e
    "cd 10"         # int 0x10               ; echo it
    "fa"            # cli
    "f4"            # hlt
    "eb fd"         # jmp $-1
    "90 90"         # padding
    "48 65 6c 6c 6f 0d 0a 00"  # msg: "Hello\r\n", 0 (decodes as data)
)
# A 32-bit sample: sum the bytes of a buffer (cdecl: sum(buf, len)), then a few SSE2/x87 forms.
_SAMPLE32 = bytes.fromhex(
    "55 89e5 8b4d08 8b550c 31c0 85d2 7409 0fb619 01d8 41 4a 75f7 5d c3"
    "660fefc0 f20f5805 00100000 d9ee dec1 f3a4 f00fb10a cd80"
)


def sample_code(bits: int) -> bytes:
    """The built-in sample program for ``pyemu disasm --sample`` (see the comments above)."""
    return _SAMPLE32 if bits == 32 else _SAMPLE16
