"""`--lockstep unicorn`: run every instruction in unicorn too and stop at the first difference (issue 12).

The main loop runs pyemu one instruction per `core.run` (as for -one-insn-per-tb) and calls this hook
before and after. Before: the state is snapshot (GPRs, EIP, EFLAGS, selectors). After an instruction
retired: unicorn, whose registers are set from the snapshot and whose memory mirrors pyemu's RAM,
runs the same one instruction, and the GPRs, EIP, the flags that instruction defines and memory are
compared. At the first difference both states and the instruction are printed and the machine stops
(exit status EXIT_DIVERGED).

Memory: both unicorn instances (16- and 32-bit) run on one shadow copy of pyemu's RAM as the guest
sees it. It is refreshed from pyemu, before pyemu runs the next instruction to compare, after one was
copied instead of compared or when the state changed between two instructions (the main loop delivered
an interrupt); the real-mode instance maps and refreshes only the low LOW bytes. In real mode all of
that low memory is compared after every instruction. In 32-bit mode RAM is too large for that (tens of
MiB), so only the pages an instruction can have written are compared: those unicorn wrote to, those
its memory operands address, and those around ESP and EDI (before, and after in either emulator); a
write pyemu made anywhere else is caught by a comparison of all RAM every FULL_CHECK compared
instructions, reported at the instruction that comparison ran after.

Modelled: real mode (unicorn's 16-bit mode, segment base = selector * 16) and flat 32-bit protected
mode without paging (every base 0). What unicorn cannot run the way a PC does (port I/O, INT/IRET,
far transfers, HLT, descriptor-table and control-register instructions, segment loads in protected
mode, anything it faults on or that touches memory outside RAM, and other modes) is not
compared: pyemu's result is copied into unicorn and the copy is logged.
"""

from __future__ import annotations

import sys

import numpy as np

from emu.cpu import state as S
from emu.mmu.physmap import PM_ROM

EXIT_DIVERGED = 3
LOW = 0x110000  # what real mode reaches: 1 MiB + 64 KiB (the HMA, with A20 on)
PAGE = 0x1000
FULL_CHECK = 1 << 16
CF, PF, AF, ZF, SF, OF = 0x1, 0x4, 0x10, 0x40, 0x80, 0x800
ARITH = CF | PF | AF | ZF | SF | OF
# Flags an instruction leaves undefined (Intel SDM), by mnemonic: not compared.
UNDEFINED = {
    "and": AF, "or": AF, "xor": AF, "test": AF,
    "mul": PF | AF | ZF | SF, "imul": PF | AF | ZF | SF,
    "div": ARITH, "idiv": ARITH,
    "shl": AF | OF, "sal": AF | OF, "shr": AF | OF, "sar": AF | OF, "shld": AF | OF, "shrd": AF | OF,
    "rol": OF, "ror": OF, "rcl": OF, "rcr": OF,
    "bsf": CF | PF | AF | SF | OF, "bsr": CF | PF | AF | SF | OF,
    "bt": PF | AF | ZF | SF | OF, "bts": PF | AF | ZF | SF | OF, "btr": PF | AF | ZF | SF | OF,
    "btc": PF | AF | ZF | SF | OF, "aaa": PF | ZF | SF | OF, "aas": PF | ZF | SF | OF,
    "daa": OF, "das": OF, "aam": CF | AF | OF, "aad": CF | AF | OF,
}
NOT_MODELLED = ("in", "out", "ins", "outs", "rep ins", "rep outs", "int", "int1", "int3", "into", "iret",
                "iretd", "hlt", "lgdt", "lidt", "lldt", "ltr", "sgdt", "sidt", "sldt", "str", "lmsw", "smsw",
                "clts", "ljmp", "lcall", "retf", "lret", "retfd", "wrmsr", "rdmsr", "rdtsc", "cpuid", "invlpg",
                "sysenter", "sysexit", "lds", "les", "lss", "lfs", "lgs", "wbinvd", "invd", "lar", "lsl",
                "verr", "verw", "arpl", "sti", "cli", "pushf", "pushfd", "popf", "popfd", "bound", "ud2")
GPR_ORDER = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi")  # pyemu's st[0..7]


class Lockstep:
    def __init__(self, machine, out=None, verbose: bool = False):
        import capstone
        import unicorn
        from unicorn import x86_const as X

        self.m, self.core = machine, machine.core
        self.out = out if out is not None else sys.stderr
        self.ram = machine.core.phys.ram_bytes & ~(PAGE - 1)
        self._shadow = np.zeros(self.ram, dtype=np.uint8)  # unicorn's memory (both instances map it)
        self._stale = {16: True, 32: True}  # the low LOW bytes / all RAM need refreshing from pyemu
        self._since_full = 0
        self._last_bits = None
        self._writes: list[tuple[int, int]] = []
        self.verbose = verbose
        self._uc_mod, self._X = unicorn, X
        self._cs = {16: capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_16),
                    32: capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_32)}
        self._cs[32].detail = True  # memory operands: which pages an instruction can write
        self._ucs: dict[int, object] = {}
        self._snap = None
        self._key = None
        self._left = None  # (ICOUNT, EIP, CS, ESP) as the last instruction left them
        self.compared = 0
        self.copied = 0
        self.diverged = False
        self._logged: set[int] = set()
        self._gpr_ids = [getattr(X, f"UC_X86_REG_{n.upper()}") for n in GPR_ORDER]
        self._seg_ids = [X.UC_X86_REG_ES, X.UC_X86_REG_CS, X.UC_X86_REG_SS, X.UC_X86_REG_DS, X.UC_X86_REG_FS,
                         X.UC_X86_REG_GS]

    # -- unicorn instances, one per mode, each with the shadow RAM mapped at 0 (real mode: LOW bytes)
    def _uc(self, bits: int):
        uc = self._ucs.get(bits)
        if uc is None:
            unicorn = self._uc_mod
            uc = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_16 if bits == 16 else unicorn.UC_MODE_32)
            uc.mem_map_ptr(0, self._size(bits), unicorn.UC_PROT_ALL, self._shadow.ctypes.data)
            uc.hook_add(unicorn.UC_HOOK_INTR, self._on_intr)
            uc.hook_add(unicorn.UC_HOOK_MEM_WRITE, self._on_write)
            self._ucs[bits] = uc
        return uc

    def _size(self, bits: int) -> int:
        return min(LOW, self.ram) if bits == 16 else self.ram

    def _on_write(self, _uc, _access, address, size, _value, _user):
        self._writes.append((address, size))

    def _sync(self, bits: int) -> None:
        """Refresh the shadow from pyemu where it is stale, and drop unicorn's translated code when
        memory changed behind its back (a refresh, or the other instance's writes)."""
        if self._stale[16] or (bits == 32 and self._stale[32]):
            n = self._size(bits) if self._stale[32] else min(LOW, self.ram)
            self._shadow[:n] = self._view(0, n)
            self._stale[16] = False
            if bits == 32:
                self._stale[32] = False
            self._since_full = 0
            for uc in self._ucs.values():
                uc.ctl_flush_tb()
        elif bits != self._last_bits:
            self._uc(bits).ctl_flush_tb()
        self._last_bits = bits

    def _on_intr(self, uc, intno, _user):
        self._exception = intno
        uc.emu_stop()

    def _mode(self, st) -> int | None:
        """16 (real mode), 32 (flat 32-bit protected mode, no paging) or None (not modelled)."""
        cr0 = int(st[S.CR0])
        if not cr0 & 1:
            return 16 if not int(st[S.EFLAGS]) & 0x20000 else None
        if cr0 & 0x80000000:
            return None
        if not int(st[S.seg_slot(S.CS, S.SEG_ATTR)]) & S.ATTR_DB:
            return None
        if any(int(st[S.seg_slot(s, S.SEG_BASE)]) for s in range(6)):
            return None
        return 32

    # -- the hook interface of emu.mainloop (insn_hook)
    def before(self) -> None:
        st = self.core.st
        key = (int(st[S.ICOUNT]), int(st[S.EIP]), int(st[S.seg_slot(S.CS, S.SEG_SEL)]))
        if key == self._key:
            return  # an instruction resumed after an I/O exit: keep the state before it
        self._key = key
        if self._left is not None and self._left != (*key, int(st[S.ESP])):
            # Changed since the last instruction (the main loop delivered an interrupt: pushed to the
            # stack, new CS:EIP): unicorn's memory is refreshed before the next compare.
            self._stale[16] = self._stale[32] = True
        base = int(st[S.seg_slot(S.CS, S.SEG_BASE)]) & 0xFFFFFFFF
        pc = (base + int(st[S.EIP])) & 0xFFFFFFFF
        self._snap = {
            "gpr": [int(st[i]) & 0xFFFFFFFF for i in range(8)], "eip": int(st[S.EIP]) & 0xFFFFFFFF,
            "efl": self.core.get_flags(), "sel": [int(st[S.seg_slot(s, S.SEG_SEL)]) for s in range(6)],
            "pc": pc, "mode": self._mode(st), "code": self.core.read_phys(pc, 16) if pc + 16 <= self.ram else b"",
            "icount": key[0], "dump": None,
        }
        from emu.qemulog import cpu_dump

        self._snap["dump"] = cpu_dump(self.core)
        mode, insn = self._snap["mode"], None
        if mode is not None and self._snap["code"]:
            insn = next(self._cs[mode].disasm(self._snap["code"], pc, 1), None)
        self._snap["insn"] = insn
        if insn is not None and insn.mnemonic.split()[-1] not in NOT_MODELLED:
            # Before pyemu runs it: unicorn must start from the memory pyemu starts from (refreshed
            # after pyemu ran, a read-modify-write such as `inc [esp]` would be done twice).
            self._sync(mode)

    def after(self, reason: int) -> None:
        st = self.core.st
        snap = self._snap
        if snap is None or self.diverged or int(st[S.ICOUNT]) == snap["icount"]:
            return  # nothing retired (an I/O exit before the instruction completes)
        self._key = None
        self._left = (int(st[S.ICOUNT]), int(st[S.EIP]), int(st[S.seg_slot(S.CS, S.SEG_SEL)]), int(st[S.ESP]))
        mode, insn = snap["mode"], snap["insn"]
        why = self._unmodelled(snap, insn, int(st[S.ICOUNT]) - snap["icount"])
        if why is None:
            why = self._compare(snap, insn, mode)
        if why is not None:
            self.copied += 1
            self._stale[16] = self._stale[32] = True  # refresh unicorn's memory before the next compare
            if self.verbose or snap["pc"] not in self._logged:  # each address once (loops stay quiet)
                self._logged.add(snap["pc"])
                text = f"{insn.mnemonic} {insn.op_str}" if insn is not None else "?"
                self.out.write(f"lockstep: {snap['pc']:08x} {text}: {why}; pyemu's result copied to unicorn\n")

    def _unmodelled(self, snap, insn, retired: int) -> str | None:
        if snap["mode"] is None:
            return "mode not modelled (only real mode and flat 32-bit protected mode without paging)"
        if insn is None:
            return "not decodable by capstone"
        if retired != 1:
            return f"{retired} instructions retired in one step"
        mn = insn.mnemonic
        if mn.startswith("rep"):
            mn = mn.split()[-1]
        if mn in NOT_MODELLED or (mn in ("jmp", "call") and ("far" in insn.op_str or ":" in insn.op_str)):
            return "a system instruction unicorn does not model as a PC"
        if mn == "mov" and ("cr" in insn.op_str or "dr" in insn.op_str.split(",")[0]):
            return "a control-register move"
        if snap["mode"] == 32 and mn in ("mov", "pop", "push") and any(
                s in insn.op_str.replace(" ", "").split(",") for s in ("ds", "es", "ss", "fs", "gs", "cs")):
            return "a segment load in protected mode"
        if self.core.st[S.seg_slot(S.CS, S.SEG_SEL)] != snap["sel"][1]:
            return "CS changed (an interrupt or exception was delivered)"
        return None

    def _compare(self, snap, insn, bits: int) -> str | None:
        X = self._X
        uc = self._uc(bits)
        core, st = self.core, self.core.st
        if self._stale[16] or (bits == 32 and self._stale[32]):
            return "unicorn's memory was not refreshed before it (not expected)"
        self._writes.clear()
        for rid, v in zip(self._gpr_ids, snap["gpr"], strict=True):
            uc.reg_write(rid, v)
        if bits == 16:
            for rid, v in zip(self._seg_ids, snap["sel"], strict=True):
                uc.reg_write(rid, v)
        uc.reg_write(X.UC_X86_REG_EFLAGS, snap["efl"] | 2)
        self._exception = None
        try:
            uc.emu_start(snap["pc"], 0xFFFFFFFF, count=1)
        except self._uc_mod.UcError as exc:
            return f"unicorn: {exc}"
        if self._exception is not None:
            return f"unicorn raised exception {self._exception}"
        ugpr = [uc.reg_read(r) & 0xFFFFFFFF for r in self._gpr_ids]
        ueip = uc.reg_read(X.UC_X86_REG_EIP) & 0xFFFFFFFF
        if bits == 16:
            ueip &= 0xFFFF
        ueip = self._rep_done(insn, bits, snap, ugpr, ueip)
        uefl = uc.reg_read(X.UC_X86_REG_EFLAGS) & 0xFFFFFFFF
        pgpr = [int(st[i]) & 0xFFFFFFFF for i in range(8)]
        peip = int(st[S.EIP]) & 0xFFFFFFFF
        pefl = core.get_flags()
        mn = insn.mnemonic.split()[-1]
        mask = 0x3FFFFF & ~UNDEFINED.get(mn, 0) & ~0x10000  # RF is not compared
        diffs = [f"{GPR_ORDER[i].upper()} pyemu={pgpr[i]:08x} unicorn={ugpr[i]:08x}"
                 for i in range(8) if pgpr[i] != ugpr[i]]
        if peip != ueip:
            diffs.append(f"EIP pyemu={peip:08x} unicorn={ueip:08x}")
        if (pefl ^ uefl) & mask:
            diffs.append(f"EFLAGS pyemu={pefl:08x} unicorn={uefl:08x} (differs in {(pefl ^ uefl) & mask:#x})")
        diffs += self._compare_memory(snap, insn, bits, pgpr, ugpr)
        if not diffs:
            self.compared += 1
            return None
        self._report(snap, insn, diffs, ugpr, ueip, uefl)
        return None

    def _compare_memory(self, snap, insn, bits: int, pgpr, ugpr) -> list[str]:
        umem = self._shadow
        if bits == 16:
            spans = [(0, self._size(16), "")]
        else:
            self._since_full += 1
            if self._since_full >= FULL_CHECK:
                self._since_full = 0
                spans = [(0, self.ram, f"; found by the comparison of all RAM every {FULL_CHECK} instructions:"
                                       " written by this one or one before it")]
            else:
                pages = self._pages(snap, insn, pgpr, ugpr)
                spans = [(p * PAGE, p * PAGE + PAGE, "") for p in sorted(pages) if p * PAGE < self.ram]
        for lo, hi, note in spans:
            pmem = self._view(lo, hi)
            bad = np.flatnonzero(umem[lo:hi] != pmem)
            if bad.size:
                a = int(bad[0])
                return [f"memory at {lo + a:08x} ({bad.size} bytes differ{note}): "
                        f"pyemu={bytes(pmem[a:a + 8]).hex(' ')} unicorn={bytes(umem[lo + a:lo + a + 8]).hex(' ')}"]
        return []

    def _view(self, lo: int, hi: int) -> np.ndarray:
        """pyemu's memory at physical [lo, hi) (page-aligned) as the guest reads it. pyemu's host
        array is not the physical address space: C0000-FFFFF (the BIOS and option ROMs, also as
        PAM shadow RAM) live in a copy after RAM, where the page map points; those pages are taken
        from there (an MMIO or open-bus page is left as the array holds it)."""
        mem, pmap = self.core.mem, self.core.phys.pmap
        first, last = lo // PAGE, hi // PAGE
        entries = pmap[first:last]
        offsets = entries & ~(PAGE - 1)
        moved = np.flatnonzero((offsets != np.arange(first, last, dtype=np.int64) * PAGE)
                               & ((entries & (PAGE - 1)) <= PM_ROM))
        if not moved.size:
            return mem[lo:hi]
        out = mem[lo:hi].copy()
        for i in moved:
            o = int(offsets[i])
            out[i * PAGE:(i + 1) * PAGE] = mem[o:o + PAGE]
        return out

    def _pages(self, snap, insn, pgpr, ugpr) -> set[int]:
        """The pages a 32-bit instruction can have written: unicorn's writes, its memory operands,
        and around ESP and EDI (a push, a string store)."""
        pages = set()
        for a, n in self._writes:
            pages.update(range(a // PAGE, (a + max(n, 1) - 1) // PAGE + 1))
        regs = dict(zip(GPR_ORDER, snap["gpr"], strict=True))
        for op in insn.operands:
            if op.type != 3:  # X86_OP_MEM
                continue
            m = op.mem
            ea = m.disp
            if m.base:
                ea += self._reg(insn, m.base, regs)
            if m.index:
                ea += self._reg(insn, m.index, regs) * m.scale
            ea &= 0xFFFFFFFF
            pages.update(range(ea // PAGE, (ea + 511) // PAGE + 1))  # up to 512 bytes (FXSAVE)
        for r in (GPR_ORDER.index("esp"), GPR_ORDER.index("edi")):
            for v in {snap["gpr"][r], pgpr[r], ugpr[r]}:
                pages.update(range(max(v - 64, 0) // PAGE, (v + 64) // PAGE + 1))
        return pages

    @staticmethod
    def _reg(insn, reg: int, regs: dict[str, int]) -> int:
        name = insn.reg_name(reg)
        if name in regs:
            return regs[name]
        wide = "e" + name
        return regs.get(wide, 0) & 0xFFFF  # a 16-bit address register (0x67 in 32-bit code)

    @staticmethod
    def _rep_done(insn, bits: int, snap, ugpr, ueip: int) -> int:
        """Unicorn (QEMU's TCG) runs a REP string instruction one iteration a step and jumps back to
        it, so the step that ends the count leaves EIP on the instruction with (E)CX = 0, where
        pyemu (as the SDM describes it) has gone on to the next one. That is one instruction
        retired in both: count it as unicorn's EIP past the instruction."""
        if not insn.mnemonic.startswith("rep"):
            return ueip
        start = (snap["pc"] - (snap["sel"][1] << 4)) & 0xFFFF if bits == 16 else snap["pc"]
        wide = (bits == 32) != (0x67 in insn.bytes[:insn.size - 1])  # the address size picks CX or ECX
        count = ugpr[GPR_ORDER.index("ecx")] & (0xFFFFFFFF if wide else 0xFFFF)
        if ueip == start and count == 0:
            return (ueip + insn.size) & (0xFFFF if bits == 16 else 0xFFFFFFFF)
        return ueip

    def _report(self, snap, insn, diffs, ugpr, ueip, uefl) -> None:
        from emu.qemulog import cpu_dump, qemu_flag_text

        self.diverged = True
        w = self.out.write
        w(f"lockstep: DIVERGED after {self.compared} instructions compared ({self.copied} copied)\n")
        w(f"lockstep: instruction {snap['pc']:08x}: {insn.bytes.hex(' ')}  {insn.mnemonic} {insn.op_str}\n")
        for d in diffs:
            w(f"lockstep:   {d}\n")
        w("--- state before (pyemu)\n" + snap["dump"])
        w("--- pyemu after\n" + cpu_dump(self.core))
        g = dict(zip(GPR_ORDER, ugpr, strict=True))
        w("--- unicorn after\n"
          f"EAX={g['eax']:08x} EBX={g['ebx']:08x} ECX={g['ecx']:08x} EDX={g['edx']:08x}\n"
          f"ESI={g['esi']:08x} EDI={g['edi']:08x} EBP={g['ebp']:08x} ESP={g['esp']:08x}\n"
          f"EIP={ueip:08x} EFL={uefl:08x} [{qemu_flag_text(uefl)}]\n")
        self.out.flush()
        self.m.exit_status = EXIT_DIVERGED


class Hooks:
    """Several insn hooks in one (the -d exec,cpu trace and the lockstep oracle)."""

    def __init__(self, *hooks):
        self.hooks = hooks

    def before(self) -> None:
        for h in self.hooks:
            h.before()

    def after(self, reason: int) -> None:
        for h in self.hooks:
            h.after(reason)
