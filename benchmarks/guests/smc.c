/* smc.c - self-modifying code: a routine in .data whose mov eax, imm32 is rewritten before each of
 * ROUNDS calls; each call adds eax to edx and rotates edx left by 3, 64 times. */
#include "rt.h"

#define ROUNDS SCALE(250000, 25000)

static u8 code[32] __attribute__((aligned(16))) = {
    0xb8, 0, 0, 0, 0,       /* mov eax, imm32 (rewritten) */
    0xb9, 64, 0, 0, 0,      /* mov ecx, 64 */
    0x01, 0xc2,             /* L: add edx, eax */
    0xc1, 0xc2, 0x03,       /* rol edx, 3 */
    0x49,                   /* dec ecx */
    0x75, 0xf8,             /* jnz L */
    0xc3,                   /* ret */
};

int main(void)
{
    u32 seed = 3, h = 0;
    for (u32 r = 0; r < ROUNDS; r++) {
        u32 imm = lcg(&seed);
        volatile u8 *p = code + 1;
        p[0] = (u8)imm;
        p[1] = (u8)(imm >> 8);
        p[2] = (u8)(imm >> 16);
        p[3] = (u8)(imm >> 24);
        u32 eax;
        __asm__ volatile("call *%2" : "+d"(h), "=a"(eax) : "S"(code) : "ecx", "memory", "cc");
    }
    rt_result(h);
    return 0;
}
