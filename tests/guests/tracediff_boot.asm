; A small real-mode then protected-mode boot sector for trace-diff and lockstep (issue 12).
; Loops over arithmetic in both modes, then leaves through isa-debug-exit (port 0xf4).
bits 16
org 0x7c00
start:                      ; the first SETUP_INSNS instructions make the state independent of the BIOS
    cli
    mov eax, cr0
    and eax, 0x9fffffff     ; CD and NW: SeaBIOS clears them, pyemu's BIOS leaves the reset value 0x60000010
    mov cr0, eax
    xor eax, eax
    mov ds, ax
    mov es, ax
    mov fs, ax
    mov gs, ax
    mov ss, ax
    mov esp, 0x7c00
    xor ebx, ebx
    xor ecx, ecx
    xor edx, edx
    xor esi, esi
    xor edi, edi
    xor ebp, ebp
    push word 2
    popf                    ; SETUP_INSNS = 19: compare from here (trace-diff --skip 19)
    mov cx, 40
    mov bx, 0x1234
.rloop:
    add ax, bx
    adc bx, cx
    xor dx, ax
    shl bx, 1
    sub dx, cx
    push dx
    pop si
    loop .rloop
    mov [0x600], ax
    lgdt [gdtr]
    mov eax, cr0
    or al, 1
    mov cr0, eax
    jmp 0x08:pm
bits 32
pm:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov esp, 0x9000
    mov ecx, 60
    mov ebx, 0x9e3779b9
.ploop:
    add eax, ebx
    rol ebx, 5
    imul edx, eax, 7
    xor ebx, edx
    mov [0x700 + ecx*4], eax
    dec ecx
    jnz .ploop
    mov al, 0
    out 0xf4, al
    hlt
align 8
gdt:
    dq 0
    dq 0x00cf9a000000ffff
    dq 0x00cf92000000ffff
gdtr:
    dw gdtr - gdt - 1
    dd gdt
times 510-($-$$) db 0
dw 0xaa55
