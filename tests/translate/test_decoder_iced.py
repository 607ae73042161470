"""The decoder against iced's decoder test vectors (DecoderTest16.txt / DecoderTest32.txt).

Vector format: ``HEXBYTES, Code, Mnemonic, operand-count, operands...``. The length is the number of
hex bytes. Lines with ``decopt=`` need non-default decoder options and are skipped (the default
decoder's vector for the same bytes, e.g. ``F0 00 CE, INVALID``, is the one checked).

In scope: the ISA of a Pentium 4 / Nehalem-class 32-bit CPU (8086..SSE4.2, POPCNT, CRC32, x87 with
the undocumented aliases real CPUs execute). Every in-scope vector must agree on length, mnemonic
(through ``ALIASES``) and validity. Out of scope, by iced Code name (the ``code=`` field for INVALID
vectors): see ``OUT_OF_SCOPE``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from emu.translate import decoder as D
from emu.translate.disasm import disasm_mnemonic

DATA = Path(__file__).resolve().parents[1] / "data" / "iced-decoder"  # tests/data/README.md

# Code-name prefixes (iced's Code enum) of features the emulated CPU lacks, with the reason.
OUT_OF_SCOPE = {
    # encodings outside the legacy maps: only their length is decoded (unsupported extension)
    "VEX_": "AVX/AVX2/BMI/FMA... (VEX)", "EVEX_": "AVX-512 (EVEX)", "XOP_": "AMD XOP",
    "D3NOW_": "AMD 3DNow!", "Femms": "AMD 3DNow!",
    # vendor-specific or obsolete CPUs
    "Xstore": "VIA PadLock", "Xcrypt": "VIA PadLock", "Xsha": "VIA PadLock", "Montmul": "VIA PadLock",
    "Via_": "VIA", "Ccs_": "Zhaoxin GMI", "Loadall": "286/386 only", "Storeall": "486 only",
    "Mov_r32_tr": "386/486 test registers", "Mov_tr_r32": "386/486 test registers",
    "Ibts": "early 386", "Xbts": "early 386", "Jmpe": "IA-64", "Cl1invmb": "Intel SCC",
    "Frstpm": "287 only", "Fnstdw": "387SL only", "Fnstsg": "387SL only", "Umov": "386/486",
    "Rdshr": "Cyrix", "Wrshr": "Cyrix", "Smint": "Cyrix", "Dmint": "Cyrix", "Rdm": "Cyrix",
    "Svdc": "Cyrix", "Rsdc": "Cyrix", "Svldt": "Cyrix", "Rsldt": "Cyrix", "Svts": "Cyrix", "Rsts": "Cyrix",
    "Bb0_reset": "Cyrix", "Bb1_reset": "Cyrix", "Cpu_read": "Cyrix", "Cpu_write": "Cyrix",
    "Altinst": "Centaur", "Paveb": "Cyrix EMMI", "Paddsiw": "Cyrix EMMI", "Pmagw": "Cyrix EMMI",
    "Pdistib": "Cyrix EMMI", "Psubsiw": "Cyrix EMMI", "Pmvzb": "Cyrix EMMI", "Pmulhrw": "Cyrix EMMI",
    "Pmvnzb": "Cyrix EMMI", "Pmvlzb": "Cyrix EMMI", "Pmvgezb": "Cyrix EMMI", "Pmulhriw": "Cyrix EMMI",
    "Pmachriw": "Cyrix EMMI", "Ftstp": "Cyrix", "Frint2": "Cyrix", "Frichop": "Cyrix", "Frinear": "Cyrix",
    # system extensions: virtualisation, security, tracing
    "Vm": "VMX/SVM", "Invept": "VMX", "Invvpid": "VMX", "Stgi": "AMD SVM", "Clgi": "AMD SVM",
    "Skinit": "AMD SVM", "Invlpga": "AMD SVM", "Invlpgb": "AMD", "Tlbsync": "AMD", "Pvalidate": "AMD SEV",
    "Rmpadjust": "AMD SEV", "Rmpupdate": "AMD SEV", "Psmash": "AMD SEV", "Rmpquery": "AMD SEV",
    "Encls": "SGX", "Enclu": "SGX", "Enclv": "SGX", "Getsec": "SMX", "Tdcall": "TDX", "Seamcall": "TDX",
    "Seamret": "TDX", "Seamops": "TDX", "Pconfig": "MKTME", "Ptwrite": "Intel PT",
    "Bnd": "MPX", "Endbr": "CET", "Incssp": "CET", "Rdssp": "CET", "Saveprevssp": "CET",
    "Rstorssp": "CET", "Wrss": "CET", "Wruss": "CET", "Setssbsy": "CET", "Clrssbsy": "CET",
    "Xbegin": "TSX", "Xend": "TSX", "Xabort": "TSX", "Xtest": "TSX", "Xsusldtrk": "TSX-LDTRK",
    "Xresldtrk": "TSX-LDTRK",
    # instruction-set extensions after SSE4.2 / POPCNT / CRC32
    "Aes": "AES-NI", "Pclmulqdq": "PCLMULQDQ", "Sha": "SHA", "Gf2p8": "GFNI", "Loadiwkey": "KeyLocker",
    "Encodekey": "KeyLocker", "Xsave": "XSAVE", "Xrstor": "XSAVE", "Xgetbv": "XSAVE", "Xsetbv": "XSAVE",
    "Rdrand": "RDRAND", "Rdseed": "RDSEED", "Rdpid": "RDPID", "Movbe": "MOVBE", "Adcx": "ADX",
    "Adox": "ADX", "Clac": "SMAP", "Stac": "SMAP",
    "Clflushopt": "CLFLUSHOPT", "Clwb": "CLWB", "Umonitor": "WAITPKG", "Umwait": "WAITPKG",
    "Tpause": "WAITPKG", "Movdiri": "MOVDIRI", "Movdir64b": "MOVDIR64B", "Enqcmd": "ENQCMD",
    "Serialize": "SERIALIZE", "Wbnoinvd": "WBNOINVD", "Rdpkru": "PKU", "Wrpkru": "PKU", "Hreset": "HRESET",
    "Invpcid": "INVPCID", "Cldemote": "CLDEMOTE", "Mcommit": "AMD MCOMMIT", "Monitorx": "AMD MONITORX",
    "Mwaitx": "AMD MONITORX", "Clzero": "AMD CLZERO", "Rdpru": "AMD RDPRU", "Wrmsrns": "WRMSRNS",
    "Prefetchit": "PREFETCHI", "Aadd": "RAO-INT", "Aand": "RAO-INT", "Aor": "RAO-INT", "Axor": "RAO-INT",
    "Extrq": "AMD SSE4a", "Insertq": "AMD SSE4a", "Movntss": "AMD SSE4a", "Movntsd": "AMD SSE4a",
    "Pcommit": "PCOMMIT (withdrawn)", "Uiret": "UINTR", "Testui": "UINTR", "Clui": "UINTR",
    "Stui": "UINTR", "Senduipi": "UINTR", "Rdmsrlist": "MSRLIST", "Wrmsrlist": "MSRLIST",
    "Erets": "FRED", "Eretu": "FRED", "Lkgs": "FRED", "Cmpccxadd": "CMPCCXADD",
    "Sysexitq": "64-bit", "Sysretq": "64-bit", "Swapgs": "64-bit",
}
# in-scope instructions whose operands iced spells as a different mnemonic than our disassembler
ALIASES = {"pushad": "pushal", "popad": "popal", "reservednop": "nop", "xlat": "xlatb",
           "fneni": "fneni", "fsetpm": "fnsetpm"}
# far call/jmp print as lcall/ljmp (capstone's spelling)
FAR = {"callf": "call", "jmpf": "jmp"}


def _load(bits: int):
    vectors = []
    for line in (DATA / f"DecoderTest{bits}.txt").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "decopt=" in line:
            continue
        fields = [f.strip() for f in line.split(",")]
        hexbytes, code, mnem = fields[0], fields[1], fields[2]
        rest = ",".join(fields[4:])
        if code == "INVALID":
            m = re.search(r"code=(\S+)", rest)
            code_for_scope = m.group(1) if m else "INVALID"
        else:
            code_for_scope = code
        vectors.append((bytes.fromhex(hexbytes.replace(" ", "")), code, mnem.lower(), code_for_scope, line))
    return vectors


def _out_of_scope(code: str, data: bytes) -> str | None:
    for prefix, reason in OUT_OF_SCOPE.items():
        if code.startswith(prefix):
            return reason
    # LOCK MOV CR: AMD's alternative encoding of CR8 (64-bit only register)
    if code.startswith("Mov_") and "cr" in code and data[:1] == b"\xf0":
        return "AMD CR8 via LOCK"
    return None


def check_file(bits: int):
    checked = skipped = 0
    failures = []
    out = np.zeros(D.OUT_SIZE, np.int64)
    for data, code, mnem, scope_code, line in _load(bits):
        if _out_of_scope(scope_code, data):
            skipped += 1
            continue
        checked += 1
        buf = np.frombuffer(data, np.uint8)
        r = D.decode(buf, 0, len(buf), bits == 32, out)
        if code == "INVALID":
            if r != D.DEC_INVALID:
                failures.append(f"{line}  -> decoded len {r} {D.FORMS[int(out[D.F_FORM])]}")
            continue
        if r != len(data):
            failures.append(f"{line}  -> {r} {D.FORMS[int(out[D.F_FORM])] if r > 0 else ''}")
            continue
        form = int(out[D.F_FORM])
        ours = disasm_mnemonic(form, int(out[D.F_OPSIZE]), int(out[D.F_ADSIZE]))
        name = D.FORMS[form].name
        theirs = ALIASES.get(mnem, mnem)
        if name in FAR:
            ours = FAR[name]
        if ours != theirs:
            failures.append(f"{line}  -> mnemonic {ours}")
    return checked, skipped, failures


@pytest.mark.parametrize("bits", [16, 32])
def test_iced_vectors(bits):
    checked, skipped, failures = check_file(bits)
    print(f"iced DecoderTest{bits}: {checked} vectors checked, {skipped} scoped out")
    assert checked > 3000
    assert not failures, f"{len(failures)} failures:\n" + "\n".join(failures[:60])


if __name__ == "__main__":
    for b in (16, 32):
        c, s, f = check_file(b)
        print(b, c, s, len(f))
        print("\n".join(f[:400]))
