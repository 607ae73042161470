"""Python hooks on a running machine: instruction addresses and block translation (emu.Machine).

Neither slows a machine that has none: the compiled loop runs as before, and a hook costs exits
from it only while it is set.

`AddressWatch` calls a hook before the instruction at a linear address (CS.base + EIP) executes,
each time it does. While any address is watched, the loop leaves before every block (the LOG_CPU
exit that `-d cpu` uses; tier-1 code is not entered then), so Python sees each block's first EIP.
A block is at most MAX_BLOCK_INSNS instructions of at most MAX_INSN_BYTES bytes, so when no watched
address lies within WINDOW bytes after that EIP, the whole block runs in one turn; otherwise the
watch runs one instruction per turn until it is past. That is about 85,000 blocks a second here
(0.77 MIPS on a loop of 9-instruction blocks, against 0.28 MIPS one instruction per turn and over
1,000 MIPS compiled), and exact: a hook sees the state before its
instruction, and whatever it changes (registers, memory, EIP) is what the instruction runs on.

`TranslationHook` reports each block the loop translates, from the event ring that `-d in_asm`
uses (emu/cpu/tracelog.py). Translation happens inside compiled code, so the report comes at the
loop's next exit (at most one timer slice later, or when the ring fills): after the translation,
possibly after the block's first run.
"""

from __future__ import annotations

from collections.abc import Callable

from emu.cpu import state as S
from emu.cpu.tracelog import EV_TB, EVENT_WIDTH
from emu.translate.translator import MAX_BLOCK_INSNS

MAX_INSN_BYTES = 15  # SDM Vol. 2 ch. 2.3.11: an instruction is at most 15 bytes long
WINDOW = MAX_BLOCK_INSNS * MAX_INSN_BYTES  # bytes a block can span from its first instruction
LINEAR_MASK = 0xFFFF_FFFF


def linear_pc(st) -> int:
    """CS.base + EIP, the linear address of the next instruction."""
    return (int(st[S.seg_slot(S.CS, S.SEG_BASE)]) + int(st[S.EIP])) & LINEAR_MASK


class AddressWatch:
    """Hooks by linear address; the main loop calls `before_run` before each turn of the CPU."""

    def __init__(self, machine, on_call: Callable[[], None] | None = None):
        self.m = machine
        self.hooks: dict[int, list[Callable]] = {}
        self.stop_requested = False  # a hook returned True: the run ends before its instruction
        self._done: tuple[int, int] | None = None  # (pc, ICOUNT) whose hooks have run
        self._on_call = on_call

    def add(self, address: int, hook: Callable) -> None:
        self.hooks.setdefault(address & LINEAR_MASK, []).append(hook)

    def remove(self, address: int, hook: Callable | None = None) -> None:
        hooks = self.hooks.get(address & LINEAR_MASK, [])
        hooks[:] = [] if hook is None else [h for h in hooks if h is not hook]
        if not hooks:
            self.hooks.pop(address & LINEAR_MASK, None)

    def before_run(self, budget: int) -> int:
        """Run the hooks of the instruction about to execute (once per execution); the budget
        for this turn: all of it, or one instruction near a watched address. 0: stop here."""
        if not self.hooks:
            return budget
        st = self.m.st
        pc = linear_pc(st)
        key = (pc, int(st[S.ICOUNT]))
        if pc in self.hooks and self._done != key:
            self._done = key
            for hook in list(self.hooks.get(pc, ())):
                if hook():
                    self.stop_requested = True
            if self.stop_requested:
                return 0
            if linear_pc(st) != pc:  # the hook moved EIP: look again from there
                self._done = None
                return self.before_run(budget)
        if any(0 <= (a - pc) & LINEAR_MASK < WINDOW for a in self.hooks):
            return 1
        return budget


class TranslationHook:
    """Passes each translated block to `hook(eip, phys, size, insns)`: its first EIP, the physical
    address of its first byte, its length in bytes and instructions. The main loop calls `collect`
    at every exit, before the -d log (which reads the same ring) empties it."""

    def __init__(self, core):
        self.core = core
        self.hooks: list[Callable] = []
        self._pending: list[tuple[int, int, int, int]] = []

    def collect(self) -> None:
        from emu.translate.blockcache import TB_BYTES, TB_NROWS, TB_WIDTH

        st, ring, tbs = self.core.st, self.core.log_ring, self.core.blocks.tbs
        for i in range(int(st[S.LOG_POS])):
            kind, tb, phys, eip = (int(x) for x in ring[i * EVENT_WIDTH:i * EVENT_WIDTH + 4])
            if kind == EV_TB:
                self._pending.append((eip, phys, int(tbs[tb * TB_WIDTH + TB_BYTES]),
                                      int(tbs[tb * TB_WIDTH + TB_NROWS])))

    def report(self) -> None:
        pending, self._pending = self._pending, []
        for block in pending:
            for hook in list(self.hooks):
                hook(*block)
