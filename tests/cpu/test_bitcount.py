"""POPCNT, LZCNT and TZCNT: the first instructions run by a semantic function (emu/cpu/semantics.py)
through the table-driven H_SCALAR family, in both tiers, against unicorn.

SDM Vol. 2B: POPCNT sets the destination to the number of 1 bits of the source, ZF = (source == 0)
and clears OF SF AF CF PF. LZCNT/TZCNT count the leading/trailing zero bits of the source (the
operand width when it is 0), CF = (source == 0), ZF = (result == 0), OF SF PF AF undefined (pyemu
clears them, as QEMU and so unicorn do, so all six flags are compared). The memory form reads the
source and then is the register form.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emu.cpu import features as FT
from emu.cpu import gen_dispatch
from emu.cpu import handlers as H
from emu.cpu import semantics as SEM
from emu.cpu import state as S
from emu.translate import decoder as D
from emu.translate import opcodes as O
from emu.translate import translator as T
from tests.cpu.guestasm import assemble, needs_nasm
from tests.cpu.test_unicorn_diff import (
    ALL6,
    CODE,
    DATA_END,
    ESP32,
    GPRS,
    SEG_DS16,
    UC_REG,
    X,
    hlt_image,
    pyemu_run,
    system_image,
    uc_run,
)

INSNS = ("popcnt", "lzcnt", "tzcnt")
MEM = 0x9000  # the memory source operand (inside the test image's data area)
VALUES = st.one_of(st.integers(0, 0xFFFF_FFFF), st.sampled_from(
    [0, 1, 2, 0x80, 0x8000, 0xFFFF, 0x1_0000, 0x8000_0000, 0xFFFF_FFFF, 0x7FFF_FFFF, 0x0001_8000]))


def test_generated_dispatch_is_up_to_date():
    """emu/cpu/scalar_dispatch.py is what `python3 -m emu.cpu.gen_dispatch` makes of the registry."""
    assert gen_dispatch.TARGET.read_text() == gen_dispatch.generate(), (
        "scalar_dispatch.py is stale: run python3 -m emu.cpu.gen_dispatch")


def test_rows_name_their_function_and_map_to_one_handler():
    """Each row with a semantic column runs H_SCALAR with its function's number: nothing else in
    the translator names these instructions."""
    numbers = SEM.by_name()
    rows = {f.name: f for f in O.FORMS if f.sem is not None}
    assert set(INSNS) <= set(rows)
    for name, f in rows.items():
        assert T.FORM_H[f.index] == H.H_SCALAR
        assert T.FORM_AUX[f.index] == numbers[f.sem.fn].number, name


@pytest.mark.parametrize("hx, name", [
    ("f3 0f b8 c1", "popcnt"), ("f3 0f bd c1", "lzcnt"), ("f3 0f bc c1", "tzcnt"),
    ("0f bc c1", "bsf"), ("0f bd c1", "bsr"),  # without F3: BSF/BSR (SDM: F3 is mandatory)
    ("f2 0f bc c1", "bsf"), ("66 0f bd c1", "bsr"),
    ("66 f3 0f b8 c1", "popcnt"), ("f3 66 0f bd 00", "lzcnt"),  # 66 is the operand size
])
def test_mandatory_f3_selects_the_count(hx, name):
    r, out = D.decode_bytes(bytes.fromhex(hx), 32)
    assert r == len(bytes.fromhex(hx))
    assert D.MNEMONICS[int(out[D.F_MNEM])] == name
    if "66" in hx.split():
        assert out[D.F_OPSIZE] == 2
    if name in INSNS:
        assert out[D.F_REP] == 0  # the F3 was the mandatory prefix, not a REP


@pytest.mark.parametrize("hx", ["f0 f3 0f b8 00", "f3 f0 0f bd 00", "f0 f3 0f bc 00"])
def test_lock_is_invalid(hx):
    """LOCK with POPCNT/LZCNT/TZCNT is #UD (SDM Vol. 2A, LOCK: only the listed read-modify-write
    instructions with a memory destination); their rows are not LOCKABLE."""
    assert D.decode_bytes(bytes.fromhex(hx) + bytes(8), 32)[0] == D.DEC_INVALID


def test_cpuid_advertises_exactly_the_implemented_features():
    """CPUID.01H:ECX.POPCNT[23], CPUID.(07H,0):EBX.BMI1[3], CPUID.80000001H:ECX.LZCNT[5]: set,
    derived from the table's feature column, because every row naming them is implemented."""
    from emu.cpu import system as Y

    assert FT.implemented() == {"popcnt", "bmi1", "lzcnt"}
    assert Y.cpuid_values(1, 0)[2] & (1 << 23)
    assert Y.CPUID_MAX_BASIC >= 7
    assert Y.cpuid_values(7, 0)[1] == 1 << 3
    assert Y.cpuid_values(7, 1) == (0, 0, 0, 0)
    assert Y.cpuid_values(0x8000_0001, 0)[2] == 1 << 5
    for leaf in (3, 4, 5, 6):
        assert Y.cpuid_values(leaf, 0) == (0, 0, 0, 0)


def test_a_feature_with_an_unimplemented_row_is_not_advertised(monkeypatch):
    monkeypatch.setattr(O, "TABLE", O.TABLE + [("F3 0F FF /r", "nothing", "Gv,Ev", 0, O.Sem("no_such", "popcnt"))])
    assert "popcnt" not in FT.implemented()
    assert FT.advertised(1, 0, FT.ECX) == 0


_images: dict = {}


def _image(insn: str, size: int, form: str):
    key = (insn, size, form)
    if key not in _images:
        dst, src = ("eax", "ebx") if size == 4 else ("ax", "bx")
        if form == "mem":
            src = f"{'dword' if size == 4 else 'word'} [{MEM:#x}]"
        # twice (LOOP keeps the flags): the second pass finds the data page in the TLB, so in
        # tier 1 the instruction runs inside compiled code in both forms
        _images[key] = hlt_image(f"mov ecx, 2\ntop: {insn} {dst}, {src}\nloop top\n")
    return _images[key]


@needs_nasm
@pytest.mark.parametrize("form", ["reg", "mem"])
@pytest.mark.parametrize("size", [2, 4])
@pytest.mark.parametrize("insn", INSNS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(src=VALUES, dst=VALUES, eflags=st.integers(0, 0xFFF))
def test_against_unicorn_in_both_tiers(insn, size, form, src, dst, eflags):
    """The destination, the six status flags and memory as unicorn has them, interpreted and
    compiled (tier 1 runs the instruction inside compiled code)."""
    img = bytearray(_image(insn, size, form))
    img[MEM:MEM + 4] = src.to_bytes(4, "little")
    regs = dict.fromkeys(GPRS, 0) | {"esp": ESP32, "eax": dst, "ebx": src}
    fl = (eflags & ALL6) | 2
    end = img.index(0xF4, CODE)  # the HLT after the instruction
    ref = uc_run(32, img, regs, fl, end)
    assert ref.exception is None
    want = ([ref.uc.reg_read(UC_REG[n]) for n in GPRS], ref.uc.reg_read(X.UC_X86_REG_EFLAGS) & ALL6)
    for tier in (0, 1):
        core, reason = pyemu_run(32, img, regs, fl, tier)
        assert reason == S.EXIT_HLT
        got = ([int(core.st[i]) & 0xFFFF_FFFF for i in range(8)], core.get_flags() & ALL6)
        assert got == want, f"tier {tier}: {insn} size {size} {form} src={src:#x} dst={dst:#x}"
        assert core.mem[:DATA_END].tobytes() == bytes(ref.uc.mem_read(0, DATA_END))
        if tier:
            assert core.ran_compiled >= 1


@needs_nasm
def test_a_loop_of_counts_runs_compiled():
    """A hot loop made of the three and of BSF/BSR (the same path) runs inside tier-1 code (the
    loop's compiled share) and ends as the interpreter ends it."""
    src = """
        mov ecx, 3000
    top:
        popcnt eax, ecx
        lzcnt ebx, ecx
        tzcnt edx, ecx
        add esi, eax
        add esi, ebx
        add edi, edx
        popcnt dx, cx
        adc edi, edx
        mov [0x9000], ecx
        lzcnt eax, [0x9000]
        add esi, eax
        bsf eax, ecx
        add esi, eax
        bsr ebx, [0x9000]
        add edi, ebx
        dec ecx
        jnz top
    """
    img = hlt_image(src)
    regs = dict.fromkeys(GPRS, 0) | {"esp": ESP32}
    states = []
    for tier in (0, 1):
        core, reason = pyemu_run(32, img, regs, 2, tier)
        assert reason == S.EXIT_HLT
        states.append(([int(core.st[i]) for i in range(8)], core.get_flags() & ALL6))
        if tier:
            insns = 1 + 17 * 3000  # MOV, then 17 instructions a pass
            assert core.ran_compiled > 0.95 * insns
    assert states[0] == states[1]


@needs_nasm
@given(value=VALUES)
@settings(max_examples=25, deadline=None)
def test_16bit_code_counts_at_the_operand_size(value):
    """In real mode the operand size is 16 bits unless 66 makes it 32 (SDM Vol. 1, 3.6): POPCNT,
    LZCNT and TZCNT count 16 or 32 bits accordingly. (QEMU, so unicorn, sizes POPCNT by the 66
    prefix alone, so this is checked against the SDM, not unicorn.)"""
    code = assemble("popcnt ax, word [0]\npopcnt ecx, dword [0]\nlzcnt dx, word [0]\n"
                    "lzcnt ebx, dword [0]\ntzcnt si, word [0]\ntzcnt edi, dword [0]\nhlt\n", bits=16, org=CODE)
    img = system_image(16)
    img[CODE:CODE + len(code)] = code
    base = SEG_DS16 << 4
    img[base:base + 4] = value.to_bytes(4, "little")
    w = value & 0xFFFF
    want = {S.EAX: bin(w).count("1"), S.ECX: bin(value).count("1"),
            S.EDX: 16 - w.bit_length(), S.EBX: 32 - value.bit_length(),
            S.ESI: 16 if w == 0 else (w & -w).bit_length() - 1,
            S.EDI: 32 if value == 0 else (value & -value).bit_length() - 1}
    for tier in (0, 1):
        core, reason = pyemu_run(16, img, dict.fromkeys(GPRS, 0) | {"esp": 0x1000}, 2, tier)
        assert reason == S.EXIT_HLT
        assert {r: int(core.st[r]) & 0xFFFF for r in want} == want, f"tier {tier}, value {value:#x}"
