/* sort.c - quicksort (median of three, insertion sort below 16) of N LCG words, ROUNDS times;
 * the result folds every sorted array with FNV-1a over its words. */
#include "rt.h"

#define N 20000
#define ROUNDS SCALE(150, 15)

static u32 a[N];

static void insertion(u32 *v, int n)
{
    for (int i = 1; i < n; i++) {
        u32 x = v[i];
        int j = i - 1;
        while (j >= 0 && v[j] > x) {
            v[j + 1] = v[j];
            j--;
        }
        v[j + 1] = x;
    }
}

static void quicksort(u32 *v, int n)
{
    while (n > 16) {
        u32 x = v[0], y = v[n / 2], z = v[n - 1];
        u32 pivot = x < y ? (y < z ? y : (x < z ? z : x)) : (x < z ? x : (y < z ? z : y));
        int i = 0, j = n - 1;
        for (;;) {
            while (v[i] < pivot)
                i++;
            while (v[j] > pivot)
                j--;
            if (i >= j)
                break;
            u32 t = v[i];
            v[i] = v[j];
            v[j] = t;
            i++;
            j--;
        }
        /* recurse on the smaller part, loop on the larger */
        if (j + 1 < n - j - 1) {
            quicksort(v, j + 1);
            v += j + 1;
            n -= j + 1;
        } else {
            quicksort(v + j + 1, n - j - 1);
            n = j + 1;
        }
    }
    insertion(v, n);
}

int main(void)
{
    u32 seed = 42, h = 2166136261u;
    for (int r = 0; r < ROUNDS; r++) {
        for (int i = 0; i < N; i++)
            a[i] = lcg(&seed);
        quicksort(a, N);
        for (int i = 0; i < N; i++)
            h = (h ^ a[i]) * 16777619u;
    }
    rt_result(h);
    return 0;
}
