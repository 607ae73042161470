/* fpu.c - x87 floating point: a softened 5-body gravity step (fadd, fmul, fdiv, fsqrt) STEPS times.
 * The x87 runs at 53-bit precision (start.asm), so every emulator rounds as IEEE double does; the
 * result folds the bit patterns of all positions and velocities. */
#include "rt.h"

#define NB 5
#define STEPS SCALE(50000, 5000)

typedef struct {
    double x, y, z, vx, vy, vz, m;
} body;

static body b[NB];

static double unit(u32 *seed) { return (double)(lcg(seed) >> 8) / 16777216.0; }

static void step(double dt)
{
    for (int i = 0; i < NB; i++)
        for (int j = i + 1; j < NB; j++) {
            double dx = b[i].x - b[j].x, dy = b[i].y - b[j].y, dz = b[i].z - b[j].z;
            double d2 = dx * dx + dy * dy + dz * dz + 0.01;
            double mag = dt / (d2 * __builtin_sqrt(d2));
            double mi = b[i].m * mag, mj = b[j].m * mag;
            b[i].vx -= dx * mj;
            b[i].vy -= dy * mj;
            b[i].vz -= dz * mj;
            b[j].vx += dx * mi;
            b[j].vy += dy * mi;
            b[j].vz += dz * mi;
        }
    for (int i = 0; i < NB; i++) {
        b[i].x += dt * b[i].vx;
        b[i].y += dt * b[i].vy;
        b[i].z += dt * b[i].vz;
    }
}

int main(void)
{
    u32 seed = 5;
    for (int i = 0; i < NB; i++) {
        b[i].x = unit(&seed) * 10.0 - 5.0;
        b[i].y = unit(&seed) * 10.0 - 5.0;
        b[i].z = unit(&seed) * 10.0 - 5.0;
        b[i].vx = unit(&seed) - 0.5;
        b[i].vy = unit(&seed) - 0.5;
        b[i].vz = unit(&seed) - 0.5;
        b[i].m = unit(&seed) + 0.5;
    }
    for (int s = 0; s < STEPS; s++)
        step(0.001);
    u32 h = 2166136261u;
    for (int i = 0; i < NB; i++) {
        const u32 *w = (const u32 *)&b[i];
        for (int k = 0; k < 12; k++) /* x .. vz: six doubles, low word first */
            h = (h ^ w[k]) * 16777619u;
    }
    rt_result(h);
    return 0;
}
