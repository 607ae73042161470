"""Guest CPU state as one int64 array, with named offsets.

execution.md: "State as one array". Compiled code indexes this array with the constants below
(numba folds module-level integer globals into the code), and helpers that must not take arrays
get its raw address. Every 32-bit quantity is kept zero-extended (0 .. 2**32-1); 64-bit ones (TSC,
MSR values, PDPTEs) use the whole slot.

The six status flags (CF PF AF ZF SF OF) are lazy (SDM Vol 1, 3.4.3): `CC_OP`, `CC_DST`, `CC_SRC`
and `CC_SRC2` record the last flag-setting operation, and `EFLAGS` holds every other bit. The flags
are materialised only when read (PUSHF, LAHF, Jcc, an interrupt, ...).
"""

from __future__ import annotations

import numpy as np

# General-purpose registers in the SDM's encoding order (Vol 2, Table 2-1/2-2 "reg" field).
EAX, ECX, EDX, EBX, ESP, EBP, ESI, EDI = range(8)
GPR_NAMES = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi")

EIP = 8
EFLAGS = 9
CC_OP = 10
CC_DST = 11
CC_SRC = 12
CC_SRC2 = 13

# Segment registers in the SDM's Sreg encoding order (Vol 2, 3.1.1.3 / Table 3-?).
ES, CS, SS, DS, FS, GS = range(6)
LDTR_SEG, TR_SEG = 6, 7  # the LDTR and TR caches share the segment-cache shape
SEG_NAMES = ("es", "cs", "ss", "ds", "fs", "gs", "ldtr", "tr")
SEG_BASE_SLOT = 16
SEG_STRIDE = 4  # selector, base, limit, attributes
SEG_SEL, SEG_BASE, SEG_LIMIT, SEG_ATTR = range(4)


def seg_slot(seg: int, field: int) -> int:
    return SEG_BASE_SLOT + SEG_STRIDE * seg + field


# Convenience constants for the hot path: SEGBASE + seg*SEG_STRIDE etc.
SEGSEL = SEG_BASE_SLOT + SEG_SEL
SEGBASE = SEG_BASE_SLOT + SEG_BASE
SEGLIMIT = SEG_BASE_SLOT + SEG_LIMIT
SEGATTR = SEG_BASE_SLOT + SEG_ATTR

# Segment attribute word: descriptor bytes 5 and 6 (access byte | flags nibble << 8), SDM Vol 3, 3.4.5.
ATTR_TYPE_MASK = 0x0F
ATTR_ACCESSED = 0x01
ATTR_WRITABLE = 0x02  # data: writable; code: readable
ATTR_EXPAND_DOWN = 0x04  # data; code: conforming
ATTR_CODE = 0x08
ATTR_S = 0x10  # code/data (1) or system (0)
ATTR_DPL_SHIFT = 5
ATTR_P = 0x80
ATTR_AVL = 0x1000
ATTR_L = 0x2000
ATTR_DB = 0x4000  # CS.D / SS.B
ATTR_G = 0x8000

GDTR_BASE = 48
GDTR_LIMIT = 49
IDTR_BASE = 50
IDTR_LIMIT = 51

CR0 = 52
CR2 = 53
CR3 = 54
CR4 = 55
DR0 = 56  # DR0..DR7 at 56..63
EFER = 64
CPL = 65
HFLAGS = 66  # the mode bits that change decoding, part of every translation block's tag
A20_MASK = 67  # 0xFFFFFFFF with the A20 gate on, 0xFFEFFFFF with it off
TSC_OFFSET = 68

# Instruction counting and the exit protocol (execution.md: "one entry point, explicit exits").
ICOUNT = 69  # instructions retired since power-on
BUDGET = 70  # instructions the loop may still run before it must return (next timer deadline)
EXIT_REASON = 71
EXIT_ARG0 = 72
EXIT_ARG1 = 73
EXIT_ARG2 = 74
EXIT_ARG3 = 75
INTR_LINE = 76  # the interrupt controller's INTR output, set by Python between runs
HALTED = 77
IO_PENDING = 78  # an IN/INS whose value Python has fetched: the re-executed instruction takes it
IO_VALUE = 79
NMI_PENDING = 80
INHIBIT_IRQ = 81  # the instruction after MOV SS/POP SS/STI sees no interrupt (SDM Vol 3, 6.8.3)
FAULT_VECTOR = 82  # set by memory helpers when an access faults; -1 when none
FAULT_ERROR = 83  # its error code, or -1 when the exception pushes none
DOUBLE_FAULT = 84  # nesting depth of exception delivery, for #DF and the triple fault
SYSENTER_CS = 85
SYSENTER_ESP = 86
SYSENTER_EIP = 87
MMIO_PENDING = 88  # like IO_PENDING, for a read from a device's memory region
MMIO_ADDR = 89
MMIO_VALUE = 90
PDPTE0 = 92  # PAE page-directory-pointer-table entries, 92..95
STOP_AFTER_INSN = 96  # set by a helper: leave the current block after this instruction retires
SMC_WRITES = 97  # code-page writes seen (the blocks were invalidated at once)
# MSR storage of emu/cpu/system.py (RDMSR/WRMSR; SDM Vol 4 and Vol 3, 11.11 MTRRs, 11.12 PAT).
MSR_PAT = 98
MSR_MTRR_DEF_TYPE = 99
MSR_MTRR_FIXED = 100  # the 11 fixed-range MTRRs (250h, 258h, 259h, 268h..26Fh), 100..110
MSR_MTRR_VAR = 111  # 8 variable-range pairs PHYSBASEn/PHYSMASKn (200h..20Fh), 111..126

LOG_MASK = 128  # -d items the compiled loop records (LOG_* bits below)
LOG_ACK = 129  # a per-block log exit was taken for the block about to run
LOG_POS = 130  # events in the log ring (emu/cpu/tracelog.py)
# x87 FPU (emu/cpu/fpu.py; SDM Vol 1, 8.1): the physical data registers R0..R7 hold float64 bit
# patterns; FSW holds TOP in bits 11..13; FTW is the full 2-bit tag word (R0 in bits 0..1).
FPU_R0 = 131  # R0..R7 at 131..138
FPU_FCW = 139
FPU_FSW = 140
FPU_FTW = 141
FPU_FIP = 142  # last x87 instruction: offset, CS selector and 11-bit opcode
FPU_FCS = 143
FPU_FOP = 144
FPU_FDP = 145  # its memory operand: offset and segment selector
FPU_FDS = 146
TSC_RATE = 148  # TSC ticks per retired instruction, in 1/256ths (emu/tsc.py keeps it near the real rate)
TSC_RATE_SHIFT = 8
TSC_RATE_RESET = 8 << TSC_RATE_SHIFT  # 8 ns per instruction at the clock's default: a 1 GHz TSC
# The TSC read from the host's clock (emu/tsc.py, host time): when TSC_HOST_FN is not 0, RDTSC is
# guest nanoseconds read from the C library's clock_gettime at TSC_HOST_FN, minus TSC_HOST_ORIGIN
# (the host clock's reading at guest time 0), plus TSC_OFFSET. Set by Python only, never by the
# guest; RESET clears them (the TSC counts instructions until the main loop sets them again).
TSC_HOST_FN = 149
TSC_HOST_CLOCK = 150  # clock_gettime's clock id (CLOCK_MONOTONIC)
TSC_HOST_ORIGIN = 151
TSC_TIMESPEC = 152  # 152..153: the struct timespec clock_gettime writes (tv_sec, tv_nsec)
MXCSR = 147  # kept for FXSAVE/FXRSTOR only: no SSE instructions (CPUID.1:EDX.SSE = 0)
MXCSR_RESET = 0x1F80
FPU_FCW_POWERUP = 0x0040  # SDM Vol 3, Table 9-1: FCW 0040h, FSW 0, FTW 5555h (all registers +0)
CR0_POWERUP = 0x6000_0010  # CD, NW and ET set after RESET (SDM Vol 3, Table 9-1)
FPU_FTW_POWERUP = 0x5555

STATE_SIZE = 160

# LOG_MASK bits (QEMU's -d item names).
LOG_IN_ASM = 1  # each block translated: its address (Python disassembles it)
LOG_EXEC = 2  # each block run
LOG_CPU = 4  # the registers before each block (leaves the loop at every block: slow)
LOG_INT = 8  # each interrupt and exception delivered
LOG_UNIMP = 16  # each instruction pyemu lacks (it raises #UD)

# HFLAGS bits: what a translation block's decoding depends on (issue 3: CS.D, SS.B, PE, VM, CPL).
HF_CPL_MASK = 0x3
HF_CS32 = 0x4
HF_SS32 = 0x8
HF_PE = 0x10
HF_VM = 0x20

# Exit reasons left in EXIT_REASON.
EXIT_NONE = 0
EXIT_BUDGET = 1  # the instruction budget ran out (a timer is due)
EXIT_IRQ = 2  # INTR rose while IF=1: Python acknowledges the PIC and the loop delivers it
EXIT_IO_IN = 3  # ARG0 = port, ARG1 = size in bytes; the instruction re-executes with IO_VALUE
EXIT_IO_OUT = 4  # ARG0 = port, ARG1 = size, ARG2 = value; the instruction has retired
EXIT_HLT = 5
EXIT_MMIO_READ = 6  # ARG0 = physical address, ARG1 = size
EXIT_MMIO_WRITE = 7  # ARG0 = physical address, ARG1 = size, ARG2 = value; retired
EXIT_TRIPLE_FAULT = 8
EXIT_BIOS_TRAP = 9  # ARG0 = service number of the BIOS stub that trapped
EXIT_UNIMPLEMENTED = 10  # ARG0 = opcode (map*256 + byte); EIP at the instruction
EXIT_RESET = 11
EXIT_LOG = 12  # the log ring is full, or LOG_CPU wants the registers: Python drains it and resumes
EXIT_COMPILE = 13  # the tier-1 compile queue is full: CpuCore compiles it and resumes
EXIT_REASON_NAMES = ("none", "budget", "irq", "io_in", "io_out", "hlt", "mmio_read", "mmio_write",
                     "triple_fault", "bios_trap", "unimplemented", "reset", "log", "compile")


def new_state() -> np.ndarray:
    """A state array holding the x86 power-on state (SDM Vol 3, 9.1.1, Table 9-1)."""
    st = np.zeros(STATE_SIZE, dtype=np.int64)
    reset_state(st)
    return st


def reset_state(st: np.ndarray) -> None:
    """RESET: real mode at F000:FFF0 with CS.base FFFF0000, EDX = the CPU signature."""
    log_mask = int(st[LOG_MASK])  # -d logging survives a reset of the guest
    st[:] = 0
    st[LOG_MASK] = log_mask
    st[EDX] = 0x0000_0633  # family 6, model 3, stepping 3 (what the CPUID leaf 1 reports)
    st[EIP] = 0xFFF0
    st[EFLAGS] = 0x2  # bit 1 always reads 1
    from emu.cpu.flags import CC_OP_EFLAGS  # lazy import: flags.py is the owner of CC_OP codes

    st[CC_OP] = CC_OP_EFLAGS
    st[CC_SRC] = 0
    for seg in range(6):
        st[seg_slot(seg, SEG_SEL)] = 0
        st[seg_slot(seg, SEG_BASE)] = 0
        st[seg_slot(seg, SEG_LIMIT)] = 0xFFFF
        st[seg_slot(seg, SEG_ATTR)] = ATTR_P | ATTR_S | ATTR_WRITABLE | ATTR_ACCESSED
    st[seg_slot(CS, SEG_SEL)] = 0xF000
    st[seg_slot(CS, SEG_BASE)] = 0xFFFF0000
    st[seg_slot(CS, SEG_ATTR)] = ATTR_P | ATTR_S | ATTR_CODE | ATTR_WRITABLE | ATTR_ACCESSED
    for seg in (LDTR_SEG, TR_SEG):
        st[seg_slot(seg, SEG_LIMIT)] = 0xFFFF
        st[seg_slot(seg, SEG_ATTR)] = ATTR_P | (2 if seg == LDTR_SEG else 0xB)
    st[GDTR_LIMIT] = 0xFFFF
    st[IDTR_LIMIT] = 0xFFFF
    st[CR0] = CR0_POWERUP
    st[A20_MASK] = 0xFFFF_FFFF
    st[FAULT_VECTOR] = -1
    st[FAULT_ERROR] = -1
    st[DR0 + 6] = 0xFFFF0FF0
    st[DR0 + 7] = 0x400
    st[HFLAGS] = 0
    st[MSR_PAT] = 0x0007_0406_0007_0406  # the PAT's power-on value (SDM Vol 3, 11.12.4)
    st[FPU_FCW] = FPU_FCW_POWERUP
    st[MXCSR] = MXCSR_RESET
    st[TSC_RATE] = TSC_RATE_RESET
    st[FPU_FTW] = FPU_FTW_POWERUP
