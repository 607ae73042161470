"""The calling convention of tier-1 block functions (shared by the generator and the loop).

`i64 f(i64 state_ptr, i64 ctx_ptr, i64 retired)`: `retired` counts the instructions that compiled
code retired before this block in the same call (a block that chains into a compiled successor
tail-calls it). At its return compiled code has added those (earlier blocks, earlier passes of a
one-block loop) to ICOUNT, BUDGET and the statistics, and has stored EIP: the branch target after
a control transfer, else the last block's start.

It returns `rows_done | way << T1_WAY_SHIFT | T1_ENDED | T1_CHAIN | tb << T1_TB_SHIFT` about the
last block it ran, `tb`: rows_done of its rows retired (the loop counts them and interprets the
rest); T1_ENDED: its last row was a control transfer; T1_CHAIN: a direct one (Jcc, JMP rel,
LOOP) whose exit `way` (0 taken, 1 fall-through) the loop may chain.
"""

T1_ROWS_MASK = 0x3F
T1_WAY_SHIFT = 6
T1_ENDED = 1 << 7
T1_CHAIN = 1 << 8
T1_TB_SHIFT = 16
T1_TB_MASK = 0xFFFF  # MAX_TBS - 1
SCALAR_FLAGS_SHIFT = 32  # tier1_rt.rt_scalar returns the value in bits 0-31, the status flags above
