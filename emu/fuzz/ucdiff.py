"""`pyemu fuzz --unicorn`: flat 32-bit ring-0 programs that run to their closing HLT in pyemu
without an exception or an I/O exit are run in unicorn too; the GPRs, EIP and RAM must agree.

Kept simple: flags are not compared (random code leaves many undefined), and a value computed from
an undefined flag or an undefined result (BSF of 0, ...) can still differ; these findings are
informational (kind `unicorn`), for a person to judge.
"""

from __future__ import annotations

import numpy as np

from emu.fuzz import gen as G
from emu.fuzz import runner as R

_uc = None


def unicorn_check(r: R.Runner, p: dict) -> dict | None:
    global _uc
    if p["mode"] != "pm32" or p["ring3"]:
        return None
    import unicorn
    from unicorn import x86_const as X

    mem = R.image(p)
    (s0,) = r.run_tier(p, 0, mem)
    s = dict(s0)
    code = bytes.fromhex(p["code"])
    at = G.CODE_BASE + p["code_off"]
    if s["reason"] != "hlt" or s["exits"] or s["eip"] != at + len(code) + 1:
        return None  # not straight through to the closing HLT
    if _uc is None:
        _uc = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_32)
        _uc.mem_map(0, G.RAM)
    uc = _uc
    uc.mem_write(0, mem.tobytes())
    uc.ctl_remove_cache(0, G.RAM)
    ids = [X.UC_X86_REG_EAX, X.UC_X86_REG_ECX, X.UC_X86_REG_EDX, X.UC_X86_REG_EBX, X.UC_X86_REG_ESP,
           X.UC_X86_REG_EBP, X.UC_X86_REG_ESI, X.UC_X86_REG_EDI]
    for rid, v in zip(ids, p["regs"], strict=True):
        uc.reg_write(rid, v & 0xFFFF_FFFF)
    uc.reg_write(X.UC_X86_REG_EFLAGS, p["eflags"] | 2)
    try:
        uc.emu_start(at, at + len(code), count=r.budget)
    except unicorn.UcError:
        _uc = None
        return None  # unicorn could not run it (an exception pyemu did not take is not judged here)
    got = tuple(uc.reg_read(rid) & 0xFFFF_FFFF for rid in ids)
    eip = uc.reg_read(X.UC_X86_REG_EIP)
    ram = R.ram_digest(uc.mem_read(0, G.RAM))
    want = s["gprs"]
    if got != want or eip != at + len(code) or ram != s["ram"]:
        detail = {"gprs": [list(want), list(got)]} if got != want else {}
        if eip != at + len(code):
            detail["eip"] = [at + len(code), eip]
        if ram != s["ram"]:
            ucmem = np.frombuffer(bytes(uc.mem_read(0, G.RAM)), dtype=np.uint8)
            diff = np.nonzero(ucmem != r.t0.mem[:G.RAM])[0]
            detail["ram_first_diff"] = hex(int(diff[0])) if len(diff) else None
        return {"kind": "unicorn", "detail": detail}
    return None
