/* memops.c - string instructions and byte loops over 32 KiB buffers, ROUNDS times: rep stosd fills,
 * a byte loop writes a pattern, rep movsd and an unaligned rep movsb copy it, a byte loop sums it. */
#include "rt.h"

#define SIZE 32768
#define ROUNDS SCALE(700, 70)

static u8 src[SIZE] __attribute__((aligned(16)));
static u8 dst[SIZE + 64] __attribute__((aligned(16)));

static inline void stosd(void *d, u32 v, u32 n)
{
    __asm__ volatile("rep stosl" : "+D"(d), "+c"(n) : "a"(v) : "memory");
}

static inline void movsd(void *d, const void *s, u32 n)
{
    __asm__ volatile("rep movsl" : "+D"(d), "+S"(s), "+c"(n) : : "memory");
}

static inline void movsb(void *d, const void *s, u32 n)
{
    __asm__ volatile("rep movsb" : "+D"(d), "+S"(s), "+c"(n) : : "memory");
}

int main(void)
{
    u32 h = 2166136261u;
    for (u32 r = 0; r < ROUNDS; r++) {
        stosd(dst, 0x01010101u * (r & 0xff), SIZE / 4);
        for (u32 i = 0; i < SIZE; i++)
            src[i] = (u8)(i * 31 + r);
        movsd(dst, src, SIZE / 4);
        movsb(dst + 3, src + 1, SIZE - 64);
        u32 sum = 0;
        for (u32 i = 0; i < SIZE; i++)
            sum += dst[i] ^ (u8)i;
        h = (h ^ sum) * 16777619u;
    }
    rt_result(h);
    return 0;
}
