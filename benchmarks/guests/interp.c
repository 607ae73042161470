/* interp.c - a register bytecode machine (switch dispatch through a jump table) running a loop with
 * a data-dependent branch: x = x * 1103515245 + 12345; y += x >> 3 when bit 16 of x is set, else
 * y = (y ^ x) rotated left by 1; ITER times. The result is y ^ the loop counter. */
#include "rt.h"

#define ITER SCALE(2000000, 200000)

enum { LI, MULI, ADDI, ANDI, SHRI, ADD, XOR, ROLI, SUBI, JZ, JNZ, JMP, HALT };

typedef struct {
    u8 op, a, b, c;
    u32 imm;
} insn;

static const insn program[] = {
    {LI, 0, 0, 0, 0},              /* 0: r0 = 0 (counter) */
    {LI, 1, 0, 0, ITER},           /* 1: r1 = ITER */
    {LI, 2, 0, 0, 12345},          /* 2: r2 = x */
    {LI, 3, 0, 0, 0},              /* 3: r3 = y */
    {MULI, 2, 2, 0, 1103515245u},  /* 4: loop */
    {ADDI, 2, 2, 0, 12345},        /* 5 */
    {ANDI, 4, 2, 0, 0x10000},      /* 6 */
    {JZ, 4, 0, 0, 11},             /* 7 */
    {SHRI, 5, 2, 0, 3},            /* 8 */
    {ADD, 3, 3, 5, 0},             /* 9 */
    {JMP, 0, 0, 0, 13},            /* 10 */
    {XOR, 3, 3, 2, 0},             /* 11 */
    {ROLI, 3, 3, 0, 1},            /* 12 */
    {ADDI, 0, 0, 0, 1},            /* 13 */
    {SUBI, 1, 1, 0, 1},            /* 14 */
    {JNZ, 1, 0, 0, 4},             /* 15 */
    {HALT, 0, 0, 0, 0},            /* 16 */
};

static u32 run(const insn *code)
{
    u32 r[8] = {0};
    u32 pc = 0;
    for (;;) {
        const insn *i = &code[pc++];
        switch (i->op) {
        case LI: r[i->a] = i->imm; break;
        case MULI: r[i->a] = r[i->b] * i->imm; break;
        case ADDI: r[i->a] = r[i->b] + i->imm; break;
        case ANDI: r[i->a] = r[i->b] & i->imm; break;
        case SHRI: r[i->a] = r[i->b] >> i->imm; break;
        case ADD: r[i->a] = r[i->b] + r[i->c]; break;
        case XOR: r[i->a] = r[i->b] ^ r[i->c]; break;
        case ROLI: r[i->a] = (r[i->b] << i->imm) | (r[i->b] >> (32 - i->imm)); break;
        case SUBI: r[i->a] = r[i->b] - i->imm; break;
        case JZ: if (!r[i->a]) pc = i->imm; break;
        case JNZ: if (r[i->a]) pc = i->imm; break;
        case JMP: pc = i->imm; break;
        default: return r[3] ^ r[0];
        }
    }
}

int main(void)
{
    rt_result(run(program));
    return 0;
}
