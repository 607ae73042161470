/* crc32.c - table-driven CRC-32 (zlib's) over a 64 KiB LCG buffer, PASSES times as one stream. */
#include "rt.h"

#define BUF 65536
#define PASSES SCALE(640, 64)

static u32 table[256];
static u8 buf[BUF];

int main(void)
{
    for (u32 n = 0; n < 256; n++) {
        u32 c = n;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
        table[n] = c;
    }
    u32 seed = 1;
    for (int i = 0; i < BUF; i++)
        buf[i] = (u8)(lcg(&seed) >> 16);
    u32 crc = 0xffffffffu;
    for (int p = 0; p < PASSES; p++)
        for (int i = 0; i < BUF; i++)
            crc = table[(crc ^ buf[i]) & 0xff] ^ (crc >> 8);
    rt_result(~crc);
    return 0;
}
