/* rt.h - the benchmark payloads' runtime: port I/O, COM1 output, the result line and the exit. */
#ifndef RT_H
#define RT_H

typedef unsigned int u32;
typedef int i32;
typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned long long u64;

#ifdef QUICK
#define SCALE(full, quick) (quick)
#else
#define SCALE(full, quick) (full)
#endif

static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline u8 inb(u16 port)
{
    u8 v;
    __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}

/* The LCG every workload and its Python reference share (glibc's constants). */
static inline u32 lcg(u32 *s)
{
    *s = *s * 1103515245u + 12345u;
    return *s;
}

void rt_puts(const char *s);
void rt_result(u32 value); /* prints "CRC xxxxxxxx\n" */
void rt_exit(int code) __attribute__((noreturn));
void *memcpy(void *dst, const void *src, unsigned n);
void *memset(void *dst, int c, unsigned n);
int main(void);

#endif
