/* matmul.c - N x N 32-bit integer matrix multiply (wrapping), ROUNDS times on fresh LCG matrices;
 * the result folds every product with FNV-1a over its words (row-major). */
#include "rt.h"

#define N 64
#define ROUNDS SCALE(100, 10)

static u32 A[N][N], B[N][N], C[N][N];

int main(void)
{
    u32 seed = 7, h = 2166136261u;
    for (int r = 0; r < ROUNDS; r++) {
        for (int i = 0; i < N; i++)
            for (int j = 0; j < N; j++)
                A[i][j] = lcg(&seed) >> 8;
        for (int i = 0; i < N; i++)
            for (int j = 0; j < N; j++)
                B[i][j] = lcg(&seed) >> 8;
        for (int i = 0; i < N; i++)
            for (int j = 0; j < N; j++) {
                u32 s = 0;
                for (int k = 0; k < N; k++)
                    s += A[i][k] * B[k][j];
                C[i][j] = s;
            }
        for (int i = 0; i < N; i++)
            for (int j = 0; j < N; j++)
                h = (h ^ C[i][j]) * 16777619u;
    }
    rt_result(h);
    return 0;
}
