"""The system-instruction group (emu/cpu/system.py), driven directly on a minimal machine.

Each case states the SDM rule it checks (Vol 2 instruction pages, Vol 3 2.5/4.4.1/17.2, Vol 4).
"""

from __future__ import annotations

import struct

import pytest

from emu.cpu import flags as F
from emu.cpu import state as S
from emu.cpu import sysops as SY
from emu.cpu import system as Y
from emu.mmu.tlb import TAG_EMPTY, TE_PHYS, TEF_GLOBAL, TLB_STRIDE
from tests.cpu.sysharness import Machine, desc

NONE = -2
MEM = -1
GP, UD, NP, DB = 13, 6, 11, 1


def run(m: Machine, op: int, size: int = 4, dst: int = NONE, src: int = NONE, has_mem: bool = False,
        ea: int = 0, seg: int = S.DS, user: int = 0) -> int:
    m.clear_fault()
    return Y.system_insn(m.sp, m.tp, m.mp, m.cp, op, size, dst, src, has_mem, ea, seg, 0, user)


def faulted(m: Machine, r: int, vector: int, error: int) -> bool:
    return r < 0 and m.fault() == (vector, error)


def pm(cpl: int = 0, extra: list[bytes] | None = None) -> Machine:
    """Flat protected mode with a GDT at 0x1000: 08h code, 10h data (DPL cpl), then `extra`."""
    m = Machine()
    dpl = cpl << 5
    m.protected_flat(0x1000, [desc(0, 0xFFFFF, 0x9B | dpl), desc(0, 0xFFFFF, 0x93 | dpl)] + (extra or []),
                     cpl=cpl)
    return m


# ------------------------------------------------------------------------------ CPUID
def cpuid(m: Machine, leaf: int, subleaf: int = 0) -> tuple[int, int, int, int]:
    m.st[S.EAX] = leaf
    m.st[S.ECX] = subleaf
    assert run(m, SY.SYS_CPUID) == SY.SYS_CONTINUE
    return tuple(int(m.st[r]) for r in (S.EAX, S.EBX, S.ECX, S.EDX))


def test_cpuid_vendor_and_features():
    m = Machine()
    a, b, c, d = cpuid(m, 0)
    assert a >= 1
    assert struct.pack("<III", b, d, c) == b"GenuineIntel"
    a, b, c, d = cpuid(m, 1)
    assert (a >> 8) & 0xF == 6  # family 6
    assert d == Y.CPUID_1_EDX
    for bit in (0, 3, 4, 5, 6, 8, 11, 13, 15, 24):  # FPU PSE TSC MSR PAE CX8 SEP PGE CMOV FXSR
        assert d & (1 << bit)
    assert c == 1 << 23  # POPCNT only (implemented; derived from the opcode table, tests/cpu/test_bitcount.py)


def test_cpuid_brand_string_names_pyemu():
    m = Machine()
    assert cpuid(m, 0x8000_0000)[0] >= 0x8000_0004
    raw = b"".join(struct.pack("<IIII", *cpuid(m, leaf)) for leaf in (0x8000_0002, 0x8000_0003, 0x8000_0004))
    assert len(raw) == 48 and raw.rstrip(b"\0").decode() == "pyemu Virtual CPU"


def test_cpuid_out_of_range_leaf_returns_highest_basic_leaf():
    m = Machine()
    assert cpuid(m, 0x40) == cpuid(m, Y.CPUID_MAX_BASIC)


# ------------------------------------------------------------------------------ MSRs
def wrmsr(m: Machine, msr: int, value: int, **kw) -> int:
    m.st[S.ECX] = msr
    m.st[S.EAX] = value & 0xFFFF_FFFF
    m.st[S.EDX] = value >> 32
    return run(m, SY.SYS_WRMSR, **kw)


def rdmsr(m: Machine, msr: int) -> int:
    m.st[S.ECX] = msr
    r = run(m, SY.SYS_RDMSR)
    assert r == SY.SYS_CONTINUE, m.fault()
    return int(m.st[S.EAX]) | (int(m.st[S.EDX]) << 32)


@pytest.mark.parametrize("msr,value", [
    (0x174, 0x0008), (0x175, 0xC000_1000), (0x176, 0xC010_2030),
    (0x277, 0x0006_0504_0100_0706), (0x2FF, 0xC06), (0x250, 0x0606_0606_0606_0606),
    (0x26F, 0x0505_0505_0000_0000), (0x200, 0xF_FFFF_F006), (0x20F, 0xF_FFFF_F800)])
def test_msr_round_trip(msr, value):
    m = Machine()
    assert wrmsr(m, msr, value) == SY.SYS_CONTINUE
    assert rdmsr(m, msr) == value


def test_msr_defaults():
    m = Machine()
    assert rdmsr(m, 0x277) == 0x0007_0406_0007_0406  # PAT power-on value
    assert rdmsr(m, 0xFE) & 0xFF == 8 and rdmsr(m, 0xFE) & (1 << 8)  # MTRRcap: 8 variable, fixed
    assert rdmsr(m, 0x1B) & 0xFFFF_F000 == 0xFEE0_0000


def test_tsc_msr_write_then_rdtsc():
    m = Machine()
    m.st[S.ICOUNT] = 1000
    assert wrmsr(m, 0x10, 0x1_0000_0000) == SY.SYS_CONTINUE
    m.st[S.ICOUNT] = 1010
    assert run(m, SY.SYS_RDTSC) == SY.SYS_CONTINUE
    assert (int(m.st[S.EDX]) << 32) | int(m.st[S.EAX]) == 0x1_0000_0000 + 10 * Y.TSC_PER_INSN  # at the reset rate
    assert rdmsr(m, 0x10) == 0x1_0000_0000 + 10 * Y.TSC_PER_INSN


@pytest.mark.parametrize("msr,value", [
    (0x12345, 0), (0xC000_0080, 0), (0xFE, 0),  # unknown; EFER (no NX exposed); MTRRcap is read-only
    (0x277, 0x02),  # PAT type 2 is reserved
    (0x277, 0x08),  # PAT reserved bits
    (0x2FF, 0x1006),  # MTRRdefType reserved bit 12
    (0x200, 0x3),  # PHYSBASE type 3 is reserved
    (0x201, 0x400),  # PHYSMASK reserved bit 10
    (0x1B, 0xFEE0_0900)])  # the APIC base is fixed
def test_wrmsr_gp(msr, value):
    m = Machine()
    assert faulted(m, wrmsr(m, msr, value), GP, 0)


def test_rdmsr_unknown_gp_and_cpl3_gp():
    m = Machine()
    m.st[S.ECX] = 0xC000_0080
    assert faulted(m, run(m, SY.SYS_RDMSR), GP, 0)
    m = pm(cpl=3)
    m.st[S.ECX] = 0x174
    assert faulted(m, run(m, SY.SYS_RDMSR), GP, 0)
    assert faulted(m, wrmsr(m, 0x174, 8), GP, 0)


def test_rdtsc_tsd():
    m = pm(cpl=3)
    assert run(m, SY.SYS_RDTSC) == SY.SYS_CONTINUE
    m.st[S.CR4] = Y.CR4_TSD
    assert faulted(m, run(m, SY.SYS_RDTSC), GP, 0)
    m.st[S.CPL] = 0
    assert run(m, SY.SYS_RDTSC) == SY.SYS_CONTINUE


def test_rdpmc_rules_and_rsm():
    m = pm(cpl=3)
    m.st[S.ECX] = 0
    assert faulted(m, run(m, SY.SYS_RDPMC), GP, 0)
    m.st[S.CR4] = Y.CR4_PCE
    assert run(m, SY.SYS_RDPMC) == SY.SYS_CONTINUE
    m.st[S.ECX] = 7
    assert faulted(m, run(m, SY.SYS_RDPMC), GP, 0)
    assert faulted(m, run(m, SY.SYS_RSM), UD, -1)


# ------------------------------------------------------------------------------ control registers
def mov_to_cr(m: Machine, n: int, value: int) -> int:
    m.st[S.EAX] = value
    return run(m, SY.SYS_MOV_TO_CR, dst=n, src=S.EAX)


def mov_from_cr(m: Machine, n: int) -> int:
    assert run(m, SY.SYS_MOV_FROM_CR, dst=S.EBX, src=n) == SY.SYS_CONTINUE
    return int(m.st[S.EBX])


def test_cr0_rules():
    m = Machine()
    assert faulted(m, mov_to_cr(m, 0, 0x8000_0000), GP, 0)  # PG without PE
    assert faulted(m, mov_to_cr(m, 0, 0x2000_0001), GP, 0)  # NW without CD
    assert mov_to_cr(m, 0, 0x11) == SY.SYS_END_BLOCK  # PE: a mode change
    assert m.st[S.HFLAGS] & S.HF_PE
    assert mov_from_cr(m, 0) == 0x11
    assert mov_to_cr(m, 0, 0x0001_0001) == SY.SYS_END_BLOCK  # WP changes translations
    assert mov_from_cr(m, 0) & 0x10  # ET is hardwired to 1


def test_cr_numbers_ud_and_privilege():
    m = Machine()
    for n in (1, 5, 6, 7):
        assert faulted(m, mov_to_cr(m, n, 0), UD, -1)
        assert faulted(m, run(m, SY.SYS_MOV_FROM_CR, dst=S.EBX, src=n), UD, -1)
    m = pm(cpl=3)
    assert faulted(m, mov_to_cr(m, 0, 0x11), GP, 0)
    assert faulted(m, run(m, SY.SYS_MOV_FROM_CR, dst=S.EBX, src=3), GP, 0)


def test_cr4_reserved_bits():
    m = Machine()
    assert faulted(m, mov_to_cr(m, 4, 1), GP, 0)  # VME is not implemented
    assert faulted(m, mov_to_cr(m, 4, 1 << 10), GP, 0)  # OSXMMEXCPT: no SSE
    mov_to_cr(m, 4, 1 << 9)  # OSFXSR: allowed with CPUID.FXSR
    assert mov_from_cr(m, 4) == 1 << 9
    assert mov_to_cr(m, 4, 0x90) == SY.SYS_END_BLOCK  # PSE|PGE
    assert mov_from_cr(m, 4) == 0x90


def _fill_tlb(m: Machine, entries: int, global_every: int = 2) -> None:
    for i in range(entries):
        p = i * TLB_STRIDE
        m.tlb[p] = i << 12
        m.tlb[p + TE_PHYS] = TEF_GLOBAL if i % global_every == 0 else 0


def test_cr3_flush_keeps_global_entries_only_with_pge():
    m = Machine()
    _fill_tlb(m, 4)
    assert mov_to_cr(m, 3, 0x5000) == SY.SYS_END_BLOCK
    assert all(m.tlb[i * TLB_STRIDE] == TAG_EMPTY for i in range(4))  # PGE off: all flushed
    m.st[S.CR4] = 0x80
    _fill_tlb(m, 4)
    assert mov_to_cr(m, 3, 0x6000) == SY.SYS_END_BLOCK
    assert [m.tlb[i * TLB_STRIDE] != TAG_EMPTY for i in range(4)] == [True, False, True, False]
    assert mov_from_cr(m, 3) == 0x6000
    # CR4.PGE cleared: everything goes, global entries too
    _fill_tlb(m, 4)
    assert mov_to_cr(m, 4, 0) == SY.SYS_END_BLOCK
    assert all(m.tlb[i * TLB_STRIDE] == TAG_EMPTY for i in range(4))


def test_pae_pdpte_load_and_reserved_bit_gp():
    m = Machine()
    pdpt = 0x3000
    m.write(pdpt, struct.pack("<QQQQ", 0x4001, 0x5001, 0, 0x6001))
    assert mov_to_cr(m, 3, pdpt) == SY.SYS_END_BLOCK
    assert mov_to_cr(m, 4, 0x20) == SY.SYS_END_BLOCK  # PAE (paging off: no load yet)
    assert list(m.st[S.PDPTE0:S.PDPTE0 + 4]) == [0, 0, 0, 0]
    assert mov_to_cr(m, 0, 0x8000_0001) == SY.SYS_END_BLOCK  # PG with PAE: loads the PDPTEs
    assert list(m.st[S.PDPTE0:S.PDPTE0 + 4]) == [0x4001, 0x5001, 0, 0x6001]
    m.write(0x3100, struct.pack("<QQQQ", 0x7001, 0x7000 | 1 | (1 << 7), 0, 0))  # PS in a PDPTE: reserved
    assert faulted(m, mov_to_cr(m, 3, 0x3100), GP, 0)
    assert mov_from_cr(m, 3) == pdpt and m.st[S.PDPTE0] == 0x4001  # nothing changed
    m.write(0x3200, struct.pack("<QQQQ", 0x7001, 0x8000 | (1 << 7), 0, 0))  # not present: ignored
    assert mov_to_cr(m, 3, 0x3200) == SY.SYS_END_BLOCK
    assert m.st[S.PDPTE0] == 0x7001


def test_lmsw_cannot_clear_pe_and_smsw_clts():
    m = Machine()
    m.st[S.ECX] = 0xF
    assert run(m, SY.SYS_LMSW, size=2, dst=S.ECX) == SY.SYS_END_BLOCK
    assert m.st[S.CR0] & 0xF == 0xF
    m.st[S.ECX] = 0x0
    assert run(m, SY.SYS_LMSW, size=2, dst=S.ECX) == SY.SYS_CONTINUE
    assert m.st[S.CR0] & 0xF == 0x1  # PE stays
    m.st[S.CR0] |= 8
    assert run(m, SY.SYS_CLTS) == SY.SYS_CONTINUE
    assert not m.st[S.CR0] & 8
    m.st[S.EDX] = 0xFFFF_FFFF
    assert run(m, SY.SYS_SMSW, size=2, dst=S.EDX) == SY.SYS_CONTINUE
    assert m.st[S.EDX] == 0xFFFF_0000 | (int(m.st[S.CR0]) & 0xFFFF)
    assert run(m, SY.SYS_SMSW, size=2, dst=MEM, has_mem=True, ea=0x500) == SY.SYS_CONTINUE
    assert m.read(0x500, 2) == struct.pack("<H", int(m.st[S.CR0]) & 0xFFFF)


# ------------------------------------------------------------------------------ debug registers
def test_dr4_dr5_alias_and_de():
    m = Machine()
    m.st[S.EAX] = 0xFFFF_FFFF
    assert run(m, SY.SYS_MOV_TO_DR, dst=5, src=S.EAX) == SY.SYS_CONTINUE  # DR5 = DR7
    assert m.st[S.DR0 + 7] == (0xFFFF_FFFF & Y.DR7_WRITABLE) | 0x400
    m.st[S.DR0 + 7] = 0x400
    assert run(m, SY.SYS_MOV_FROM_DR, dst=S.EBX, src=4) == SY.SYS_CONTINUE  # DR4 = DR6
    assert m.st[S.EBX] == 0xFFFF0FF0
    m.st[S.CR4] = Y.CR4_DE
    assert faulted(m, run(m, SY.SYS_MOV_FROM_DR, dst=S.EBX, src=4), UD, -1)
    m = pm(cpl=3)
    assert faulted(m, run(m, SY.SYS_MOV_FROM_DR, dst=S.EBX, src=0), GP, 0)


def test_dr7_general_detect():
    m = Machine()
    m.st[S.DR0 + 7] = 0x400 | Y.DR7_GD
    assert faulted(m, run(m, SY.SYS_MOV_FROM_DR, dst=S.EBX, src=0), DB, -1)
    assert m.st[S.DR0 + 6] & Y.DR6_BD and not m.st[S.DR0 + 7] & Y.DR7_GD


# ------------------------------------------------------------------------------ descriptor tables
def test_lgdt_24_bit_base_with_16_bit_operand_and_sgdt():
    m = Machine()
    m.write(0x600, struct.pack("<HI", 0x3FF, 0xAB12_3456))
    assert run(m, SY.SYS_LGDT, size=2, dst=MEM, has_mem=True, ea=0x600) == SY.SYS_CONTINUE
    assert (m.st[S.GDTR_BASE], m.st[S.GDTR_LIMIT]) == (0x12_3456, 0x3FF)
    assert run(m, SY.SYS_LIDT, size=4, dst=MEM, has_mem=True, ea=0x600) == SY.SYS_CONTINUE
    assert (m.st[S.IDTR_BASE], m.st[S.IDTR_LIMIT]) == (0xAB12_3456, 0x3FF)
    assert run(m, SY.SYS_SIDT, size=4, dst=MEM, has_mem=True, ea=0x700) == SY.SYS_CONTINUE
    assert m.read(0x700, 6) == struct.pack("<HI", 0x3FF, 0xAB12_3456)
    assert faulted(m, run(m, SY.SYS_LGDT, size=4, dst=S.EAX), UD, -1)  # register operand
    m = pm(cpl=3)
    assert faulted(m, run(m, SY.SYS_LGDT, size=4, dst=MEM, has_mem=True, ea=0x600), GP, 0)
    assert run(m, SY.SYS_SGDT, size=4, dst=MEM, has_mem=True, ea=0x700, user=1) == SY.SYS_CONTINUE


TSS_AVAIL32 = 0x89
LDT_DESC = 0x82


def test_ltr_marks_busy_and_checks():
    # 18h: available 32-bit TSS, 20h: LDT, 28h: not-present TSS, 30h: data segment
    m = pm(extra=[desc(0x8000, 0x67, TSS_AVAIL32, 0), desc(0x9000, 0x17, LDT_DESC, 0),
                  desc(0x8000, 0x67, TSS_AVAIL32 & 0x7F, 0), desc(0, 0xFFFF, 0x93, 0)])
    for sel, err in ((0x20, 0x20), (0x30, 0x30), (0x1C, 0x1C), (0x80, 0x80)):
        m.st[S.EAX] = sel
        assert faulted(m, run(m, SY.SYS_LTR, size=2, dst=S.EAX), GP, err), hex(sel)
    m.st[S.EAX] = 0
    assert faulted(m, run(m, SY.SYS_LTR, size=2, dst=S.EAX), GP, 0)
    m.st[S.EAX] = 0x28
    assert faulted(m, run(m, SY.SYS_LTR, size=2, dst=S.EAX), NP, 0x28)
    m.st[S.EAX] = 0x18
    assert run(m, SY.SYS_LTR, size=2, dst=S.EAX) == SY.SYS_CONTINUE
    assert (m.u32(0x1000 + 0x18 + 4) >> 8) & 0xF == 0xB  # busy now
    assert m.st[S.seg_slot(S.TR_SEG, S.SEG_BASE)] == 0x8000
    assert faulted(m, run(m, SY.SYS_LTR, size=2, dst=S.EAX), GP, 0x18)  # a busy TSS
    m.st[S.EBX] = 0xDEAD_BEEF
    assert run(m, SY.SYS_STR, size=4, dst=S.EBX) == SY.SYS_CONTINUE
    assert m.st[S.EBX] == 0x18
    # LLDT
    m.st[S.EAX] = 0x20
    assert run(m, SY.SYS_LLDT, size=2, dst=S.EAX) == SY.SYS_CONTINUE
    assert m.st[S.seg_slot(S.LDTR_SEG, S.SEG_BASE)] == 0x9000
    assert m.st[S.seg_slot(S.LDTR_SEG, S.SEG_LIMIT)] == 0x17
    m.st[S.EAX] = 0x18
    assert faulted(m, run(m, SY.SYS_LLDT, size=2, dst=S.EAX), GP, 0x18)
    assert run(m, SY.SYS_SLDT, size=2, dst=MEM, has_mem=True, ea=0x500) == SY.SYS_CONTINUE
    assert m.read(0x500, 2) == b"\x20\x00"
    m.st[S.EAX] = 0
    assert run(m, SY.SYS_LLDT, size=2, dst=S.EAX) == SY.SYS_CONTINUE  # null: allowed


@pytest.mark.parametrize("op", [SY.SYS_LLDT, SY.SYS_LTR, SY.SYS_SLDT, SY.SYS_STR, SY.SYS_LAR, SY.SYS_LSL,
                                SY.SYS_VERR, SY.SYS_VERW, SY.SYS_ARPL])
def test_ud_in_real_and_v86_mode(op):
    m = Machine()
    assert faulted(m, run(m, op, size=2, dst=S.EAX, src=S.EBX), UD, -1)
    m = pm(cpl=3)
    m.st[S.EFLAGS] |= F.VM
    assert faulted(m, run(m, op, size=2, dst=S.EAX, src=S.EBX), UD, -1)


@pytest.mark.parametrize("op", [SY.SYS_LLDT, SY.SYS_LTR, SY.SYS_CLTS, SY.SYS_LMSW, SY.SYS_INVD,
                                SY.SYS_WBINVD])
def test_cpl0_only(op):
    m = pm(cpl=3)
    assert faulted(m, run(m, op, size=2, dst=S.EAX), GP, 0)


def test_invlpg():
    m = Machine()
    assert faulted(m, run(m, SY.SYS_INVLPG, dst=S.EAX), UD, -1)
    _fill_tlb(m, 4, global_every=1)
    assert run(m, SY.SYS_INVLPG, dst=MEM, has_mem=True, ea=0x2010) == SY.SYS_END_BLOCK
    assert [m.tlb[i * TLB_STRIDE] != TAG_EMPTY for i in range(4)] == [True, True, False, True]
    m = pm(cpl=3)
    m.st[S.EFLAGS] |= F.VM
    assert faulted(m, run(m, SY.SYS_INVLPG, dst=MEM, has_mem=True, ea=0x2010), GP, 0)


# ------------------------------------------------------------------------------ LAR LSL VERR VERW ARPL
def _query(m: Machine, op: int, sel: int, size: int = 4):
    m.st[S.EBX] = sel
    m.st[S.EAX] = 0x1111_1111
    # other status flags must survive: set CF and SF
    from emu.cpu.eflags import set_status
    set_status(m.sp, F.CF | F.SF)
    if op in (SY.SYS_LAR, SY.SYS_LSL):
        r = run(m, op, size=size, dst=S.EAX, src=S.EBX)
    else:
        r = run(m, op, size=2, dst=S.EBX)
    assert r == SY.SYS_CONTINUE
    fl = F.read_eflags(*(int(m.st[s]) for s in (S.CC_OP, S.CC_DST, S.CC_SRC, S.CC_SRC2, S.EFLAGS)))
    assert fl & (F.CF | F.SF) == F.CF | F.SF
    return bool(fl & F.ZF), int(m.st[S.EAX])


def test_lar_lsl_verr_verw():
    # at CPL 3: 18h DPL3 data RW (limit 0x12345 pages), 20h DPL0 data, 28h DPL3 execute-only code,
    # 30h DPL0 conforming readable code, 38h DPL3 call gate, 40h DPL3 TSS, 48h DPL3 read-only data
    m = pm(cpl=3, extra=[desc(0, 0x12345, 0xF3, 0xC), desc(0, 0xFFFF, 0x93, 0), desc(0, 0xFFF, 0xF8, 0x4),
                         desc(0, 0xFFF, 0x9E, 0x4), struct.pack("<II", 0x0008_1000, 0x0000_EC00),
                         desc(0x8000, 0x67, 0xE9, 0), desc(0, 0xFF, 0xF1, 0)])
    assert _query(m, SY.SYS_LAR, 0x1B) == (True, 0x00C0_F300)
    assert _query(m, SY.SYS_LAR, 0x1B, size=2) == (True, 0x1111_F300)
    assert _query(m, SY.SYS_LSL, 0x1B) == (True, 0x1234_5FFF)
    assert _query(m, SY.SYS_LAR, 0x23) == (False, 0x1111_1111)  # DPL 0 < CPL 3
    assert _query(m, SY.SYS_LAR, 0x33)[0]  # conforming: no privilege check
    assert _query(m, SY.SYS_LAR, 0x3B) == (True, 0x0000_EC00)  # call gate: LAR yes
    assert _query(m, SY.SYS_LSL, 0x3B)[0] is False  # LSL no
    assert _query(m, SY.SYS_LSL, 0x43) == (True, 0x67)
    assert _query(m, SY.SYS_LAR, 0)[0] is False  # null
    assert _query(m, SY.SYS_LAR, 0x400)[0] is False  # beyond the GDT limit
    assert _query(m, SY.SYS_LAR, 0x1F)[0] is False  # LDT reference with no LDT
    assert _query(m, SY.SYS_VERR, 0x1B)[0] and _query(m, SY.SYS_VERW, 0x1B)[0]
    assert not _query(m, SY.SYS_VERR, 0x2B)[0]  # execute-only
    assert not _query(m, SY.SYS_VERW, 0x2B)[0]
    assert _query(m, SY.SYS_VERR, 0x33)[0]  # conforming readable code
    assert not _query(m, SY.SYS_VERW, 0x23)[0]
    assert _query(m, SY.SYS_VERR, 0x4B)[0] and not _query(m, SY.SYS_VERW, 0x4B)[0]
    assert not _query(m, SY.SYS_VERR, 0x43)[0]  # system segment


def test_arpl():
    m = pm(cpl=3)
    m.st[S.EAX] = 0x1230_0018
    m.st[S.EBX] = 0x0003
    assert run(m, SY.SYS_ARPL, size=2, dst=S.EAX, src=S.EBX) == SY.SYS_CONTINUE
    assert m.st[S.EAX] == 0x1230_001B
    assert F.read_eflags(*(int(m.st[s]) for s in (S.CC_OP, S.CC_DST, S.CC_SRC, S.CC_SRC2, S.EFLAGS))) & F.ZF
    assert run(m, SY.SYS_ARPL, size=2, dst=S.EAX, src=S.EBX) == SY.SYS_CONTINUE
    assert not F.read_eflags(*(int(m.st[s]) for s in (S.CC_OP, S.CC_DST, S.CC_SRC, S.CC_SRC2,
                                                        S.EFLAGS))) & F.ZF
    m.write(0x500, b"\x10\x00")
    assert run(m, SY.SYS_ARPL, size=2, dst=MEM, src=S.EBX, has_mem=True, ea=0x500, user=1) == SY.SYS_CONTINUE
    assert m.read(0x500, 2) == b"\x13\x00"


# ------------------------------------------------------------------------------ SYSENTER / SYSEXIT
def test_sysenter_sysexit():
    m = Machine()
    assert faulted(m, run(m, SY.SYS_SYSENTER), GP, 0)  # real mode
    m = pm(cpl=3)
    assert faulted(m, run(m, SY.SYS_SYSENTER), GP, 0)  # SYSENTER_CS = 0
    m.st[S.SYSENTER_CS] = 0x08
    m.st[S.SYSENTER_ESP] = 0x9000
    m.st[S.SYSENTER_EIP] = 0xC000_1000
    m.st[S.EFLAGS] |= F.IF
    assert run(m, SY.SYS_SYSENTER) == SY.SYS_END_BLOCK
    assert (m.st[S.CPL], m.st[S.EIP], m.st[S.ESP]) == (0, 0xC000_1000, 0x9000)
    assert m.st[S.seg_slot(S.CS, S.SEG_SEL)] == 0x08 and m.st[S.seg_slot(S.SS, S.SEG_SEL)] == 0x10
    assert not m.st[S.EFLAGS] & F.IF
    assert m.st[S.HFLAGS] & 3 == 0 and m.st[S.HFLAGS] & S.HF_CS32
    m.st[S.ECX] = 0x7000
    m.st[S.EDX] = 0x40_0000
    assert run(m, SY.SYS_SYSEXIT) == SY.SYS_END_BLOCK
    assert (m.st[S.CPL], m.st[S.EIP], m.st[S.ESP]) == (3, 0x40_0000, 0x7000)
    assert m.st[S.seg_slot(S.CS, S.SEG_SEL)] == 0x1B and m.st[S.seg_slot(S.SS, S.SEG_SEL)] == 0x23
    assert (m.st[S.seg_slot(S.CS, S.SEG_ATTR)] >> 5) & 3 == 3
    assert faulted(m, run(m, SY.SYS_SYSEXIT), GP, 0)  # CPL 3
