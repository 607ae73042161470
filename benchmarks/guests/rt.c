/* rt.c - COM1 output (polling the line status register), the result line, and the exit: a write to
 * isa-debug-exit (port 0xf4: QEMU and pyemu stop) and then "Shutdown" to port 0x8900 (Bochs stops). */
#include "rt.h"

static int com1_ready;

static void putc_com1(char c)
{
    if (!com1_ready) { /* 115200 baud, 8N1: Bochs's BIOS leaves the UART at 5 data bits */
        outb(0x3fb, 0x80);
        outb(0x3f8, 1);
        outb(0x3f9, 0);
        outb(0x3fb, 0x03);
        com1_ready = 1;
    }
    while (!(inb(0x3fd) & 0x20))
        ;
    outb(0x3f8, (u8)c);
}

void rt_puts(const char *s)
{
    while (*s)
        putc_com1(*s++);
}

void rt_result(u32 value)
{
    char line[14] = "CRC ";
    for (int i = 0; i < 8; i++)
        line[4 + i] = "0123456789abcdef"[(value >> (28 - 4 * i)) & 15];
    line[12] = '\n';
    line[13] = 0;
    rt_puts(line);
}

void rt_exit(int code)
{
    while (com1_ready && !(inb(0x3fd) & 0x40)) /* the last character has left the transmitter */
        ;
    outb(0xf4, (u8)code);
    for (const char *s = "Shutdown"; *s; s++)
        outb(0x8900, (u8)*s);
    for (;;)
        __asm__ volatile("cli; hlt");
}

void *memcpy(void *dst, const void *src, unsigned n)
{
    void *d = dst;
    __asm__ volatile("rep movsb" : "+D"(d), "+S"(src), "+c"(n) : : "memory");
    return dst;
}

void *memset(void *dst, int c, unsigned n)
{
    void *d = dst;
    __asm__ volatile("rep stosb" : "+D"(d), "+c"(n) : "a"(c) : "memory");
    return dst;
}
