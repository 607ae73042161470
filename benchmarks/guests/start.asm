; start.asm - payload entry at 0x10000: clears .bss, sets the x87 to double precision (so that every
; emulator rounds as IEEE double does), calls main() and exits with its result.
bits 32
section .text.start
global _start
extern main, rt_exit, __bss_start, __bss_end
_start:
  cld
  mov edi, __bss_start
  mov ecx, __bss_end
  sub ecx, edi
  xor eax, eax
  rep stosb
  fninit
  push 0x027f                ; precision control = 53 bits, round to nearest, all exceptions masked
  fldcw [esp]
  add esp, 4
  call main
  push eax
  call rt_exit
.hang:
  cli
  hlt
  jmp .hang
