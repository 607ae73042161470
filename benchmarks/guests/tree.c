/* tree.c - call-heavy recursion: a complete binary tree of 2^DEPTH - 1 nodes in heap order, walked
 * recursively WALKS times; each walk folds node values, depths and the walk number. */
#include "rt.h"

#define DEPTH 16
#define NODES ((1u << DEPTH) - 1)
#define WALKS SCALE(100, 10)

static u32 val[NODES];

static u32 __attribute__((noinline)) walk(u32 i, u32 depth, u32 r)
{
    if (i >= NODES)
        return depth;
    u32 left = walk(2 * i + 1, depth + 1, r);
    u32 right = walk(2 * i + 2, depth + 1, r);
    return (val[i] + r) ^ (left * 3 + right);
}

int main(void)
{
    u32 seed = 99, h = 2166136261u;
    for (u32 i = 0; i < NODES; i++)
        val[i] = lcg(&seed);
    for (u32 r = 0; r < WALKS; r++)
        h = (h ^ walk(0, 0, r)) * 16777619u;
    rt_result(h);
    return 0;
}
