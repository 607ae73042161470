"""`pyemu fuzz --unicorn`: flat 32-bit ring-0 programs that run to their closing HLT in pyemu
without an exception or an I/O exit are run in unicorn too; the GPRs, EIP and RAM must agree.

Unicorn starts from the same machine: the GDT, IDT and TSS in RAM, the same selectors in every
segment register and TR, CR0 and the x87 power-up state (SDM Vol 3, Table 9-1). A program is not
compared when, decoded straight through from its start and from each direct branch target inside
it, it reaches an instruction whose result is the CPU model's own (CPUID, RDTSC, CR4's reserved
bits), undefined (BSWAP r16, SMSW r32's high half), one of two allowed forms (a 32-bit PUSH of a
selector), one TCG gets wrong (RET imm16 >= 8000h, LOCK or a write through CS that should fault),
or that reads a flag an earlier instruction left undefined; nor when the run leaves an unmasked
x87 exception pending (the SDM keeps the destination, TCG writes it), nor when unicorn ran an
instruction twice from the same state (TCG replays a store that rewrote its own block).

Flags are not compared. An indirect jump can still reach an undefined flag or result the walk
did not see, and pyemu rounds x87 results to double precision; so a finding (kind `unicorn`) is for
a person to judge.
"""

from __future__ import annotations

import functools

import numpy as np

from emu.cpu import state as S
from emu.fuzz import gen as G
from emu.fuzz import runner as R

HLT = b"\xf4"
MODEL_SPECIFIC = frozenset(("cpuid", "rdtsc", "rdtscp", "rdpmc", "rdrand", "rdseed"))
"""Instructions whose results differ between CPU models by design."""
FPU_ENV_STORES = frozenset(("fnstenv", "fnsave", "fxsave", "fstenv", "fsave"))
"""They store the last-instruction pointers FIP/FDP, which QEMU's TCG does not keep."""
VEC_UD = 6  # #UD, which unicorn reports as UC_ERR_INSN_INVALID
ESP = 4  # index of ESP among the GPRs
ERROR_CODE_VECTORS = frozenset((8, 10, 11, 12, 13, 14, 17))  # #DF #TS #NP #SS #GP #PF #AC push one
EFLAGS_VM = 1 << 17
RPL_MASK = 3
FSW_ES = 0x80  # x87 FSW.ES: an unmasked exception is pending (SDM Vol 1, 8.1.3.1)
FLAGS_READERS = frozenset(("pushfd", "pushf", "lahf"))
UNICORN_LACKS = frozenset(("int1",))  # ICEBP: #DB in pyemu and on real CPUs, #UD in unicorn 2.1
SEGMENT_FAULTS = frozenset((10, 11, 12, 13))  # #TS #NP #SS #GP
CS_AC_WRITE = 2  # capstone: the operand is written
ROM_START = 0xC0000  # the PC's option-ROM and BIOS area: pyemu ignores writes there
OPSIZE = 0x66
INT_N = 0xCD  # INT imm8
LOCK = 0xF0
PREFIXES = frozenset((0x26, 0x2E, 0x36, 0x3E, 0x64, 0x65, 0x66, 0x67, 0xF0, 0xF2, 0xF3))
LOCKABLE = frozenset(("add", "adc", "and", "btc", "btr", "bts", "cmpxchg", "cmpxchg8b", "dec", "inc", "neg", "not",
                      "or", "sbb", "sub", "xor", "xadd", "xchg"))
"""The instructions a LOCK prefix may precede (SDM Vol 2, LOCK); on any other it is #UD."""
UNDEFINED_BY_SDM = {"bsf": ("CF", "OF", "SF", "AF", "PF"), "bsr": ("CF", "OF", "SF", "AF", "PF")}
"""Flags the SDM leaves undefined where capstone reports them as unchanged."""
RET_IMM_SIGN = 0x8000  # RET/RETF imm16 at or above this: TCG sign-extends it (the SDM's count is unsigned)
CR0_PE = 1


def _flag_bits():
    from capstone import x86_const as CX

    out = []
    for f in ("CF", "PF", "AF", "ZF", "SF", "OF"):
        defs = 0
        for kind in ("MODIFY", "RESET", "SET"):
            defs |= getattr(CX, f"X86_EFLAGS_{kind}_{f}")
        out.append((getattr(CX, f"X86_EFLAGS_TEST_{f}"), getattr(CX, f"X86_EFLAGS_UNDEFINED_{f}"), defs))
    return out


def _test_bit(flag: str) -> int:
    from capstone import x86_const as CX

    return getattr(CX, f"X86_EFLAGS_TEST_{flag}")


try:
    from capstone import x86_const as _CX

    FLAG_BITS = _flag_bits()
    ALL_FLAGS = sum(t for t, _, _ in FLAG_BITS)
    SEGMENT_REGS = frozenset((_CX.X86_REG_ES, _CX.X86_REG_CS, _CX.X86_REG_SS, _CX.X86_REG_DS, _CX.X86_REG_FS,
                              _CX.X86_REG_GS))
    UNREPORTED_GROUPS = frozenset(getattr(_CX, f"X86_GRP_{g}") for g in (
        "MMX", "SSE1", "SSE2", "SSE3", "SSSE3", "SSE41", "SSE42", "SSE4A", "3DNOW", "AVX", "AVX2", "AVX512",
        "AES", "PCLMUL", "SHA", "FMA", "FMA4", "F16C", "XOP", "TBM", "BMI2", "ADX", "RTM", "HLE", "SGX", "VM",
        "FSGSBASE"))
    UNDEFINED_TESTS = {m: frozenset(_test_bit(f) for f in flags) for m, flags in UNDEFINED_BY_SDM.items()}
except ImportError:  # capstone is a runtime dependency; this keeps the module importable without it
    FLAG_BITS, ALL_FLAGS, SEGMENT_REGS, UNREPORTED_GROUPS = [], 0, frozenset(), frozenset()
    UNDEFINED_TESTS = {}


def _has_lock(raw) -> bool:
    for byte in raw:
        if byte == LOCK:
            return True
        if byte not in PREFIXES:
            return False
    return False


def not_comparable(code: bytes, at: int) -> str | None:
    """Why unicorn and pyemu may rightly disagree on `code`, or None: an instruction whose result
    is model-specific or undefined, or one that reads a flag an earlier instruction left undefined
    (SDM Vol 1, Appendix A). The code is decoded straight through from `at`, and again from each
    direct branch's target inside it (a jump into the middle of an instruction runs other ones)."""
    starts = [(at, 0)]
    walked = set()
    while starts:
        start, undefined = starts.pop()
        if start in walked:
            continue
        walked.add(start)
        why = _walk(code, at, start, undefined, starts)
        if why:
            return why
    return None


def _walk(code: bytes, at: int, start: int, undefined: int, starts: list) -> str | None:
    """not_comparable's check of one straight-through path from `start`; `undefined`: the flags
    (as capstone TEST_ bits) left undefined on the way there. Direct branch targets inside the
    code are added to `starts`."""
    from capstone import x86_const as CX

    md = _capstone()
    end = at + len(code)
    buf = code + HLT
    pos = start - at
    while pos < len(buf):
        insn = next(md.disasm(buf[pos:], at + pos, 1), None)
        if insn is None:  # an encoding capstone rejects: where pyemu runs it (an x87 alias such as
            n = _pyemu_length(buf[pos:])  # DF D6, REPNE BSR) go on after it, its flags unknown
            if n <= 0:  # #UD in pyemu too: the program ends here
                if _has_lock(buf[pos:]):
                    return "lock without a memory destination"
                break
            if at + pos < end < at + pos + n:
                return "the closing HLT is part of the last instruction"
            pos += n
            undefined = ALL_FLAGS
            continue
        pos += insn.size
        if insn.address < end < insn.address + insn.size:
            return "the closing HLT is part of the last instruction"  # unicorn stops only on a boundary
        m = insn.mnemonic
        if m in MODEL_SPECIFIC or m in FPU_ENV_STORES:
            return m
        if m == "bswap" and insn.bytes[0] == OPSIZE:  # SDM: BSWAP r16 is undefined
            return "bswap r16"
        if m == "push" and OPSIZE not in insn.prefix and insn.operands[0].type == CX.X86_OP_REG \
                and insn.operands[0].reg in SEGMENT_REGS:
            return "push sreg"  # SDM PUSH: a 32-bit push of a selector may be a 16-bit move
        if _has_lock(insn.bytes) and (not insn.operands or insn.operands[0].type != CX.X86_OP_MEM):
            return "lock without a memory destination"  # #UD; unicorn 2.1 aborts on LOCK BT* reg
        if _has_lock(insn.bytes) and m.split()[-1] not in LOCKABLE:
            return "lock on an instruction that cannot take it"  # #UD; TCG runs some (x87 stores)
        if m in UNICORN_LACKS:
            return m
        if m.split()[-1] in ("ret", "retf") and insn.operands and insn.operands[0].type == CX.X86_OP_IMM \
                and insn.operands[0].imm >= RET_IMM_SIGN:
            return "ret imm16 >= 8000h"  # TCG sign-extends the count; the SDM's is unsigned
        if m == "mov" and insn.operands[0].type == CX.X86_OP_REG and insn.operands[0].reg == CX.X86_REG_CR4:
            return "a CR4 write"  # which bits are reserved follows each CPU model's CPUID features
        if m == "mov" and insn.operands[0].type == CX.X86_OP_REG and insn.operands[0].reg == CX.X86_REG_CR0:
            return "a CR0 write"  # it may leave protected mode (PE = 0): the IDT is then read as an IVT
        if m == "smsw" and insn.operands[0].type == CX.X86_OP_REG and insn.operands[0].size == 4:
            return "smsw r32"  # SDM SMSW: bits 31:16 of a 32-bit register are undefined
        if any(op.type == CX.X86_OP_MEM and op.mem.segment == CX.X86_REG_CS
               and (op.access & CS_AC_WRITE or i == 0 and not _reads_only_dest(m))
               for i, op in enumerate(insn.operands)):
            return "a write through CS"  # #GP; TCG does not check segment rights
        if insn.group(CX.X86_GRP_JUMP) or insn.group(CX.X86_GRP_CALL):
            op = insn.operands[0] if insn.operands else None
            if op is not None and op.type == CX.X86_OP_IMM and at <= op.imm < end:
                starts.append((op.imm, undefined))
        reads = ALL_FLAGS if m in FLAGS_READERS else insn.eflags & ALL_FLAGS
        if reads & undefined:  # (before this instruction's own writes: SBB reads CF, then sets it)
            return f"{m} reads a flag left undefined"
        for test, undef, defs in FLAG_BITS:
            if insn.eflags & undef or m in UNDEFINED_BY_SDM and test in UNDEFINED_TESTS[m]:
                undefined |= test
            elif insn.eflags & defs:
                undefined &= ~test
    return None


READS_ONLY_DEST = frozenset(("cmp", "test", "bt", "push", "call", "jmp", "lcall", "ljmp", "bound", "lgdt",
                             "lidt", "lldt", "ltr", "lmsw", "verr", "verw", "invlpg", "fldcw", "fldenv", "frstor",
                             "fbld"))
"""Instructions whose first memory operand is only read (capstone's access bits miss some writes:
RCL m8, FISTTP)."""
X87_READERS = ("fld", "fild", "fadd", "fiadd", "fsub", "fisub", "fmul", "fimul", "fdiv", "fidiv", "fcom", "ficom")


def _reads_only_dest(mnemonic: str) -> bool:
    m = mnemonic.split()[-1]
    return m in READS_ONLY_DEST or m.startswith(X87_READERS)


def _pyemu_length(code: bytes) -> int:
    """The length of the instruction at the start of `code` where pyemu's decoder accepts it, else 0."""
    from emu.translate import decoder as D

    r, out = D.decode_bytes(code[:16])
    return r if r > 0 and out[D.F_FORM] not in (D.FORM_BAD, D.FORM_VEX, D.FORM_EVEX, D.FORM_XOP, D.FORM_3DNOW) else 0


def _pyemu_lacks(code: bytes, at: int) -> bool:
    """Is the instruction at `at`, where pyemu raised #UD, one that capstone rejects too (unicorn
    runs some, e.g. 8F /6 as POP) or one of a feature pyemu's CPUID does not report (MMX, SSE, ...)?"""
    insn = next(_capstone().disasm(code, at, 1), None)
    return insn is None or any(g in UNREPORTED_GROUPS for g in insn.groups)


def _has_error_code(mem: np.ndarray, frame: int, vector: int) -> bool:
    """Did pyemu push an error code in the frame at `frame`? An exception of a vector in
    ERROR_CODE_VECTORS does; INT n to the same vector does not (SDM Vol 3, 6.13), and then the
    EIP on top of the frame follows an `INT n` (CD n)."""
    if vector not in ERROR_CODE_VECTORS:
        return False
    if frame + 4 > G.RAM:
        return True
    eip = int.from_bytes(mem[frame:frame + 4].tobytes(), "little")
    return not (2 <= eip <= G.RAM and bytes(mem[eip - 2:eip]) == bytes((INT_N, vector)))


def _frame_end(mem: np.ndarray, at_eip: int) -> int:
    """The end of the exception frame whose saved EIP is at `at_eip`: EIP, CS, EFLAGS, then ESP and
    SS after a privilege change, and ES, DS, FS, GS too when it interrupted V86 code (SDM Vol 3,
    Figures 6-4 and 20-5). Unicorn reports the vector without pushing a frame."""
    def slot(i: int) -> int:
        a = at_eip + 4 * i
        return int.from_bytes(mem[a:a + 4].tobytes(), "little") if a + 4 <= G.RAM else 0

    if slot(2) & EFLAGS_VM:
        return at_eip + 4 * 9
    return at_eip + 4 * (5 if slot(1) & RPL_MASK else 3)


def _decodes(code: bytes, at: int) -> bool:
    return next(_capstone().disasm(code, at, 1), None) is not None


@functools.cache
def _capstone():
    """The 32-bit capstone decoder, with operand and EFLAGS details, made once."""
    import capstone

    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_32)
    md.detail = True
    return md


def _machine(uc, X) -> None:
    """GDTR, IDTR, TR, the flat ring-0 selectors of emu.fuzz.runner.setup_state, and the x87
    power-up state (FCW 0040h, FSW 0, FTW 5555h), so that a reused unicorn starts clean."""
    uc.reg_write(X.UC_X86_REG_GDTR, (0, G.GDT, G.GDT_ENTRIES * 8 - 1, 0))
    uc.reg_write(X.UC_X86_REG_IDTR, (0, G.IDT, 0x7FF, 0))
    for rid in (X.UC_X86_REG_SS, X.UC_X86_REG_DS, X.UC_X86_REG_ES, X.UC_X86_REG_FS, X.UC_X86_REG_GS):
        uc.reg_write(rid, G.SEL_DATA32)
    uc.reg_write(X.UC_X86_REG_CS, G.SEL_CODE32)
    uc.reg_write(X.UC_X86_REG_CR0, S.CR0_POWERUP | CR0_PE)
    uc.reg_write(X.UC_X86_REG_TR, (G.SEL_TSS, G.TSS, 0x67, 0x8B))
    uc.reg_write(X.UC_X86_REG_FPCW, S.FPU_FCW_POWERUP)
    uc.reg_write(X.UC_X86_REG_FPSW, 0)
    uc.reg_write(X.UC_X86_REG_FPTAG, S.FPU_FTW_POWERUP)
    for i in range(8):
        uc.reg_write(getattr(X, f"UC_X86_REG_ST{i}"), 0)


_events: list[int] = []  # the vectors unicorn reported in the current run


def _on_interrupt(uc, intno, _data) -> None:
    _events.append(intno)
    uc.emu_stop()


def _unicorn():
    """A fresh unicorn for each program (0.3 ms): one reused across programs kept hidden state
    from an earlier program's faulting RETF/IRET that `reg_write` cannot reset, and a later BOUND
    then ran without its #BR (seed 2027, programs 819 and 821 before 822)."""
    import unicorn

    uc = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_32)
    uc.mem_map(0, G.RAM)
    uc.hook_add(unicorn.UC_HOOK_INTR, _on_interrupt)
    return uc


def unicorn_check(r: R.Runner, p: dict) -> dict | None:
    """Run `p` in unicorn where pyemu's tier-0 run ended on a HLT with no I/O exit: at the closing
    HLT, at a HLT elsewhere (a jump into the HLT fill), or in the handler stub of an exception or
    INT n (then unicorn must report the same vector, and the exception frame pyemu pushed is left
    out of the RAM comparison). None when they agree or the program is not comparable."""
    if p["mode"] != "pm32" or p["ring3"]:
        return None
    import unicorn
    from unicorn import x86_const as X

    mem = R.image(p)
    (s0,) = r.run_tier(p, 0, mem)
    s = dict(s0)
    code = bytes.fromhex(p["code"])
    at = G.CODE_BASE + p["code_off"]
    if s["reason"] != "hlt" or s["exits"]:
        return None
    halt = s["eip"] - 1  # the HLT pyemu stopped on
    vector = halt - G.STUBS if G.STUBS <= halt < G.STUBS + 256 else None
    if not_comparable(code, at):
        return None
    if int(r.t0.st[S.FPU_FSW]) & FSW_ES:
        return None  # an unmasked x87 exception: the SDM leaves the destination as it was, TCG writes it
    uc, ids = _prepared(mem, p)
    try:
        uc.emu_start(at, 0, count=r.budget)
    except unicorn.UcError as exc:
        if exc.errno != unicorn.UC_ERR_INSN_INVALID:
            return None  # unicorn could not run it
        _events.append(VEC_UD)
    r.uc_compared += 1
    got = [uc.reg_read(rid) & 0xFFFF_FFFF for rid in ids]
    want = list(s["gprs"])
    eip = uc.reg_read(X.UC_X86_REG_EIP)
    ucmem = np.frombuffer(bytes(uc.mem_read(0, G.RAM)), dtype=np.uint8)
    mine = r.t0.mem[:G.RAM]
    detail: dict = {}
    if vector is None:  # both must halt at the same HLT
        if _events and _events[0] == VEC_UD and _decodes(bytes(ucmem[eip:eip + 16]), eip):
            return None  # an encoding real CPUs run that unicorn rejects (F6 /1 TEST, ...)
        if _events:
            detail["vector"] = [None, _events[0]]
        elif eip != halt + 1:
            detail["eip"] = [halt + 1, eip]
        same_ram = bool(np.array_equal(ucmem, mine))
    else:  # both take the same exception at the same instruction; ESP differs by pyemu's frame
        frame = want[ESP]
        at_eip = frame + (4 if _has_error_code(mine, frame, vector) else 0)
        if at_eip + 4 > G.RAM:
            return None  # the frame went to unbacked memory: nothing to compare it with
        saved_eip = int.from_bytes(mine[at_eip:at_eip + 4].tobytes(), "little")
        uc_vector = _events[0] if _events else None
        if vector == VEC_UD and _pyemu_lacks(bytes(mine[saved_eip:saved_eip + 16]), saved_eip):
            return None
        if vector in SEGMENT_FAULTS and uc_vector != vector:
            return None  # a descriptor check: TCG skips some, and unicorn reports others as #DF
        if uc_vector == VEC_UD and (vector != VEC_UD or saved_eip != eip) \
                and _decodes(bytes(ucmem[eip:eip + 16]), eip):
            return None  # an encoding real CPUs run that unicorn rejects (F6 /1 TEST, ...)
        if uc_vector != vector:
            detail["vector"] = [vector, uc_vector]
        elif saved_eip != eip:
            detail["eip"] = [saved_eip, eip]
        got[ESP] = want[ESP]
        keep = np.ones(G.RAM, dtype=bool)
        keep[frame:_frame_end(mine, at_eip)] = False
        same_ram = bool(np.array_equal(ucmem[keep], mine[keep]))
    if not np.array_equal(ucmem[ROM_START:], mine[ROM_START:]):
        return None  # a write to the ROM copy at C0000h: ignored in pyemu, RAM in unicorn
    if got != want:
        detail["gprs"] = [want, got]
    if not same_ram:
        diff = np.nonzero(ucmem != mine)[0]
        detail["ram_first_diff"] = hex(int(diff[0])) if len(diff) else None
    if detail and _replays_a_store(mem, p, at, r.budget):
        return None
    return {"kind": "unicorn", "detail": detail} if detail else None


def _prepared(mem: np.ndarray, p: dict):
    """A fresh unicorn holding the program's RAM, machine and registers: (uc, the GPR ids)."""
    from unicorn import x86_const as X

    uc = _unicorn()
    uc.mem_write(0, mem.tobytes())
    _machine(uc, X)
    ids = [X.UC_X86_REG_EAX, X.UC_X86_REG_ECX, X.UC_X86_REG_EDX, X.UC_X86_REG_EBX, X.UC_X86_REG_ESP,
           X.UC_X86_REG_EBP, X.UC_X86_REG_ESI, X.UC_X86_REG_EDI]
    for rid, v in zip(ids, p["regs"], strict=True):
        uc.reg_write(rid, v & 0xFFFF_FFFF)
    uc.reg_write(X.UC_X86_REG_EFLAGS, p["eflags"] | 2)
    _events.clear()
    return uc, ids


def _replays_a_store(mem: np.ndarray, p: dict, at: int, budget: int) -> bool:
    """Did unicorn run an instruction twice in a row from the same state? TCG restarts an
    instruction whose store rewrote its own translation block, and 2.1 then does the store again
    (seed 2027, program 15088: `add [eax], eax` at 0FFh onto the code at 0EDh added EAX twice).
    Checked only for a program that differed, with a code hook (slow)."""
    import unicorn

    uc, ids = _prepared(mem, p)
    seen: list = [None]
    replayed = [False]

    def on_code(uc, address, _size, _data):
        state = (address, tuple(uc.reg_read(rid) for rid in ids))
        replayed[0] |= state == seen[0]
        seen[0] = state

    uc.hook_add(unicorn.UC_HOOK_CODE, on_code)
    try:
        uc.emu_start(at, 0, count=budget)
    except unicorn.UcError:
        pass
    return replayed[0]
