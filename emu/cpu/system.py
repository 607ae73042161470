"""The system-instruction group: every SYS_* operation of emu/cpu/sysops.py (handler H_SYS).

Checked against the SDM, Vol 2 (each instruction's pseudo-code and exception lists), Vol 3
(2.5 control registers, 4.4.1 PDPTE loading, 4.10.4 TLB invalidation, 17.2 debug registers) and
Vol 4 (MSRs). The rules that recur:

- CPL-0 instructions (MOV CR/DR, LGDT, LIDT, LLDT, LTR, LMSW, CLTS, INVLPG, INVD, WBINVD, RDMSR,
  WRMSR, SYSEXIT) raise #GP(0) at CPL > 0, which includes virtual-8086 mode (CPL 3); real mode
  runs at privilege 0.
- LLDT, LTR, SLDT, STR, LAR, LSL, VERR, VERW and ARPL are not recognised in real-address or
  virtual-8086 mode: #UD.
- Nothing architectural changes before every check (and every memory access that may fault)
  has passed, so a faulting instruction restarts precisely.

Row convention (emu/translate/rowfmt.py): `dst`/`src` are a register number, RM_MEM (-1: the memory
operand at `seg`:`ea`) or RM_NONE (-2). MOV CRn, r32 has dst = n and src = the GPR; MOV r32, CRn has
dst = the GPR and src = n (DR the same). One-operand forms (LLDT, LTR, LMSW, VERR, VERW, SLDT, STR,
SMSW, INVLPG) name their operand in `dst`; `_rm_of` also accepts it in `src`. `size` is the
operand size (2 or 4; for LGDT/LIDT the operand-size attribute: 2 selects the 24-bit base).

Interface with the interpreter: EIP already holds the address of the next instruction when
`system_insn` runs (SYSENTER and SYSEXIT replace it). Results: SYS_CONTINUE, SYS_END_BLOCK (the mode,
the mappings or EIP changed: the loop looks the next block up again), or a negative code after
recording the exception (FAULT_VECTOR/FAULT_ERROR).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from emu import stats as K
from emu.cpu import features as FT
from emu.cpu import flags as F
from emu.cpu import state as S
from emu.cpu import sysops as SY
from emu.cpu.access import GP_VECTOR, SEGF_MASK, raise_fault, rget, rset, seg_la, seg_summary, sget, sset, vread, vwrite
from emu.cpu.eflags import get_eflags, set_eflags, set_status
from emu.cpu.fpu import fxsave_fxrstor
from emu.cpu.segments import (
    NP_VECTOR,
    desc_addr,
    desc_attr,
    desc_base,
    desc_limit,
    read_desc,
    set_seg_cache,
    update_hflags,
)
from emu.mmu.paging import CR0_PE, CR0_PG, CR0_WP, CR4_PAE, CR4_PGE, CR4_PSE, phys_host
from emu.mmu.softmmu import CTX_MEM, CTX_PMAP, MEM_FAULT, count
from emu.mmu.tlb import tlb_flush_all, tlb_flush_page
from emu.rawptr import call_clock_fn, load_i64

UD_VECTOR = 6
DB_VECTOR = 1
NO_ERROR = -1

# ------------------------------------------------------------------------------ CR0 / CR4 bits
CR0_MP = 1 << 1
CR0_EM = 1 << 2
CR0_TS = 1 << 3
CR0_ET = 1 << 4  # hardwired to 1 since the P6 family
CR0_NE = 1 << 5
CR0_AM = 1 << 18
CR0_NW = 1 << 29
CR0_CD = 1 << 30
CR0_DEFINED = (CR0_PE | CR0_MP | CR0_EM | CR0_TS | CR0_ET | CR0_NE | CR0_WP | CR0_AM | CR0_NW | CR0_CD
               | CR0_PG)  # writes to CR0's reserved bits are ignored in 32-bit mode (Vol 3, 2.5)
CR4_TSD = 1 << 2
CR4_DE = 1 << 3
CR4_PCE = 1 << 8
CR4_OSFXSR = 1 << 9  # the OS saves SSE state with FXSAVE (FXRSTOR then loads MXCSR)
# CR4 bits this CPU implements; setting any other bit is #GP(0) (MOV CR4 exceptions). No VME/PVI,
# no MCE, no OSFXSR (no SSE), no SMEP/SMAP.
CR4_VALID = CR4_TSD | CR4_DE | CR4_PSE | CR4_PAE | CR4_PGE | CR4_PCE | CR4_OSFXSR
CR4_PAGING_BITS = CR4_PSE | CR4_PAE | CR4_PGE

# PAE PDPTE reserved bits with MAXPHYADDR = 36 (Vol 3, 4.4.1, Table 4-8): 2:1, 8:5 and 63:36.
PDPTE_RESERVED = ~((1 << 36) - 1) | 0x1E6

DR6_FIXED1 = 0xFFFF0FF0  # DR6 bits that read as 1 (Vol 3, 17.2.3); bit 12 reads 0
DR6_WRITABLE = 0x0000E00F
DR7_FIXED1 = 0x400
DR7_WRITABLE = 0xFFFF23FF
DR7_GD = 1 << 13
DR6_BD = 1 << 13

# ------------------------------------------------------------------------------ CPUID
CPUID_SIGNATURE = 0x0000_0633  # family 6, model 3, stepping 3: the EDX value at RESET (state.py)
CPUID_MAX_BASIC = 7
CPUID_MAX_EXT = 0x8000_0004
FEAT_FPU = 1 << 0
FEAT_PSE = 1 << 3
FEAT_TSC = 1 << 4
FEAT_MSR = 1 << 5
FEAT_PAE = 1 << 6
FEAT_CX8 = 1 << 8
FEAT_SEP = 1 << 11
FEAT_MTRR = 1 << 12
FEAT_PGE = 1 << 13
FEAT_CMOV = 1 << 15
FEAT_PAT = 1 << 16
FEAT_PSE36 = 1 << 17
FEAT_FXSR = 1 << 24
# CPUID.1:EDX, exactly what the engine implements: the x87 FPU (emu/cpu/fpu.py), no VME, DE, MCE,
# APIC, MCA, MMX or SSE; FXSR: FXSAVE/FXRSTOR of the x87 state (iPXE uses them unconditionally).
# MTRR and PAT are storage only (the emulator has no caches).
CPUID_1_EDX = (FEAT_FPU | FEAT_PSE | FEAT_TSC | FEAT_MSR | FEAT_PAE | FEAT_CX8 | FEAT_SEP | FEAT_MTRR | FEAT_PGE
               | FEAT_CMOV | FEAT_PAT | FEAT_PSE36 | FEAT_FXSR)
# Bits of optional instructions: derived from the opcode table's feature column, each set exactly
# when its rows are implemented (emu/cpu/features.py): POPCNT, TZCNT (BMI1), LZCNT.
CPUID_1_ECX = FT.advertised(0x01, 0, FT.ECX)
CPUID_7_EBX = FT.advertised(0x07, 0, FT.EBX)
CPUID_80000001_ECX = FT.advertised(0x8000_0001, 0, FT.ECX)
CPUID_VENDOR = b"GenuineIntel"
CPUID_BRAND = b"pyemu Virtual CPU"  # leaves 80000002h-80000004h, NUL-padded to 48 bytes


def _le_dwords(raw: bytes) -> np.ndarray:
    return np.frombuffer(raw, dtype="<u4").astype(np.int64)


VENDOR_DWORDS = _le_dwords(CPUID_VENDOR)  # EBX, EDX, ECX order of the string
BRAND_DWORDS = _le_dwords(CPUID_BRAND.ljust(48, b"\0"))

# RDTSC: a 1 GHz TSC, TSC = ticks + TSC_OFFSET, where ticks (emu/tsc.py) are either
# - guest nanoseconds read from the host's clock (guest time is host time: TSC_HOST_FN set), or
# - ICOUNT * TSC_RATE >> TSC_RATE_SHIFT: ticks per retired instruction (-icount, where guest time
#   is instructions, and before the main loop first runs); 8 ticks per instruction at reset.
TSC_PER_INSN = S.TSC_RATE_RESET >> S.TSC_RATE_SHIFT
NS_PER_SECOND = 1_000_000_000


@njit(cache=True)
def tsc_ticks(sp):
    """The TSC without TSC_OFFSET: guest nanoseconds on the host's clock, or ICOUNT at the rate."""
    fn = sget(sp, S.TSC_HOST_FN)
    if fn != 0:
        ts = sp + S.TSC_TIMESPEC * 8
        call_clock_fn(fn, sget(sp, S.TSC_HOST_CLOCK), ts)
        return (sget(sp, S.TSC_TIMESPEC) * NS_PER_SECOND + sget(sp, S.TSC_TIMESPEC + 1)
                - sget(sp, S.TSC_HOST_ORIGIN))
    return (sget(sp, S.ICOUNT) * sget(sp, S.TSC_RATE)) >> S.TSC_RATE_SHIFT

# ------------------------------------------------------------------------------ MSRs (SDM Vol 4)
MSR_TSC = 0x10
MSR_PLATFORM_ID = 0x17
MSR_APIC_BASE = 0x1B
MSR_BIOS_SIGN_ID = 0x8B  # microcode revision (Linux writes 0 then reads it without a fault handler)
MSR_MTRRCAP = 0xFE
MSR_SYSENTER_CS = 0x174
MSR_SYSENTER_ESP = 0x175
MSR_SYSENTER_EIP = 0x176
MSR_MTRR_PHYSBASE0 = 0x200  # ..0x20F: PHYSBASEn at 200h + 2n, PHYSMASKn at 201h + 2n
MSR_MTRR_FIX64K = 0x250
MSR_MTRR_FIX16K_80000 = 0x258
MSR_MTRR_FIX16K_A0000 = 0x259
MSR_MTRR_FIX4K_C0000 = 0x268  # ..0x26F
MSR_PAT = 0x277
MSR_MTRR_DEF_TYPE = 0x2FF
MTRR_VCNT = 8
MTRRCAP_VALUE = MTRR_VCNT | (1 << 8) | (1 << 10)  # 8 variable ranges, fixed ranges, WC
# No local APIC is emulated (CPUID.1:EDX.APIC = 0): the base reads as FEE00000h with BSP set and
# the global enable clear, and cannot be changed.
APIC_BASE_VALUE = 0xFEE0_0000 | (1 << 8)
MTRR_DEF_TYPE_MASK = 0xCFF
MTRR_PHYSBASE_MASK = ((1 << 36) - 1) & ~0xF00  # type 7:0, base 35:12
MTRR_PHYSMASK_MASK = ((1 << 36) - 1) & ~0x7FF  # valid 11, mask 35:12
MSR_BAD = -1  # "no such MSR / reserved bits": #GP(0)

# ------------------------------------------------------------------------------ misc
SYSENTER_FLAT_CODE = S.ATTR_P | S.ATTR_S | S.ATTR_CODE | S.ATTR_WRITABLE | S.ATTR_ACCESSED | S.ATTR_DB | S.ATTR_G
SYSENTER_FLAT_DATA = S.ATTR_P | S.ATTR_S | S.ATTR_WRITABLE | S.ATTR_ACCESSED | S.ATTR_DB | S.ATTR_G
RDPMC_COUNTERS = 2  # the P6 family's two counters (they always read 0 here)


# ============================================================================== small helpers
@njit(cache=True)
def _ud(sp):
    return raise_fault(sp, UD_VECTOR, NO_ERROR)


@njit(cache=True)
def _gp0(sp):
    return raise_fault(sp, GP_VECTOR, 0)


@njit(cache=True)
def _pe(sp):
    return (sget(sp, S.CR0) & CR0_PE) != 0


@njit(cache=True)
def _vm(sp):
    return (sget(sp, S.EFLAGS) & F.VM) != 0


@njit(cache=True)
def _prot(sp):
    """Protected mode proper: PE and not virtual-8086."""
    return _pe(sp) and not _vm(sp)


@njit(cache=True)
def _priv_ok(sp):
    """CPL 0 (real mode counts as privilege 0; virtual-8086 mode runs at CPL 3)."""
    if not _pe(sp):
        return True
    return sget(sp, S.CPL) == 0 and not _vm(sp)


@njit(cache=True)
def _rm_of(dst, src):
    return dst if dst != -2 else src


@njit(cache=True)
def _read_rm(sp, tp, mp, cp, r, size, ea, seg, user):
    """The r/m operand (register r, or memory at seg:ea): value >= 0, or < 0 after a fault."""
    if r >= 0:
        return rget(sp, r, size)
    la = seg_la(sp, seg, ea, size, False)
    if la < 0:
        return la
    return vread(tp, mp, cp, la, size, user)


@njit(cache=True)
def _write_rm(sp, tp, mp, cp, r, size, v, ea, seg, user):
    if r >= 0:
        rset(sp, r, size, v)
        return 0
    la = seg_la(sp, seg, ea, size, True)
    if la < 0:
        return la
    return vwrite(tp, mp, cp, la, size, v, user)


@njit(cache=True)
def _set_zf(sp, zf):
    """Set or clear ZF, keeping the other status flags (LAR, LSL, VERR, VERW, ARPL)."""
    status = get_eflags(sp) & F.STATUS_MASK
    if zf:
        status |= F.ZF
    else:
        status &= ~F.ZF
    set_status(sp, status)


@njit(cache=True)
def resummarize_segments(sp):
    """Recompute the SEGF_* summary bits of the six segment caches after CR0.PE or EFLAGS.VM
    changed outside a segment load (the hidden descriptor caches themselves stay as they are)."""
    pe = _pe(sp)
    vm = _vm(sp)
    for seg in range(6):
        o = S.SEGATTR + seg * S.SEG_STRIDE
        old = sget(sp, o)
        null = pe and not vm and (old & (1 << 18)) != 0 and seg != S.CS
        sset(sp, o, seg_summary(old & ~SEGF_MASK, pe, vm, null))


# ============================================================================== control registers
@njit(cache=True)
def load_pdptes(sp, cp, cr3):
    """Load the four PAE PDPTEs from the table CR3 points to (Vol 3, 4.4.1). 0, or MEM_FAULT with
    #GP(0) when a present entry has a reserved bit set (the old PDPTEs are kept then)."""
    pmap = load_i64(cp + CTX_PMAP * 8)
    mem = load_i64(cp + CTX_MEM * 8)
    a20 = sget(sp, S.A20_MASK)
    e0 = 0
    e1 = 0
    e2 = 0
    e3 = 0
    for i in range(4):
        phys = ((cr3 & 0xFFFF_FFE0) + 8 * i) & a20
        off = phys_host(pmap, phys)
        e = -1 if off < 0 else load_i64(mem + off)  # open bus reads as all-ones
        if (e & 1) and (e & PDPTE_RESERVED):
            return _gp0(sp)
        if i == 0:
            e0 = e
        elif i == 1:
            e1 = e
        elif i == 2:
            e2 = e
        else:
            e3 = e
    sset(sp, S.PDPTE0, e0)
    sset(sp, S.PDPTE0 + 1, e1)
    sset(sp, S.PDPTE0 + 2, e2)
    sset(sp, S.PDPTE0 + 3, e3)
    return 0


@njit(cache=True)
def _flush_tlb(sp, tp, cp, keep_global):
    tlb_flush_all(tp, keep_global)
    count(cp, K.TLB_FLUSHES_GLOBAL_KEPT if keep_global else K.TLB_FLUSHES)


@njit(cache=True)
def write_cr0(sp, tp, cp, v):
    """MOV CR0 (also LMSW and CLTS): checks, PDPTE load, TLB flush and mode bits."""
    v = (v & CR0_DEFINED) | CR0_ET
    if (v & CR0_PG) and not (v & CR0_PE):
        return _gp0(sp)
    if (v & CR0_NW) and not (v & CR0_CD):
        return _gp0(sp)
    old = sget(sp, S.CR0)
    cr4 = sget(sp, S.CR4)
    changed = old ^ v
    if (v & CR0_PG) and (cr4 & CR4_PAE) and (changed & (CR0_PG | CR0_CD | CR0_NW)):
        r = load_pdptes(sp, cp, sget(sp, S.CR3))
        if r < 0:
            return r
    sset(sp, S.CR0, v)
    if changed & (CR0_PG | CR0_PE | CR0_WP):
        _flush_tlb(sp, tp, cp, False)
    if changed & CR0_PE:
        if not (v & CR0_PE):
            sset(sp, S.CPL, 0)
        resummarize_segments(sp)
    update_hflags(sp)
    if changed & (CR0_PG | CR0_PE | CR0_WP):
        return SY.SYS_END_BLOCK
    return SY.SYS_CONTINUE


@njit(cache=True)
def write_cr3(sp, tp, cp, v):
    v &= 0xFFFF_FFFF
    if (sget(sp, S.CR0) & CR0_PG) and (sget(sp, S.CR4) & CR4_PAE):
        r = load_pdptes(sp, cp, v)
        if r < 0:
            return r
    sset(sp, S.CR3, v)
    _flush_tlb(sp, tp, cp, (sget(sp, S.CR4) & CR4_PGE) != 0)
    return SY.SYS_END_BLOCK


@njit(cache=True)
def write_cr4(sp, tp, cp, v):
    v &= 0xFFFF_FFFF
    if v & ~CR4_VALID:
        return _gp0(sp)
    old = sget(sp, S.CR4)
    changed = old ^ v
    if (sget(sp, S.CR0) & CR0_PG) and (v & CR4_PAE) and (changed & CR4_PAGING_BITS):
        r = load_pdptes(sp, cp, sget(sp, S.CR3))
        if r < 0:
            return r
    sset(sp, S.CR4, v)
    if changed & CR4_PAGING_BITS:
        _flush_tlb(sp, tp, cp, False)
        return SY.SYS_END_BLOCK
    return SY.SYS_CONTINUE


@njit(cache=True)
def _mov_cr(sp, tp, cp, op, dst, src):
    n = dst if op == SY.SYS_MOV_TO_CR else src
    if n == 1 or n > 4:
        return _ud(sp)  # CR1, CR5-CR7 do not exist; CR8 needs REX (64-bit mode only)
    if not _priv_ok(sp):
        return _gp0(sp)
    if op == SY.SYS_MOV_FROM_CR:
        if n == 0:
            v = sget(sp, S.CR0)
        elif n == 2:
            v = sget(sp, S.CR2)
        elif n == 3:
            v = sget(sp, S.CR3)
        else:
            v = sget(sp, S.CR4)
        rset(sp, dst, 4, v)  # always 32 bits, whatever the operand size
        return SY.SYS_CONTINUE
    v = rget(sp, src, 4)
    if n == 0:
        return write_cr0(sp, tp, cp, v)
    if n == 2:
        sset(sp, S.CR2, v)
        return SY.SYS_CONTINUE
    if n == 3:
        return write_cr3(sp, tp, cp, v)
    return write_cr4(sp, tp, cp, v)


@njit(cache=True)
def _mov_dr(sp, op, dst, src):
    n = dst if op == SY.SYS_MOV_TO_DR else src
    if not _priv_ok(sp):
        return _gp0(sp)
    if n == 4 or n == 5:
        if sget(sp, S.CR4) & CR4_DE:
            return _ud(sp)
        n += 2  # DR4/DR5 alias DR6/DR7 while CR4.DE = 0
    dr7 = sget(sp, S.DR0 + 7)
    if dr7 & DR7_GD:
        # General detect (Vol 3, 17.2.4): #DB before the access, with DR6.BD set and GD cleared
        sset(sp, S.DR0 + 6, sget(sp, S.DR0 + 6) | DR6_BD)
        sset(sp, S.DR0 + 7, dr7 & ~DR7_GD)
        return raise_fault(sp, DB_VECTOR, NO_ERROR)
    if op == SY.SYS_MOV_FROM_DR:
        rset(sp, dst, 4, sget(sp, S.DR0 + n))
        return SY.SYS_CONTINUE
    v = rget(sp, src, 4)
    if n == 6:
        v = (v & DR6_WRITABLE) | DR6_FIXED1
    elif n == 7:
        v = (v & DR7_WRITABLE) | DR7_FIXED1
    sset(sp, S.DR0 + n, v & 0xFFFF_FFFF)
    return SY.SYS_CONTINUE


@njit(cache=True)
def _msw(sp, tp, mp, cp, op, size, dst, src, ea, seg, user):
    """LMSW, SMSW, CLTS."""
    cr0 = sget(sp, S.CR0)
    if op == SY.SYS_SMSW:
        r = _rm_of(dst, src)
        if r >= 0:
            rset(sp, r, size, cr0)  # a 32-bit register receives all of CR0 (as P6 processors)
            return SY.SYS_CONTINUE
        w = _write_rm(sp, tp, mp, cp, -1, 2, cr0 & 0xFFFF, ea, seg, user)
        return w if w < 0 else SY.SYS_CONTINUE
    if not _priv_ok(sp):
        return _gp0(sp)
    if op == SY.SYS_CLTS:
        sset(sp, S.CR0, cr0 & ~CR0_TS)
        return SY.SYS_CONTINUE
    v = _read_rm(sp, tp, mp, cp, _rm_of(dst, src), 2, ea, seg, user)
    if v < 0:
        return v
    # LMSW loads PE, MP, EM and TS; it can set PE but never clear it.
    nv = (cr0 & ~0xE) | (v & 0xF) | (cr0 & CR0_PE)
    return write_cr0(sp, tp, cp, nv)


# ============================================================================== descriptor tables
@njit(cache=True)
def _table_regs(sp, tp, mp, cp, op, size, dst, src, has_mem, ea, seg, user):
    """LGDT, LIDT, SGDT, SIDT."""
    if not has_mem:
        return _ud(sp)
    base_slot = S.GDTR_BASE if (op == SY.SYS_LGDT or op == SY.SYS_SGDT) else S.IDTR_BASE
    limit_slot = base_slot + 1
    if op == SY.SYS_LGDT or op == SY.SYS_LIDT:
        if not _priv_ok(sp):
            return _gp0(sp)
        la = seg_la(sp, seg, ea, 6, False)
        if la < 0:
            return la
        limit = vread(tp, mp, cp, la, 2, user)
        if limit < 0:
            return limit
        base = vread(tp, mp, cp, (la + 2) & 0xFFFF_FFFF, 4, user)
        if base < 0:
            return base
        if size == 2:
            base &= 0xFF_FFFF  # 16-bit operand size: a 24-bit base
        sset(sp, base_slot, base)
        sset(sp, limit_slot, limit)
        return SY.SYS_CONTINUE
    # SGDT/SIDT store the 16-bit limit and the full 32-bit base at any operand size (current SDM).
    la = seg_la(sp, seg, ea, 6, True)
    if la < 0:
        return la
    r = vwrite(tp, mp, cp, (la + 2) & 0xFFFF_FFFF, 4, sget(sp, base_slot), user)
    if r < 0:
        return r
    r = vwrite(tp, mp, cp, la, 2, sget(sp, limit_slot) & 0xFFFF, user)
    if r < 0:
        return r
    return SY.SYS_CONTINUE


@njit(cache=True)
def _lldt_ltr(sp, tp, mp, cp, op, dst, src, ea, seg, user):
    if not _prot(sp):
        return _ud(sp)
    if sget(sp, S.CPL) != 0:
        return _gp0(sp)
    sel = _read_rm(sp, tp, mp, cp, _rm_of(dst, src), 2, ea, seg, user)
    if sel < 0:
        return sel
    is_ltr = op == SY.SYS_LTR
    if (sel & 0xFFFC) == 0:
        if is_ltr:
            return _gp0(sp)
        set_seg_cache(sp, S.LDTR_SEG, sel, 0, 0, 0)  # a null LDTR: later LDT references #GP
        return SY.SYS_CONTINUE
    if sel & 4:
        return raise_fault(sp, GP_VECTOR, sel & 0xFFFC)
    la = desc_addr(sp, sel)
    if la < 0:
        return raise_fault(sp, GP_VECTOR, sel & 0xFFFC)
    lo, hi = read_desc(sp, tp, mp, cp, la)
    if lo < 0:
        return MEM_FAULT
    attr = desc_attr(hi)
    typ = attr & (S.ATTR_S | S.ATTR_TYPE_MASK)
    if is_ltr:
        if typ != 0x1 and typ != 0x9:  # an available 16- or 32-bit TSS
            return raise_fault(sp, GP_VECTOR, sel & 0xFFFC)
    elif typ != 0x2:
        return raise_fault(sp, GP_VECTOR, sel & 0xFFFC)
    if not (attr & S.ATTR_P):
        return raise_fault(sp, NP_VECTOR, sel & 0xFFFC)
    if is_ltr:
        r = vwrite(tp, mp, cp, (la + 4) & 0xFFFF_FFFF, 4, hi | 0x200, 0)  # mark the TSS busy
        if r < 0:
            return r
        set_seg_cache(sp, S.TR_SEG, sel, desc_base(lo, hi), desc_limit(lo, hi), attr | 0x2)
    else:
        set_seg_cache(sp, S.LDTR_SEG, sel, desc_base(lo, hi), desc_limit(lo, hi), attr)
    return SY.SYS_CONTINUE


@njit(cache=True)
def _sldt_str(sp, tp, mp, cp, op, size, dst, src, ea, seg, user):
    if not _prot(sp):
        return _ud(sp)
    which = S.LDTR_SEG if op == SY.SYS_SLDT else S.TR_SEG
    sel = sget(sp, S.SEGSEL + which * S.SEG_STRIDE) & 0xFFFF
    r = _rm_of(dst, src)
    if r >= 0:
        rset(sp, r, size, sel)  # a 32-bit register gets the selector zero-extended
        return SY.SYS_CONTINUE
    w = _write_rm(sp, tp, mp, cp, -1, 2, sel, ea, seg, user)
    return w if w < 0 else SY.SYS_CONTINUE


# ============================================================================== LAR LSL VERR VERW ARPL
@njit(cache=True)
def _desc_query(sp, tp, mp, cp, op, size, dst, src, ea, seg, user):
    if not _prot(sp):
        return _ud(sp)
    r = src if (op == SY.SYS_LAR or op == SY.SYS_LSL) else _rm_of(dst, src)
    sel = _read_rm(sp, tp, mp, cp, r, 2, ea, seg, user)
    if sel < 0:
        return sel
    ok = False
    lo = 0
    hi = 0
    if (sel & 0xFFFC) != 0:
        la = desc_addr(sp, sel)
        if la >= 0:
            lo, hi = read_desc(sp, tp, mp, cp, la)
            if lo < 0:
                return MEM_FAULT
            attr = desc_attr(hi)
            typ = attr & S.ATTR_TYPE_MASK
            dpl = (attr >> S.ATTR_DPL_SHIFT) & 3
            cpl = sget(sp, S.CPL)
            rpl = sel & 3
            if attr & S.ATTR_S:
                code = (attr & S.ATTR_CODE) != 0
                conforming = code and (attr & S.ATTR_EXPAND_DOWN) != 0
                priv = conforming or (dpl >= cpl and dpl >= rpl)
                if op == SY.SYS_LAR or op == SY.SYS_LSL:
                    ok = priv
                elif op == SY.SYS_VERR:
                    ok = priv and (not code or (attr & S.ATTR_WRITABLE) != 0)
                else:  # VERW: a writable data segment
                    ok = (not code) and (attr & S.ATTR_WRITABLE) != 0 and dpl >= cpl and dpl >= rpl
            elif op == SY.SYS_LAR or op == SY.SYS_LSL:
                if op == SY.SYS_LAR:  # TSSs, LDT, call gates and task gates
                    valid = typ in (0x1, 0x2, 0x3, 0x4, 0x5, 0x9, 0xB, 0xC)
                else:  # segments only: TSSs and the LDT
                    valid = typ in (0x1, 0x2, 0x3, 0x9, 0xB)
                ok = valid and dpl >= cpl and dpl >= rpl
    _set_zf(sp, ok)
    if ok and op == SY.SYS_LAR:
        rset(sp, dst, size, hi & (0x00F0FF00 if size == 4 else 0xFF00))
    elif ok and op == SY.SYS_LSL:
        rset(sp, dst, size, desc_limit(lo, hi))
    return SY.SYS_CONTINUE


@njit(cache=True)
def _arpl(sp, tp, mp, cp, dst, src, ea, seg, user):
    if not _prot(sp):
        return _ud(sp)
    if dst >= 0:
        d = rget(sp, dst, 2)
        la = 0
    else:
        la = seg_la(sp, seg, ea, 2, True)
        if la < 0:
            return la
        d = vread(tp, mp, cp, la, 2, user)
        if d < 0:
            return d
    s = rget(sp, src, 2)
    if (d & 3) < (s & 3):
        nd = (d & ~3) | (s & 3)
        if dst >= 0:
            rset(sp, dst, 2, nd)
        else:
            w = vwrite(tp, mp, cp, la, 2, nd, user)
            if w < 0:
                return w
        _set_zf(sp, True)
    else:
        _set_zf(sp, False)
    return SY.SYS_CONTINUE


# ============================================================================== CPUID RDTSC RDPMC
@njit(cache=True)
def cpuid_values(leaf, subleaf):
    """(EAX, EBX, ECX, EDX) of CPUID leaf `leaf`, sub-leaf `subleaf` (ECX; Vol 2, CPUID)."""
    leaf &= 0xFFFF_FFFF
    if leaf >= 0x8000_0000:
        if leaf > CPUID_MAX_EXT:
            leaf = CPUID_MAX_BASIC  # out of range: the highest basic leaf's data (Intel)
    elif leaf > CPUID_MAX_BASIC:
        leaf = CPUID_MAX_BASIC
    if leaf == 0:
        return CPUID_MAX_BASIC, VENDOR_DWORDS[0], VENDOR_DWORDS[2], VENDOR_DWORDS[1]
    if leaf == 1:
        return CPUID_SIGNATURE, 0, CPUID_1_ECX, CPUID_1_EDX
    if leaf == 2:
        return 1, 0, 0, 0  # one iteration, no cache or TLB descriptors
    if leaf == 7:
        if (subleaf & 0xFFFF_FFFF) == 0:
            return 0, CPUID_7_EBX, 0, 0  # EAX: the highest sub-leaf
        return 0, 0, 0, 0
    if leaf < 0x8000_0000:
        return 0, 0, 0, 0  # leaves 3-6: no serial number, cache parameters, MONITOR or power data
    if leaf == 0x8000_0000:
        return CPUID_MAX_EXT, 0, 0, 0
    if leaf == 0x8000_0001:
        return 0, 0, CPUID_80000001_ECX, 0  # no NX, no SYSCALL, no long mode
    i = (leaf - 0x8000_0002) * 4
    return BRAND_DWORDS[i], BRAND_DWORDS[i + 1], BRAND_DWORDS[i + 2], BRAND_DWORDS[i + 3]


@njit(cache=True)
def read_tsc(sp):
    return tsc_ticks(sp) + sget(sp, S.TSC_OFFSET)


@njit(cache=True)
def _counters(sp, op):
    if op == SY.SYS_CPUID:
        a, b, c, d = cpuid_values(sget(sp, S.EAX), sget(sp, S.ECX))
        sset(sp, S.EAX, a)
        sset(sp, S.EBX, b)
        sset(sp, S.ECX, c)
        sset(sp, S.EDX, d)
        return SY.SYS_CONTINUE
    if op == SY.SYS_RDTSC:
        if (sget(sp, S.CR4) & CR4_TSD) and not _priv_ok(sp):
            return _gp0(sp)
        t = read_tsc(sp)
    else:  # RDPMC
        if not ((sget(sp, S.CR4) & CR4_PCE) or _priv_ok(sp)):
            return _gp0(sp)
        if sget(sp, S.ECX) >= RDPMC_COUNTERS:
            return _gp0(sp)
        t = 0
    sset(sp, S.EAX, t & 0xFFFF_FFFF)
    sset(sp, S.EDX, (t >> 32) & 0xFFFF_FFFF)
    return SY.SYS_CONTINUE


# ============================================================================== MSRs
@njit(cache=True)
def _fixed_mtrr_slot(msr):
    if msr == MSR_MTRR_FIX64K:
        return S.MSR_MTRR_FIXED
    if msr == MSR_MTRR_FIX16K_80000 or msr == MSR_MTRR_FIX16K_A0000:
        return S.MSR_MTRR_FIXED + 1 + (msr - MSR_MTRR_FIX16K_80000)
    if MSR_MTRR_FIX4K_C0000 <= msr <= MSR_MTRR_FIX4K_C0000 + 7:
        return S.MSR_MTRR_FIXED + 3 + (msr - MSR_MTRR_FIX4K_C0000)
    return -1


@njit(cache=True)
def _valid_type(t, pat):
    """A memory type encoding: UC 0, WC 1, WT 4, WP 5, WB 6 (and UC- 7 in the PAT)."""
    return t == 0 or t == 1 or t == 4 or t == 5 or t == 6 or (pat and t == 7)


@njit(cache=True)
def _types_ok(v, pat):
    for i in range(8):
        if not _valid_type((v >> (8 * i)) & 0xFF, pat):
            return False
    return True


@njit(cache=True)
def rdmsr_value(sp, msr):
    """The value of MSR `msr` (64 bits), or MSR_BAD for an MSR this CPU does not have."""
    if msr == MSR_TSC:
        return read_tsc(sp)
    if msr == MSR_PLATFORM_ID or msr == MSR_BIOS_SIGN_ID:
        return 0
    if msr == MSR_APIC_BASE:
        return APIC_BASE_VALUE
    if msr == MSR_MTRRCAP:
        return MTRRCAP_VALUE
    if msr == MSR_SYSENTER_CS:
        return sget(sp, S.SYSENTER_CS)
    if msr == MSR_SYSENTER_ESP:
        return sget(sp, S.SYSENTER_ESP)
    if msr == MSR_SYSENTER_EIP:
        return sget(sp, S.SYSENTER_EIP)
    if MSR_MTRR_PHYSBASE0 <= msr < MSR_MTRR_PHYSBASE0 + 2 * MTRR_VCNT:
        return sget(sp, S.MSR_MTRR_VAR + (msr - MSR_MTRR_PHYSBASE0))
    f = _fixed_mtrr_slot(msr)
    if f >= 0:
        return sget(sp, f)
    if msr == MSR_PAT:
        return sget(sp, S.MSR_PAT)
    if msr == MSR_MTRR_DEF_TYPE:
        return sget(sp, S.MSR_MTRR_DEF_TYPE)
    return MSR_BAD


@njit(cache=True)
def wrmsr_value(sp, msr, v):
    """Write MSR `msr`; 0, or MSR_BAD (#GP(0)) for an unknown or read-only MSR or reserved bits."""
    if msr == MSR_TSC:
        sset(sp, S.TSC_OFFSET, v - tsc_ticks(sp))
        return 0
    if msr == MSR_BIOS_SIGN_ID:
        return 0  # writing 0 before a CPUID makes the microcode revision readable: nothing to do
    if msr == MSR_APIC_BASE:
        return 0 if v == APIC_BASE_VALUE else MSR_BAD
    if msr == MSR_SYSENTER_CS:
        sset(sp, S.SYSENTER_CS, v & 0xFFFF_FFFF)
        return 0
    if msr == MSR_SYSENTER_ESP:
        sset(sp, S.SYSENTER_ESP, v & 0xFFFF_FFFF)
        return 0
    if msr == MSR_SYSENTER_EIP:
        sset(sp, S.SYSENTER_EIP, v & 0xFFFF_FFFF)
        return 0
    if MSR_MTRR_PHYSBASE0 <= msr < MSR_MTRR_PHYSBASE0 + 2 * MTRR_VCNT:
        k = msr - MSR_MTRR_PHYSBASE0
        if k & 1:
            if v & ~MTRR_PHYSMASK_MASK:
                return MSR_BAD
        elif (v & ~MTRR_PHYSBASE_MASK) or not _valid_type(v & 0xFF, False):
            return MSR_BAD
        sset(sp, S.MSR_MTRR_VAR + k, v)
        return 0
    f = _fixed_mtrr_slot(msr)
    if f >= 0:
        if not _types_ok(v, False):
            return MSR_BAD
        sset(sp, f, v)
        return 0
    if msr == MSR_PAT:
        if not _types_ok(v, True):
            return MSR_BAD
        sset(sp, S.MSR_PAT, v)
        return 0
    if msr == MSR_MTRR_DEF_TYPE:
        if (v & ~MTRR_DEF_TYPE_MASK) or not _valid_type(v & 0xFF, False):
            return MSR_BAD
        sset(sp, S.MSR_MTRR_DEF_TYPE, v)
        return 0
    return MSR_BAD


@njit(cache=True)
def _msr(sp, op):
    if not _priv_ok(sp):
        return _gp0(sp)
    msr = sget(sp, S.ECX) & 0xFFFF_FFFF
    if op == SY.SYS_RDMSR:
        v = rdmsr_value(sp, msr)
        if v == MSR_BAD and msr != MSR_TSC:
            return _gp0(sp)
        sset(sp, S.EAX, v & 0xFFFF_FFFF)
        sset(sp, S.EDX, (v >> 32) & 0xFFFF_FFFF)
        return SY.SYS_CONTINUE
    v = (sget(sp, S.EDX) << 32) | (sget(sp, S.EAX) & 0xFFFF_FFFF)
    if wrmsr_value(sp, msr, v) < 0:
        return _gp0(sp)
    return SY.SYS_CONTINUE


# ============================================================================== SYSENTER / SYSEXIT
@njit(cache=True)
def _sysenter_exit(sp, op, size):
    cs = sget(sp, S.SYSENTER_CS) & 0xFFFF
    if not _pe(sp) or (cs & 0xFFFC) == 0:
        return _gp0(sp)
    if op == SY.SYS_SYSENTER:
        eflags = get_eflags(sp)
        set_eflags(sp, eflags & ~(F.VM | F.IF | F.RF))
        sset(sp, S.CPL, 0)
        set_seg_cache(sp, S.CS, cs & 0xFFFC, 0, 0xFFFF_FFFF, SYSENTER_FLAT_CODE)
        set_seg_cache(sp, S.SS, (cs & 0xFFFC) + 8, 0, 0xFFFF_FFFF, SYSENTER_FLAT_DATA)
        sset(sp, S.ESP, sget(sp, S.SYSENTER_ESP) & 0xFFFF_FFFF)
        sset(sp, S.EIP, sget(sp, S.SYSENTER_EIP) & 0xFFFF_FFFF)
        if eflags & F.VM:
            resummarize_segments(sp)
    else:
        if sget(sp, S.CPL) != 0 or _vm(sp):
            return _gp0(sp)
        dpl3 = 3 << S.ATTR_DPL_SHIFT
        sset(sp, S.CPL, 3)
        set_seg_cache(sp, S.CS, ((cs + 16) & 0xFFFC) | 3, 0, 0xFFFF_FFFF, SYSENTER_FLAT_CODE | dpl3)
        set_seg_cache(sp, S.SS, ((cs + 24) & 0xFFFC) | 3, 0, 0xFFFF_FFFF, SYSENTER_FLAT_DATA | dpl3)
        sset(sp, S.ESP, sget(sp, S.ECX) & 0xFFFF_FFFF)
        sset(sp, S.EIP, sget(sp, S.EDX) & 0xFFFF_FFFF)
    update_hflags(sp)
    return SY.SYS_END_BLOCK


# ============================================================================== entry point
@njit(cache=True)
def system_insn(sp, tp, mp, cp, op, size, dst, src, has_mem, ea, seg, imm, user):
    """Run system operation `op` (a SYS_* number); see the module docstring for the contract."""
    if op == SY.SYS_MOV_TO_CR or op == SY.SYS_MOV_FROM_CR:
        return _mov_cr(sp, tp, cp, op, dst, src)
    if op == SY.SYS_MOV_TO_DR or op == SY.SYS_MOV_FROM_DR:
        return _mov_dr(sp, op, dst, src)
    if op <= SY.SYS_SIDT:
        return _table_regs(sp, tp, mp, cp, op, size, dst, src, has_mem, ea, seg, user)
    if op == SY.SYS_LLDT or op == SY.SYS_LTR:
        return _lldt_ltr(sp, tp, mp, cp, op, dst, src, ea, seg, user)
    if op == SY.SYS_SLDT or op == SY.SYS_STR:
        return _sldt_str(sp, tp, mp, cp, op, size, dst, src, ea, seg, user)
    if op == SY.SYS_LMSW or op == SY.SYS_SMSW or op == SY.SYS_CLTS:
        return _msw(sp, tp, mp, cp, op, size, dst, src, ea, seg, user)
    if op == SY.SYS_INVLPG:
        if not has_mem:
            return _ud(sp)
        if not _priv_ok(sp):
            return _gp0(sp)
        la = (sget(sp, S.SEGBASE + seg * S.SEG_STRIDE) + ea) & 0xFFFF_FFFF
        tlb_flush_page(tp, la)
        count(cp, K.TLB_INVLPG)
        return SY.SYS_END_BLOCK
    if op == SY.SYS_INVD or op == SY.SYS_WBINVD:
        if not _priv_ok(sp):
            return _gp0(sp)
        return SY.SYS_CONTINUE
    if op == SY.SYS_CPUID or op == SY.SYS_RDTSC or op == SY.SYS_RDPMC:
        return _counters(sp, op)
    if op == SY.SYS_RDMSR or op == SY.SYS_WRMSR:
        return _msr(sp, op)
    if op >= SY.SYS_LAR and op <= SY.SYS_VERW:
        return _desc_query(sp, tp, mp, cp, op, size, dst, src, ea, seg, user)
    if op == SY.SYS_ARPL:
        return _arpl(sp, tp, mp, cp, dst, src, ea, seg, user)
    if op == SY.SYS_SYSENTER or op == SY.SYS_SYSEXIT:
        return _sysenter_exit(sp, op, size)
    if op == SY.SYS_FXSAVE or op == SY.SYS_FXRSTOR:
        if not has_mem:
            return _ud(sp)
        r = fxsave_fxrstor(sp, tp, mp, cp, user, op == SY.SYS_FXRSTOR, seg, ea)
        return r if r < 0 else SY.SYS_CONTINUE
    return _ud(sp)  # RSM outside SMM, and anything unknown
