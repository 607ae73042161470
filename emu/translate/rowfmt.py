"""The row format of a translation block: one fixed-width int64 row per guest instruction.

The translator fills rows from the decoder's fields, already normalised for the interpreter:

    R_H      handler number (emu/cpu/handlers.py)
    R_LEN    instruction length in bytes
    R_OFF    offset of the instruction from the block's first byte (restores the precise EIP)
    R_SIZE   operand size in bytes (of the first operand: 1, 2 or 4)
    R_AUX    which operation of the handler's family (ALU op, condition code, shift kind, ...)
    R_DST    first operand: a register number, RM_MEM for memory, RM_NONE for none
    R_SRC    second operand: a register number, RM_MEM, RM_NONE (immediate or absent)
    R_BASE   memory operand: base register or -1
    R_INDEX  index register or -1
    R_SCALE  index shift 0..3
    R_DISP   displacement (sign-extended, 32 bits)
    R_SEG    the segment of the memory operand after overrides
    R_ASIZE  address size in bytes (2 or 4)
    R_IMM    first immediate (branch displacement, port, count, ...)
    R_IMM2   second immediate (ENTER's nesting level, a far pointer's selector)
    R_X      bits: X_REP_MASK (1 = F3 REP/REPE, 2 = F2 REPNE), X_MEM (has a memory operand),
             X_LOCK, the second operand's size at X_SIZE2_SHIFT, the segment-override flag
"""

ROW_WIDTH = 16
R_H, R_LEN, R_OFF, R_SIZE, R_AUX, R_DST, R_SRC, R_BASE = range(8)
R_INDEX, R_SCALE, R_DISP, R_SEG, R_ASIZE, R_IMM, R_IMM2, R_X = range(8, 16)

RM_MEM = -1
RM_NONE = -2

X_REP_MASK = 0x3
X_REP = 1  # F3: REP / REPE
X_REPNE = 2  # F2
X_MEM = 0x4
X_LOCK = 0x8
X_SEGOVR = 0x10
X_SIZE2_SHIFT = 8
