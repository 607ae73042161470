; pyemu engine benchmark: a 32-bit flat integer workload (bits32, loaded at 0x10000, stack at 0x90000)
; The harness enters it in protected mode with flat 4 GiB segments; it ends with HLT.
; Three phases, each repeated ROUNDS times:
;   1. bitwise CRC-32 of a 4 KiB buffer (shifts, xor, conditional branches)
;   2. bubble sort of 256 dwords (loads, stores, compares)
;   3. a 4 KiB dword copy loop (memory-bound)
bits 32
org 0x10000
ROUNDS  equ 40
BUF     equ 0x20000
ARR     equ 0x30000
DST     equ 0x40000
RESULT  equ 0x50000  ; data kept off the code page (a store there would invalidate the blocks)

start:
    mov esp, 0x90000
    mov ebp, ROUNDS
    ; fill the buffer with a pseudo-random pattern
    mov edi, BUF
    mov ecx, 4096
    mov eax, 12345
fill:
    imul eax, eax, 1103515245
    add eax, 12345
    mov [edi], al
    inc edi
    dec ecx
    jnz fill
round:
    ; ---- 1. CRC-32 (reflected, poly EDB88320) of BUF
    mov esi, BUF
    mov ecx, 4096
    mov edx, 0xFFFFFFFF
crc_byte:
    movzx eax, byte [esi]
    xor edx, eax
    mov ebx, 8
crc_bit:
    shr edx, 1
    jnc crc_nox
    xor edx, 0xEDB88320
crc_nox:
    dec ebx
    jnz crc_bit
    inc esi
    dec ecx
    jnz crc_byte
    not edx
    mov [RESULT], edx
    ; ---- 2. bubble sort of 256 dwords, seeded from the CRC
    mov edi, ARR
    mov ecx, 256
    mov eax, edx
seed:
    imul eax, eax, 69069
    inc eax
    mov [edi], eax
    add edi, 4
    dec ecx
    jnz seed
    mov ecx, 255
outer:
    mov esi, ARR
    mov ebx, ecx
inner:
    mov eax, [esi]
    mov edx, [esi+4]
    cmp eax, edx
    jbe noswap
    mov [esi], edx
    mov [esi+4], eax
noswap:
    add esi, 4
    dec ebx
    jnz inner
    dec ecx
    jnz outer
    ; ---- 3. copy 4 KiB as dwords
    mov esi, BUF
    mov edi, DST
    mov ecx, 1024
copy:
    mov eax, [esi]
    mov [edi], eax
    add esi, 4
    add edi, 4
    dec ecx
    jnz copy
    dec ebp
    jnz round
    hlt

