"""Operation numbers of the system-instruction group (handler H_SYS, R_AUX = one of these).

The translator picks the number from the decoder form; emu/cpu/system.py runs it.
"""

SYS_MOV_TO_CR = 0  # MOV CRn, r32 (R_DST = n, R_SRC = GPR)
SYS_MOV_FROM_CR = 1  # MOV r32, CRn (R_DST = GPR, R_SRC = n)
SYS_MOV_TO_DR = 2
SYS_MOV_FROM_DR = 3
SYS_LGDT = 4
SYS_LIDT = 5
SYS_SGDT = 6
SYS_SIDT = 7
SYS_LLDT = 8
SYS_LTR = 9
SYS_SLDT = 10
SYS_STR = 11
SYS_LMSW = 12
SYS_SMSW = 13
SYS_CLTS = 14
SYS_INVLPG = 15
SYS_INVD = 16
SYS_WBINVD = 17
SYS_CPUID = 18
SYS_RDTSC = 19
SYS_RDMSR = 20
SYS_WRMSR = 21
SYS_LAR = 22
SYS_LSL = 23
SYS_VERR = 24
SYS_VERW = 25
SYS_ARPL = 26
SYS_SYSENTER = 27
SYS_SYSEXIT = 28
SYS_RDPMC = 29
SYS_RSM = 30
SYS_FXSAVE = 31  # FXSAVE/FXRSTOR m512byte (emu/cpu/fpu.py)
SYS_FXRSTOR = 32
N_SYS = 33

# Result codes of system_insn besides the negative failure codes of emu/cpu/access.py.
SYS_CONTINUE = 0  # done; the block goes on with the next instruction
SYS_END_BLOCK = 1  # done, but modes or mappings changed: the loop must look up the next block
