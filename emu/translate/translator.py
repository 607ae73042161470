"""Guest code → translation blocks: decode instructions and write interpreter rows.

Two halves:
- at import, Python walks the decoder's form table once and gives every form a handler number and
  an auxiliary operation number (`FORM_H`, `FORM_AUX`): a row with a semantic column runs its
  scalar function through H_SCALAR (aux = the function's number), straight from the table; the
  older families are still picked here by mnemonic;
- `translate_block`, compiled, decodes from guest memory with the compiled decoder and fills the
  rows of one block, so a block-cache miss never leaves compiled code.

A block ends after an instruction that transfers control or may change the mode bits the block
was translated for, after MAX_BLOCK_INSNS instructions, or at the end of its page (an instruction
that straddles two pages is kept, and the block is linked to both pages for invalidation).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from emu.cpu import fpuops as FP
from emu.cpu import handlers as H
from emu.cpu import sysops as SY
from emu.cpu.semantics import by_name as semantics_by_name
from emu.translate import decoder as D
from emu.translate import opcodes as O
from emu.translate.blockcache import (
    BC_MAXROWS,
    BC_NROWS,
    BC_NTBS,
    TB_BYTES,
    TB_CSBASE,
    TB_EIP,
    TB_EXECS,
    TB_FN,
    TB_FN_NONE,
    TB_HFLAGS,
    TB_NEXT0,
    TB_NEXT1,
    TB_NROWS,
    TB_PAGE0,
    TB_PAGE1,
    TB_PHYS,
    TB_ROW,
    TB_WIDTH,
    link_page,
)
from emu.translate.rowfmt import (
    R_ASIZE,
    R_AUX,
    R_BASE,
    R_DISP,
    R_DST,
    R_H,
    R_IMM,
    R_IMM2,
    R_INDEX,
    R_LEN,
    R_OFF,
    R_SCALE,
    R_SEG,
    R_SIZE,
    R_SRC,
    R_X,
    RM_MEM,
    RM_NONE,
    ROW_WIDTH,
    X_LOCK,
    X_MEM,
    X_REP,
    X_REPNE,
    X_SEGOVR,
    X_SIZE2_SHIFT,
)

MAX_BLOCK_INSNS = 32
SEG_DS = 3
SEG_ES = 0
PSEUDO_DESCRIPTOR_SIZE = 6  # the m16&32 operand of LGDT/LIDT/SGDT/SIDT

# Handlers after which a block ends: control transfers and anything that may change the mode.
_ENDS_BLOCK = {H.H_UD, H.H_JCC, H.H_JMP_REL, H.H_CALL_REL, H.H_JMP_IND, H.H_CALL_IND, H.H_RET,
               H.H_JMP_FAR, H.H_CALL_FAR, H.H_RET_FAR, H.H_IRET, H.H_LOOP, H.H_INT, H.H_HLT,
               H.H_POPF, H.H_FLAGOP, H.H_SYS, H.H_UNIMPL, H.H_FAULT_GP, H.H_MOV_TO_SREG,
               H.H_POP_SREG, H.H_LXS, H.H_IN, H.H_OUT, H.H_BOUND, H.H_CPUID}

_ALU = {n: i for i, n in enumerate(("add", "or", "adc", "sbb", "and", "sub", "xor", "cmp"))}
_SHIFT = {n: i for i, n in enumerate(("rol", "ror", "rcl", "rcr", "shl", "shr", "sal", "sar"))}
_CC = {n: i for i, n in enumerate(("o", "no", "b", "ae", "e", "ne", "be", "a", "s", "ns", "p", "np",
                                   "l", "ge", "le", "g"))}
_SIMPLE = {
    "nop": (H.H_NOP, 0), "pause": (H.H_NOP, 0), "prefetch": (H.H_NOP, 0), "prefetchw": (H.H_NOP, 0),
    "prefetchnta": (H.H_NOP, 0), "prefetcht0": (H.H_NOP, 0), "prefetcht1": (H.H_NOP, 0),
    "prefetcht2": (H.H_NOP, 0), "lea": (H.H_LEA, 0), "xchg": (H.H_XCHG, 0),
    "inc": (H.H_UNARY, 0), "dec": (H.H_UNARY, 1), "not": (H.H_UNARY, 2), "neg": (H.H_UNARY, 3),
    "mul": (H.H_MULDIV, 4), "div": (H.H_MULDIV, 6), "idiv": (H.H_MULDIV, 7),
    "shld": (H.H_SHXD, 0), "shrd": (H.H_SHXD, 1), "movzx": (H.H_MOVX, 0), "movsx": (H.H_MOVX, 1),
    "pusha": (H.H_PUSHA, 0), "popa": (H.H_POPA, 0), "pushf": (H.H_PUSHF, 0), "popf": (H.H_POPF, 0),
    "les": (H.H_LXS, 0), "lds": (H.H_LXS, 3), "lss": (H.H_LXS, 2), "lfs": (H.H_LXS, 4),
    "lgs": (H.H_LXS, 5), "jmp": (H.H_JMP_REL, 0), "call": (H.H_CALL_REL, 0), "ret": (H.H_RET, 0),
    "jmpf": (H.H_JMP_FAR, 0), "callf": (H.H_CALL_FAR, 0), "retf": (H.H_RET_FAR, 0),
    "iret": (H.H_IRET, 0), "loopne": (H.H_LOOP, 0), "loope": (H.H_LOOP, 1), "loop": (H.H_LOOP, 2),
    "jcxz": (H.H_LOOP, 3), "int": (H.H_INT, 0), "int3": (H.H_INT, 1), "into": (H.H_INT, 2),
    "int1": (H.H_INT, 3), "bound": (H.H_BOUND, 0), "movs": (H.H_STRING, 0), "cmps": (H.H_STRING, 1),
    "stos": (H.H_STRING, 2), "lods": (H.H_STRING, 3), "scas": (H.H_STRING, 4), "ins": (H.H_STRING, 5),
    "outs": (H.H_STRING, 6), "in": (H.H_IN, 0), "out": (H.H_OUT, 0), "cmc": (H.H_FLAGOP, 0),
    "clc": (H.H_FLAGOP, 1), "stc": (H.H_FLAGOP, 2), "cli": (H.H_FLAGOP, 3), "sti": (H.H_FLAGOP, 4),
    "cld": (H.H_FLAGOP, 5), "std": (H.H_FLAGOP, 6), "hlt": (H.H_HLT, 0), "lahf": (H.H_LAHF, 0),
    "sahf": (H.H_SAHF, 0), "cbw": (H.H_CBW, 0), "cwd": (H.H_CWD, 0), "xlatb": (H.H_XLAT, 0),
    "salc": (H.H_SALC, 0), "daa": (H.H_BCD, 0), "das": (H.H_BCD, 1), "aaa": (H.H_BCD, 2),
    "aas": (H.H_BCD, 3), "aam": (H.H_BCD, 4), "aad": (H.H_BCD, 5), "enter": (H.H_ENTER, 0),
    "leave": (H.H_LEAVE, 0), "bt": (H.H_BT, 0), "bts": (H.H_BT, 1), "btr": (H.H_BT, 2),
    "btc": (H.H_BT, 3), "bswap": (H.H_BSWAP, 0),
    "xadd": (H.H_XADD, 0), "cmpxchg": (H.H_CMPXCHG, 0), "cmpxchg8b": (H.H_CMPXCHG8B, 0),
    "wait": (H.H_WAIT, 0), "ud2": (H.H_UD, 0), "ud0": (H.H_UD, 0), "ud1": (H.H_UD, 0),
    "cpuid": (H.H_SYS, SY.SYS_CPUID), "rdtsc": (H.H_SYS, SY.SYS_RDTSC),
    "lgdt": (H.H_SYS, SY.SYS_LGDT), "lidt": (H.H_SYS, SY.SYS_LIDT), "sgdt": (H.H_SYS, SY.SYS_SGDT),
    "sidt": (H.H_SYS, SY.SYS_SIDT), "lldt": (H.H_SYS, SY.SYS_LLDT), "ltr": (H.H_SYS, SY.SYS_LTR),
    "sldt": (H.H_SYS, SY.SYS_SLDT), "str": (H.H_SYS, SY.SYS_STR), "lmsw": (H.H_SYS, SY.SYS_LMSW),
    "smsw": (H.H_SYS, SY.SYS_SMSW), "clts": (H.H_SYS, SY.SYS_CLTS), "invlpg": (H.H_SYS, SY.SYS_INVLPG),
    "invd": (H.H_SYS, SY.SYS_INVD), "wbinvd": (H.H_SYS, SY.SYS_WBINVD), "rdmsr": (H.H_SYS, SY.SYS_RDMSR),
    "wrmsr": (H.H_SYS, SY.SYS_WRMSR), "lar": (H.H_SYS, SY.SYS_LAR), "lsl": (H.H_SYS, SY.SYS_LSL),
    "verr": (H.H_SYS, SY.SYS_VERR), "verw": (H.H_SYS, SY.SYS_VERW), "arpl": (H.H_SYS, SY.SYS_ARPL),
    "sysenter": (H.H_SYS, SY.SYS_SYSENTER), "sysexit": (H.H_SYS, SY.SYS_SYSEXIT),
    "rdpmc": (H.H_SYS, SY.SYS_RDPMC), "rsm": (H.H_SYS, SY.SYS_RSM),
    "fxsave": (H.H_SYS, SY.SYS_FXSAVE), "fxrstor": (H.H_SYS, SY.SYS_FXRSTOR),
    "lfence": (H.H_NOP, 0), "mfence": (H.H_NOP, 0), "sfence": (H.H_NOP, 0),
}


_SEMANTICS = semantics_by_name()


def _handler_for(form) -> tuple[int, int]:
    """(handler, aux) of one decoder form."""
    name = form.name
    ams = [op[0] for op in form.ops]
    if form.index == O.FORM_BAD or name in O.EXT_FORMS:
        return H.H_UD, 0
    if form.sem is not None:
        sem = _SEMANTICS.get(form.sem.fn)
        return (H.H_SCALAR, sem.number) if sem else (H.H_UNIMPL, form.index)
    if name in _ALU:
        return H.H_ALU, _ALU[name]
    if name == "test":
        return H.H_ALU, 8
    if name in _SHIFT:
        return H.H_SHIFT, _SHIFT[name]
    if name == "mov":
        if O.AM_C in ams:
            return H.H_SYS, (SY.SYS_MOV_TO_CR if ams[0] == O.AM_C else SY.SYS_MOV_FROM_CR)
        if O.AM_D in ams:
            return H.H_SYS, (SY.SYS_MOV_TO_DR if ams[0] == O.AM_D else SY.SYS_MOV_FROM_DR)
        if ams[0] == O.AM_S:
            return H.H_MOV_TO_SREG, 0
        if len(ams) > 1 and ams[1] == O.AM_S:
            return H.H_MOV_FROM_SREG, 0
        return H.H_MOV, 0
    if name in ("push", "pop"):
        if ams and ams[0] == O.AM_SEG:
            return (H.H_PUSH_SREG if name == "push" else H.H_POP_SREG), 0
        return (H.H_PUSH if name == "push" else H.H_POP), 0
    if name == "imul":
        if len(ams) == 1:
            return H.H_MULDIV, 5
        return H.H_IMUL2, len(ams) - 2  # aux 0: IMUL r, r/m; 1: IMUL r, r/m, imm
    if name.startswith("cmov") and name[4:] in _CC:
        return H.H_CMOVCC, _CC[name[4:]]
    if name.startswith("set") and name[3:] in _CC:
        return H.H_SETCC, _CC[name[3:]]
    if name.startswith("j") and name[1:] in _CC:
        return H.H_JCC, _CC[name[1:]]
    if name in ("jmp", "call") and ams and ams[0] != O.AM_J:
        return (H.H_JMP_IND if name == "jmp" else H.H_CALL_IND), 0
    if name in _SIMPLE:
        return _SIMPLE[name]
    if name.startswith("f") and (form.map == 0 and 0xD8 <= form.opcode <= 0xDF):
        return H.H_FPU, FP.aux_for(name, form.operands)
    return H.H_UNIMPL, form.index


def _build_form_tables():
    n = len(O.FORMS)
    fh = np.zeros(n, dtype=np.int64)
    fa = np.zeros(n, dtype=np.int64)
    for form in O.FORMS:
        fh[form.index], fa[form.index] = _handler_for(form)
    ends = np.zeros(H.N_HANDLERS, dtype=np.int64)
    for h in _ENDS_BLOCK:
        ends[h] = 1
    return fh, fa, ends


FORM_H, FORM_AUX, ENDS_BLOCK = _build_form_tables()

_REGLIKE = np.zeros(16, dtype=np.int64)
for _k in (D.OPK_REG, D.OPK_SREG, D.OPK_CREG, D.OPK_DREG, D.OPK_MMX, D.OPK_XMM, D.OPK_ST):
    _REGLIKE[_k] = 1

TR_OK = 0
TR_FETCH_FAULT = -1  # the first instruction's bytes could not be fetched (fault recorded)
TR_FULL = -2  # the block cache is full: flush and retry
TR_NEED_NEXT = -3  # an instruction straddles into the next page: translate it, then call again
NEXT_UNKNOWN = -2  # next_host value: the next page has not been looked at yet


@njit(cache=True)
def _operand(out, i, nops):
    """Row encoding of decoded operand i: a register number, RM_MEM or RM_NONE."""
    if i >= nops:
        return RM_NONE
    k = out[D.F_OPK + 3 * i]
    if k == D.OPK_MEM:
        return RM_MEM
    if _REGLIKE[k]:
        return out[D.F_OPREG + 3 * i]
    return RM_NONE


@njit(cache=True)
def emit_row(rows, r, out, off, form_h, form_aux):
    """Fill row r from the decoder's output for an instruction at block offset `off`.
    Returns the handler number."""
    form = out[D.F_FORM]
    h = form_h[form]
    aux = form_aux[form]
    nops = out[D.F_NOPS]
    base = r * ROW_WIDTH
    rows[base + R_H] = h
    rows[base + R_LEN] = out[D.F_LEN]
    rows[base + R_OFF] = off
    rows[base + R_AUX] = aux
    dst = _operand(out, 0, nops)
    src = _operand(out, 1, nops)
    rows[base + R_DST] = dst
    rows[base + R_SRC] = src
    k0 = out[D.F_OPK] if nops > 0 else D.OPK_NONE
    if k0 == D.OPK_REG or k0 == D.OPK_MEM:
        size = out[D.F_OPSZ]
    else:
        size = out[D.F_OPSIZE]
    rows[base + R_SIZE] = size
    size2 = out[D.F_OPSZ + 3] if nops > 1 else 0
    x = size2 << X_SIZE2_SHIFT
    has_mem = False
    for i in range(nops):
        if out[D.F_OPK + 3 * i] == D.OPK_MEM:
            has_mem = True
    if has_mem:
        x |= X_MEM
    if out[D.F_REP] == 0xF3:
        x |= X_REP
    elif out[D.F_REP] == 0xF2:
        x |= X_REPNE
    if out[D.F_LOCK]:
        x |= X_LOCK
    seg = out[D.F_SEG]
    if seg >= 0:
        x |= X_SEGOVR
    else:
        seg = out[D.F_DEFSEG]
    rows[base + R_X] = x
    rows[base + R_BASE] = out[D.F_BASE]
    rows[base + R_INDEX] = out[D.F_INDEX]
    rows[base + R_SCALE] = out[D.F_SCALE]
    rows[base + R_DISP] = out[D.F_DISP]
    rows[base + R_SEG] = seg
    rows[base + R_ASIZE] = out[D.F_ADSIZE]
    rows[base + R_IMM] = out[D.F_IMM]
    rows[base + R_IMM2] = out[D.F_IMM2]
    # Operand shapes some handlers read differently.
    if h == H.H_SHIFT or h == H.H_SHXD:
        last = nops - 1
        kl = out[D.F_OPK + 3 * last]
        if kl == D.OPK_CONST1:
            rows[base + R_IMM] = 1
        elif kl == D.OPK_REG:  # CL
            rows[base + R_IMM] = -1
    elif h == H.H_OUT:
        rows[base + R_SIZE] = size2  # OUT port, AL/eAX: the size is the register's
        rows[base + R_SRC] = -1 if k0 == D.OPK_IMM else -2  # port: immediate (-1) or DX (-2)
    elif h == H.H_IN:
        rows[base + R_SRC] = -1 if (nops > 1 and out[D.F_OPK + 3] == D.OPK_IMM) else -2
    elif h == H.H_STRING:
        # Element size: the size of the memory operand; the source segment may be overridden.
        rows[base + R_SIZE] = out[D.F_OPSZ] if out[D.F_OPK] == D.OPK_MEM else out[D.F_OPSZ + 3]
        if aux == 5 or aux == 6:  # INS/OUTS: element size from the string operand
            rows[base + R_SIZE] = out[D.F_OPSZ] if aux == 5 else out[D.F_OPSZ + 3]
        rows[base + R_SEG] = out[D.F_SEG] if out[D.F_SEG] >= 0 else SEG_DS
    elif h == H.H_PUSH_SREG or h == H.H_POP_SREG:
        rows[base + R_DST] = out[D.F_OPREG]
    elif h == H.H_JMP_FAR or h == H.H_CALL_FAR:
        rows[base + R_SIZE] = out[D.F_OPSIZE]  # the offset's size (Mp's 4/6 bytes include the selector)
    elif h == H.H_SYS and k0 == D.OPK_MEM and out[D.F_OPSZ] == PSEUDO_DESCRIPTOR_SIZE:
        rows[base + R_SIZE] = out[D.F_OPSIZE]  # LGDT/LIDT/SGDT/SIDT: 16-bit size loads a 24-bit base
    elif h == H.H_FPU:
        # ST(i) index and operand size (FNSTENV/FNSAVE layouts); the 11-bit x87 opcode (FOP =
        # low 3 bits of the escape byte, then ModRM: SDM Vol 1, 8.1.9).
        modrm = out[D.F_MODRM] & 0xFF
        rows[base + R_IMM] = (modrm & 7) | (out[D.F_OPSIZE] << 3)
        rows[base + R_IMM2] = ((out[D.F_OPCODE] & 7) << 8) | modrm
    elif h == H.H_UNIMPL:
        rows[base + R_IMM2] = out[D.F_OPCODE]
    return h


@njit(cache=True)
def translate_block(mem, out, rows, tbs, bc, bc_ptr, host, phys, page_end_host, next_host, next_ppn,
                    bits32, hflags, eip, cs_base, form_h, form_aux, ends_block):
    """Translate the block at physical `phys` (host offset `host` in `mem`).

    `page_end_host` is the host offset where the page ends; `next_host`/`next_ppn` give the next
    page's host offset and physical page, used only by an instruction that straddles the boundary:
    NEXT_UNKNOWN makes it return TR_NEED_NEXT so the caller translates that page (which may fault)
    only when it is really needed; -1 means it could not be fetched. Returns the new block's
    number, TR_FULL, TR_NEED_NEXT or TR_FETCH_FAULT.
    """
    ntbs = bc[BC_NTBS]
    nrows = bc[BC_NROWS]
    if ntbs >= len(tbs) // TB_WIDTH or nrows + MAX_BLOCK_INSNS > bc[BC_MAXROWS]:
        return TR_FULL
    tb = ntbs
    buf = np.zeros(32, dtype=np.uint8)
    off = 0
    n = 0
    crossed = False
    while n < MAX_BLOCK_INSNS:
        pos = host + off
        if pos < page_end_host:
            length = D.decode(mem, pos, page_end_host, bits32, out)
        else:
            break
        if length == D.DEC_TRUNCATED:
            # Straddles the page end: assemble the bytes of both pages in a small buffer.
            if next_host == NEXT_UNKNOWN:
                return TR_NEED_NEXT
            if next_host < 0:
                if n == 0:
                    return TR_FETCH_FAULT
                break
            k = page_end_host - pos
            for i in range(k):
                buf[i] = mem[pos + i]
            for i in range(16 - k):
                buf[k + i] = mem[next_host + i]
            length = D.decode(buf, 0, 16, bits32, out)
            if length <= 0 and length != D.DEC_INVALID:
                length = D.DEC_INVALID
            crossed = True
        h = emit_row(rows, nrows + n, out, off, form_h, form_aux)
        if length == D.DEC_INVALID:
            rows[(nrows + n) * ROW_WIDTH + R_H] = H.H_UD
            rows[(nrows + n) * ROW_WIDTH + R_LEN] = max(out[D.F_LEN], 1)
            h = H.H_UD
        off += rows[(nrows + n) * ROW_WIDTH + R_LEN]
        n += 1
        if ends_block[h] or crossed:
            break
    base = tb * TB_WIDTH
    tbs[base + TB_PHYS] = phys
    tbs[base + TB_HFLAGS] = hflags
    tbs[base + TB_ROW] = nrows
    tbs[base + TB_NROWS] = n
    tbs[base + TB_BYTES] = off
    tbs[base + TB_NEXT0] = -1
    tbs[base + TB_NEXT1] = -1
    tbs[base + TB_PAGE0] = phys >> 12
    tbs[base + TB_PAGE1] = next_ppn if crossed else -1
    tbs[base + TB_EXECS] = 0
    tbs[base + TB_FN] = TB_FN_NONE
    tbs[base + TB_EIP] = eip
    tbs[base + TB_CSBASE] = cs_base
    link_page(bc_ptr, tb, 0, phys >> 12)
    if crossed:
        link_page(bc_ptr, tb, 1, next_ppn)
    bc[BC_NTBS] = ntbs + 1
    bc[BC_NROWS] = nrows + n
    return tb
