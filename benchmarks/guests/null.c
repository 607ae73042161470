/* null.c - no work: boots, prints CRC 00000000 and exits. Its wall time is each emulator's fixed
 * cost (process start, BIOS, loading the floppy), which the other workloads' times include. */
#include "rt.h"

int main(void)
{
    rt_result(0);
    return 0;
}
