"""The x86 instruction decoder (16- and 32-bit code), compiled with numba, driven by opcodes.TABLE.

``decode(code, pos, end, bits32, out) -> int`` decodes the instruction at ``code[pos]`` without
reading at or beyond ``end`` (guest bytes are hostile input and numba does not bounds-check). It
returns the length (> 0), ``DEC_INVALID`` (undefined or #UD encoding; ``out[F_LEN]`` still holds
the bytes consumed) or ``DEC_TRUNCATED`` (the instruction needs bytes at or beyond ``end``). The
maximum length is 15 bytes; a longer instruction is invalid (SDM Vol. 2 ch. 2.3.11 says #GP; we
treat it as invalid). Encoding: SDM Vol. 2 ch. 2.1 (prefixes, opcode, ModRM, SIB, displacement,
immediate), Table 2-1 (16-bit ModRM), Tables 2-2/2-3 (32-bit ModRM and SIB), ch. 3.1.1.3 / 2.3
(VEX), ch. 2.7 (EVEX); opcode maps in Appendix A.

Fields of ``out`` (an int64 array of ``OUT_SIZE``):

==============  ====================================================================================
F_LEN           instruction length in bytes (or bytes consumed when invalid)
F_FORM          row of opcodes.FORMS (FORM_BAD when invalid; FORM_VEX/EVEX/XOP/3DNOW: unsupported
                extension, length known, the engine raises #UD)
F_MNEM          operation id: index into opcodes.MNEMONICS (one id per distinct operation)
F_OPSIZE        effective operand size in bytes: 2 or 4 (1 for byte forms)
F_ADSIZE        effective address size: 2 or 4
F_SEG           segment override prefix: -1 none, else 0..5 = ES, CS, SS, DS, FS, GS (last one wins)
F_DEFSEG        default segment of the ModRM memory operand: SS (2) if the base is BP/EBP/ESP, else DS (3)
F_REP           0, 0xF2 or 0xF3 (last one wins; 0 when it was consumed as a mandatory SSE prefix)
F_LOCK          1 if a LOCK prefix is present (only valid forms are returned)
F_OPCODE        map * 256 + opcode byte (map 0 one-byte, 1 = 0F, 2 = 0F 38, 3 = 0F 3A)
F_MODRM         the ModRM byte, -1 if none; F_MOD, F_REG, F_RM its fields (-1 if none)
F_BASE          base register 0..7 of the memory operand, -1 if none (16-bit: BX=3, BP=5, SI=6, DI=7)
F_INDEX         index register 0..7, -1 if none; F_SCALE: 0..3 (shift count)
F_DISP          displacement (sign-extended), or the moffs of A0-A3
F_IMM           first immediate: Ib/Iw/Iz zero-extended, Ibs sign-extended, Jb/Jz sign-extended, the
                offset of a far pointer Ap, the imm8 suffix of 3DNow!
F_IMM2          second immediate: ENTER's Ib, the selector of Ap
F_PFX66         1 if an operand-size prefix is present (even when it is a mandatory prefix)
F_PFX67         1 if an address-size prefix is present
F_FLAGS         opcodes form flags (LOCKABLE, MODIGN, EXT, F_HASMODRM, F_BYTEOP, ...)
F_NOPS          number of operands; then per operand i (0..3): F_OPK + 3*i = kind (OPK_*),
                F_OPSZ + 3*i = size in bytes, F_OPREG + 3*i = register number (-1 for memory /
                immediates; fixed registers like AL/eAX/DX/CL included; for OPK_SREG 0..5)
==============  ====================================================================================
"""

from __future__ import annotations

import numpy as np
from numba import njit

from emu.translate import opcodes as _op

DEC_INVALID = -1
DEC_TRUNCATED = -2

F_LEN, F_FORM, F_MNEM, F_OPSIZE, F_ADSIZE, F_SEG, F_DEFSEG, F_REP, F_LOCK, F_OPCODE = range(10)
F_MODRM, F_MOD, F_REG, F_RM, F_BASE, F_INDEX, F_SCALE, F_DISP, F_IMM, F_IMM2 = range(10, 20)
F_PFX66, F_PFX67, F_FLAGS, F_NOPS = range(20, 24)
F_OPK, F_OPSZ, F_OPREG = 24, 25, 26
OUT_SIZE = 24 + 3 * 4

OPK_NONE, OPK_REG, OPK_MEM, OPK_IMM, OPK_REL, OPK_FAR, OPK_SREG, OPK_CREG = range(8)
OPK_DREG, OPK_ST, OPK_MMX, OPK_XMM, OPK_CONST1 = range(8, 13)

SEG_ES, SEG_CS, SEG_SS, SEG_DS, SEG_FS, SEG_GS = range(6)

FORMS = _op.FORMS
MNEMONICS = _op.MNEMONICS
FORM_BAD, FORM_VEX, FORM_EVEX, FORM_XOP, FORM_3DNOW = (_op.FORM_BAD, _op.FORM_VEX, _op.FORM_EVEX,
                                                      _op.FORM_XOP, _op.FORM_3DNOW)

_T = _op._T
OP_KIND = _T["op_kind"]
OP_VAL = _T["op_val"]
GRP = _T["grp"]
GRP_MODRM = _T["grp_modrm"]
GRP_PFX = _T["grp_pfx"]
FORM_MNEM = _T["form_mnem"]
FORM_FLAGS = _T["form_flags"]
FORM_NOPS = _T["form_nops"]
FORM_AM = _T["form_am"]
FORM_RSZ = _T["form_rsz"]
FORM_MSZ = _T["form_msz"]
FORM_FIX = _T["form_fix"]

# segment prefix byte -> segment number, -1 if not a segment prefix
_SEGPFX = np.full(256, -1, np.int64)
for _b, _s in ((0x26, 0), (0x2E, 1), (0x36, 2), (0x3E, 3), (0x64, 4), (0x65, 5)):
    _SEGPFX[_b] = _s
# 16-bit ModRM r/m -> base, index (SDM Table 2-1)
_B16 = np.array([3, 3, 5, 5, 6, 7, 5, 3], np.int64)
_I16 = np.array([6, 7, 6, 7, -1, -1, -1, -1], np.int64)
# VEX/EVEX map 1 opcodes with an imm8
_VEX_IMM1 = np.zeros(256, np.int64)
for _b in (0x70, 0x71, 0x72, 0x73, 0xC2, 0xC4, 0xC5, 0xC6):
    _VEX_IMM1[_b] = 1

# valid 3DNow! suffix bytes (AMD APM vol. 5, table "3DNow! opcodes"); other suffixes are undefined
_3DNOW_OK = np.zeros(256, np.int64)
for _b in (0x0C, 0x0D, 0x1C, 0x1D, 0x8A, 0x8E, 0x90, 0x94, 0x96, 0x97, 0x9A, 0x9E, 0xA0, 0xA4, 0xA6, 0xA7,
           0xAA, 0xAE, 0xB0, 0xB4, 0xB6, 0xB7, 0xBB, 0xBF):
    _3DNOW_OK[_b] = 1

_LOCKABLE = _op.LOCKABLE
_MODIGN = _op.MODIGN
_HASMODRM = _op.F_HASMODRM
_BYTEOP = _op.F_BYTEOP
_MAND66 = _op.F_MAND66
_MANDREP = _op.F_MANDREP
_SZ_V, _SZ_P, _SZ_A = _op.SZ_V, _op.SZ_P, _op.SZ_A
AM = _op  # the AM_* constants


@njit(cache=True)
def _check(p, n, pos, end):
    """0 if code[p:p+n] may be read; DEC_INVALID past 15 bytes; DEC_TRUNCATED past end."""
    if p + n - pos > 15:
        return DEC_INVALID
    if p + n > end:
        return DEC_TRUNCATED
    return 0


@njit(cache=True)
def _read(code, p, n):
    v = 0
    for i in range(n):
        v |= np.int64(code[p + i]) << (8 * i)
    return v


@njit(cache=True)
def _sext(v, n):
    bits = 8 * n
    if v >= (np.int64(1) << (bits - 1)):
        v -= np.int64(1) << bits
    return v


@njit(cache=True)
def _modrm_mem(code, p, pos, end, asz, out):
    """Decode SIB and displacement after the ModRM byte (at p-1). Returns new p or an error < 0."""
    mod = out[F_MOD]
    rm = out[F_RM]
    out[F_DEFSEG] = SEG_DS
    if asz == 2:
        if mod == 0 and rm == 6:
            r = _check(p, 2, pos, end)
            if r:
                return r
            out[F_DISP] = _sext(_read(code, p, 2), 2)
            return p + 2
        out[F_BASE] = _B16[rm]
        out[F_INDEX] = _I16[rm]
        if _B16[rm] == 5:
            out[F_DEFSEG] = SEG_SS
        n = 1 if mod == 1 else (2 if mod == 2 else 0)
        if n:
            r = _check(p, n, pos, end)
            if r:
                return r
            out[F_DISP] = _sext(_read(code, p, n), n)
        return p + n
    base = rm
    if rm == 4:
        r = _check(p, 1, pos, end)
        if r:
            return r
        sib = np.int64(code[p])
        p += 1
        out[F_SCALE] = sib >> 6
        idx = (sib >> 3) & 7
        if idx != 4:
            out[F_INDEX] = idx
        base = sib & 7
    n = 1 if mod == 1 else (4 if mod == 2 else 0)
    if mod == 0 and base == 5:
        base = -1
        n = 4
    out[F_BASE] = base
    if base == 4 or base == 5:
        out[F_DEFSEG] = SEG_SS
    if n:
        r = _check(p, n, pos, end)
        if r:
            return r
        out[F_DISP] = _sext(_read(code, p, n), n)
    return p + n


@njit(cache=True)
def _finish_bad(out, p, pos, r):
    out[F_LEN] = p - pos
    out[F_FORM] = FORM_BAD
    out[F_MNEM] = FORM_MNEM[FORM_BAD]
    if r == DEC_INVALID and out[F_LEN] == 0:
        out[F_LEN] = 1
    return r


@njit(cache=True)
def _decode_ext(code, p, pos, end, b, asz, out):
    """VEX (C4/C5), EVEX (62), XOP (8F): length only. p points after the first byte."""
    b1 = np.int64(code[p])
    if b == 0xC5:
        nbytes = 1
        vmap = 1
        form = FORM_VEX
    elif b == 0xC4:
        nbytes = 2
        vmap = b1 & 0x1F
        form = FORM_VEX
        if vmap < 1 or vmap > 3:
            return _finish_bad(out, p, pos, DEC_INVALID)
    elif b == 0x62:
        nbytes = 3
        vmap = b1 & 7
        form = FORM_EVEX
        if vmap < 1 or vmap > 3 or (b1 & 8) != 0:
            return _finish_bad(out, p, pos, DEC_INVALID)
    else:
        nbytes = 2
        vmap = b1 & 0x1F
        form = FORM_XOP
        if vmap > 10:
            return _finish_bad(out, p, pos, DEC_INVALID)
    r = _check(p, nbytes + 1, pos, end)
    if r:
        return _finish_bad(out, p, pos, r)
    if b == 0x62 and (code[p + 1] & 4) == 0:
        return _finish_bad(out, p, pos, DEC_INVALID)
    p += nbytes
    opc = np.int64(code[p])
    p += 1
    out[F_OPCODE] = vmap * 256 + opc
    if not (form == FORM_VEX and vmap == 1 and opc == 0x77):
        r = _check(p, 1, pos, end)
        if r:
            return _finish_bad(out, p, pos, r)
        modrm = np.int64(code[p])
        p += 1
        out[F_MODRM] = modrm
        out[F_MOD] = modrm >> 6
        out[F_REG] = (modrm >> 3) & 7
        out[F_RM] = modrm & 7
        if modrm >> 6 != 3:
            p = _modrm_mem(code, p, pos, end, asz, out)
            if p < 0:
                return _finish_bad(out, pos, pos, p)
    nimm = 0
    if form == FORM_XOP:
        nimm = 1 if vmap == 8 else (4 if vmap == 10 else 0)
    elif vmap == 3 or (vmap == 1 and _VEX_IMM1[opc]):
        nimm = 1
    if nimm:
        r = _check(p, nimm, pos, end)
        if r:
            return _finish_bad(out, p, pos, r)
        out[F_IMM] = _read(code, p, nimm)
        p += nimm
    out[F_FORM] = form
    out[F_MNEM] = FORM_MNEM[form]
    out[F_FLAGS] = FORM_FLAGS[form]
    out[F_LEN] = p - pos
    return p - pos


@njit(cache=True)
def decode(code, pos, end, bits32, out):
    """Decode one instruction at code[pos:end]; see the module docstring for the result."""
    for i in range(OUT_SIZE):
        out[i] = 0
    out[F_SEG] = -1
    out[F_DEFSEG] = SEG_DS
    out[F_MODRM] = -1
    out[F_MOD] = -1
    out[F_REG] = -1
    out[F_RM] = -1
    out[F_BASE] = -1
    out[F_INDEX] = -1
    for i in range(4):
        out[F_OPREG + 3 * i] = -1
    p = pos
    pfx66 = 0
    pfx67 = 0
    rep = 0
    lock = 0
    seg = -1
    # legacy prefixes (SDM Vol. 2 ch. 2.1.1)
    while True:
        r = _check(p, 1, pos, end)
        if r:
            return _finish_bad(out, p, pos, r)
        b = np.int64(code[p])
        if b == 0x66:
            pfx66 = 1
        elif b == 0x67:
            pfx67 = 1
        elif b == 0xF0:
            lock = 1
        elif b == 0xF2 or b == 0xF3:
            rep = b
        elif _SEGPFX[b] >= 0:
            seg = _SEGPFX[b]
        else:
            break
        p += 1
    p += 1
    out[F_SEG] = seg
    out[F_LOCK] = lock
    out[F_PFX66] = pfx66
    out[F_PFX67] = pfx67
    out[F_REP] = rep
    dsz = 4 if bits32 else 2
    asz = (6 - dsz) if pfx67 else dsz
    out[F_ADSIZE] = asz
    out[F_OPSIZE] = (6 - dsz) if pfx66 else dsz
    mp = 0
    if b == 0x0F:
        r = _check(p, 1, pos, end)
        if r:
            return _finish_bad(out, p, pos, r)
        b = np.int64(code[p])
        p += 1
        mp = 1
        if b == 0x38 or b == 0x3A:
            r = _check(p, 1, pos, end)
            if r:
                return _finish_bad(out, p, pos, r)
            mp = 2 if b == 0x38 else 3
            b = np.int64(code[p])
            p += 1
        elif b == 0x0F:  # 3DNow!: 0F 0F ModRM [SIB] [disp] imm8 (AMD APM vol. 3)
            r = _check(p, 1, pos, end)
            if r:
                return _finish_bad(out, p, pos, r)
            modrm = np.int64(code[p])
            p += 1
            out[F_MODRM] = modrm
            out[F_MOD] = modrm >> 6
            out[F_REG] = (modrm >> 3) & 7
            out[F_RM] = modrm & 7
            if modrm >> 6 != 3:
                p2 = _modrm_mem(code, p, pos, end, asz, out)
                if p2 < 0:
                    return _finish_bad(out, p, pos, p2)
                p = p2
            r = _check(p, 1, pos, end)
            if r:
                return _finish_bad(out, p, pos, r)
            out[F_IMM] = code[p]
            p += 1
            out[F_OPCODE] = 0x10F
            if not _3DNOW_OK[code[p - 1]]:
                return _finish_bad(out, p, pos, DEC_INVALID)
            out[F_FORM] = FORM_3DNOW
            out[F_MNEM] = FORM_MNEM[FORM_3DNOW]
            out[F_FLAGS] = FORM_FLAGS[FORM_3DNOW]
            out[F_LEN] = p - pos
            return p - pos
    elif b == 0xC4 or b == 0xC5 or b == 0x62 or b == 0x8F:
        r = _check(p, 1, pos, end)
        if r:
            return _finish_bad(out, p, pos, r)
        b1 = code[p]
        if (b != 0x8F and (b1 & 0xC0) == 0xC0) or (b == 0x8F and (b1 & 0x1F) >= 8):
            if pfx66 or rep or lock:  # 66/F2/F3/LOCK before VEX/EVEX/XOP: #UD (SDM Vol. 2 2.3.2)
                return _finish_bad(out, p, pos, DEC_INVALID)
            return _decode_ext(code, p, pos, end, b, asz, out)
    key = mp * 256 + b
    out[F_OPCODE] = key
    kind = OP_KIND[key]
    if kind == 0:
        return _finish_bad(out, p, pos, DEC_INVALID)
    has_modrm = False
    mod = 0
    if kind == 1:
        form = OP_VAL[key]
    else:
        g = OP_VAL[key]
        col = 0
        if GRP_PFX[g]:
            if rep == 0xF3:
                col = 2
            elif rep == 0xF2:
                col = 3
            elif pfx66:
                col = 1
        idx = col * 128
        if GRP_MODRM[g]:
            r = _check(p, 1, pos, end)
            if r:
                return _finish_bad(out, p, pos, r)
            modrm = np.int64(code[p])
            p += 1
            has_modrm = True
            mod = modrm >> 6
            out[F_MODRM] = modrm
            out[F_MOD] = mod
            out[F_REG] = (modrm >> 3) & 7
            out[F_RM] = modrm & 7
            idx += (64 if mod == 3 else 0) + (modrm & 0x3F)
        form = np.int64(GRP[g, idx])
        if form < 0:
            return _finish_bad(out, p, pos, DEC_INVALID)
    flags = FORM_FLAGS[form]
    out[F_FORM] = form
    out[F_MNEM] = FORM_MNEM[form]
    out[F_FLAGS] = flags
    if flags & _MODIGN:
        mod = 3
        out[F_MOD] = 3
    if flags & _MAND66:
        out[F_OPSIZE] = dsz
    if flags & _MANDREP:
        out[F_REP] = 0
    osz = out[F_OPSIZE]
    if has_modrm and mod != 3:
        p2 = _modrm_mem(code, p, pos, end, asz, out)
        if p2 < 0:
            return _finish_bad(out, p, pos, p2)
        p = p2
    # operands and immediates, in encoding order
    nops = FORM_NOPS[form]
    out[F_NOPS] = nops
    nimm = 0
    for i in range(nops):
        am = FORM_AM[form, i]
        rsz = FORM_RSZ[form, i]
        msz = FORM_MSZ[form, i]
        if rsz == _SZ_V:
            rsz = osz
        if msz == _SZ_V:
            msz = osz
        elif msz == _SZ_P:
            msz = osz + 2
        elif msz == _SZ_A:
            msz = 2 * osz
        k = OPK_NONE
        sz = rsz
        reg = -1
        if am == AM.AM_E or am == AM.AM_M or am == AM.AM_R:
            if mod == 3:
                k = OPK_REG
                reg = out[F_RM]
            else:
                k = OPK_MEM
                sz = msz
        elif am == AM.AM_G:
            k = OPK_REG
            reg = out[F_REG]
        elif am == AM.AM_FIX:
            k = OPK_REG
            reg = FORM_FIX[form, i]
        elif am == AM.AM_Z:
            k = OPK_REG
            reg = b & 7
        elif am == AM.AM_X or am == AM.AM_Y:
            k = OPK_MEM
            sz = msz
        elif am == AM.AM_S:
            k = OPK_SREG
            reg = out[F_REG]
        elif am == AM.AM_SEG:
            k = OPK_SREG
            reg = FORM_FIX[form, i]
        elif am == AM.AM_C:
            k = OPK_CREG
            reg = out[F_REG]
        elif am == AM.AM_D:
            k = OPK_DREG
            reg = out[F_REG]
        elif am == AM.AM_ONE:
            k = OPK_CONST1
        elif am == AM.AM_ST0:
            k = OPK_ST
            reg = 0
        elif am == AM.AM_STI:
            k = OPK_ST
            reg = out[F_RM]
        elif am == AM.AM_P:
            k = OPK_MMX
            reg = out[F_REG]
        elif am == AM.AM_N:
            k = OPK_MMX
            reg = out[F_RM]
        elif am == AM.AM_Q:
            if mod == 3:
                k = OPK_MMX
                reg = out[F_RM]
            else:
                k = OPK_MEM
                sz = msz
        elif am == AM.AM_V:
            k = OPK_XMM
            reg = out[F_REG]
        elif am == AM.AM_U:
            k = OPK_XMM
            reg = out[F_RM]
        elif am == AM.AM_W:
            if mod == 3:
                k = OPK_XMM
                reg = out[F_RM]
            else:
                k = OPK_MEM
                sz = msz
        elif am == AM.AM_XMM0:
            k = OPK_XMM
            reg = 0
        elif am == AM.AM_I or am == AM.AM_IS or am == AM.AM_J:
            n = rsz
            k = OPK_IMM if am != AM.AM_J else OPK_REL
            r = _check(p, n, pos, end)
            if r:
                return _finish_bad(out, p, pos, r)
            v = _read(code, p, n)
            p += n
            if am != AM.AM_I:
                v = _sext(v, n)
            if am == AM.AM_IS:
                sz = osz
            if nimm == 0:
                out[F_IMM] = v
            else:
                out[F_IMM2] = v
            nimm += 1
        elif am == AM.AM_O:
            k = OPK_MEM
            sz = msz
            r = _check(p, asz, pos, end)
            if r:
                return _finish_bad(out, p, pos, r)
            out[F_DISP] = _read(code, p, asz)
            p += asz
        elif am == AM.AM_A:
            k = OPK_FAR
            sz = osz + 2
            r = _check(p, osz + 2, pos, end)
            if r:
                return _finish_bad(out, p, pos, r)
            out[F_IMM] = _read(code, p, osz)
            out[F_IMM2] = _read(code, p + osz, 2)
            p += osz + 2
        out[F_OPK + 3 * i] = k
        out[F_OPSZ + 3 * i] = sz
        out[F_OPREG + 3 * i] = reg
    if flags & _BYTEOP:
        out[F_OPSIZE] = 1
    out[F_LEN] = p - pos
    if lock and not ((flags & _LOCKABLE) and has_modrm and mod != 3):
        out[F_FORM] = FORM_BAD
        out[F_MNEM] = FORM_MNEM[FORM_BAD]
        return DEC_INVALID
    return p - pos


def decode_bytes(data: bytes, bits: int = 32, pos: int = 0):
    """Convenience for Python callers and tests: (result, out array) for one instruction."""
    code = np.frombuffer(bytes(data), np.uint8)
    out = np.zeros(OUT_SIZE, np.int64)
    r = decode(code, pos, len(code), bits == 32, out)
    return r, out
