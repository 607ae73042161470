"""Handler numbers: the interpreter's dispatch cases, one per family of instructions.

The translator maps every decoder form to one of these (emu/translate/translator.py), with R_AUX
selecting the member of the family. Keep the count well under ~150: execution.md measured that
the compile time of the dispatch function grows about quadratically with its number of cases.
"""

H_UD = 0  # invalid encoding: #UD
H_NOP = 1  # no operation (also PAUSE, hint NOPs, prefetches)
H_ALU = 2  # ADD OR ADC SBB AND SUB XOR CMP (aux = the /r number) and TEST (aux = 8)
H_MOV = 3  # MOV between registers, memory and immediates
H_MOVX = 4  # MOVZX (aux 0) and MOVSX (aux 1)
H_LEA = 5
H_XCHG = 6
H_UNARY = 7  # INC DEC NOT NEG (aux 0..3)
H_SHIFT = 8  # ROL..SAR (aux = /r); count R_IMM, or CL when R_IMM < 0
H_SHXD = 9  # SHLD (aux 0) and SHRD (aux 1)
H_MULDIV = 10  # one-operand MUL IMUL DIV IDIV (aux = /r 4..7)
H_IMUL2 = 11  # two- and three-operand IMUL
H_PUSH = 12
H_POP = 13
H_PUSH_SREG = 14
H_POP_SREG = 15
H_PUSHA = 16
H_POPA = 17
H_PUSHF = 18
H_POPF = 19
H_MOV_TO_SREG = 20
H_MOV_FROM_SREG = 21
H_LXS = 22  # LES LDS LSS LFS LGS (aux = segment)
H_JCC = 23
H_JMP_REL = 24
H_CALL_REL = 25
H_JMP_IND = 26
H_CALL_IND = 27
H_RET = 28
H_JMP_FAR = 29
H_CALL_FAR = 30
H_RET_FAR = 31
H_IRET = 32
H_LOOP = 33  # LOOPNE LOOPE LOOP JCXZ (aux 0..3)
H_INT = 34  # INT n (aux 0), INT3 (1), INTO (2), INT1 (3)
H_BOUND = 35
H_STRING = 36  # MOVS CMPS STOS LODS SCAS INS OUTS (aux 0..6) with REP/REPE/REPNE
H_IN = 37
H_OUT = 38
H_FLAGOP = 39  # CMC CLC STC CLI STI CLD STD (aux 0..6)
H_HLT = 40
H_LAHF = 41
H_SAHF = 42
H_CBW = 43
H_CWD = 44
H_XLAT = 45
H_SALC = 46
H_BCD = 47  # DAA DAS AAA AAS AAM AAD (aux 0..5)
H_ENTER = 48
H_LEAVE = 49
H_SETCC = 50
H_CMOVCC = 51
H_BT = 52  # BT BTS BTR BTC (aux 0..3)
H_BSWAP = 53
H_XADD = 54
H_CMPXCHG = 55
H_CMPXCHG8B = 56
H_WAIT = 57
H_SYS = 58  # system instructions, run by the system group (aux = mnemonic id)
H_FPU = 59  # x87 escape
H_UNIMPL = 60  # leave the loop: Python runs or reports it
H_FAULT_GP = 61  # raise #GP(0) (e.g. an instruction past the CS limit)
H_CPUID = 62
H_RDTSC = 63
H_SCALAR = 64  # a pure scalar semantic function (aux = its number; emu/cpu/semantics.py)
N_HANDLERS = 65
HANDLER_NAMES = tuple(name[2:].lower() for name, value in sorted(
    ((k, v) for k, v in globals().items() if k.startswith("H_")), key=lambda kv: kv[1]))
