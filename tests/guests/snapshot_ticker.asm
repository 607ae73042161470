; A boot sector for the snapshot tests (tests/test_snapshots.py): the PIT at ~1 kHz on IRQ0 and the
; RTC's periodic interrupt (1024 Hz) on IRQ8, each with its own handler counting in low memory, while
; the main loop fills 64 KiB at 1000:0000 with an LCG that reads the PIT's count every 256 turns.
; Every 16th PIT tick writes a letter to COM1. A restored machine must land every interrupt on the
; same instruction for the memory, the registers and COM1 to come out the same.
bits 16
org 0x7c00
PIT_TICKS equ 0x500
RTC_TICKS equ 0x502
    jmp 0:start
start:
    cli
    xor ax, ax
    mov ds, ax
    mov ss, ax
    mov sp, 0x6000
    mov word [0x08*4], irq0
    mov word [0x08*4+2], 0
    mov word [0x70*4], irq8
    mov word [0x70*4+2], 0
    mov al, 0x34            ; counter 0, LSB then MSB, mode 2
    out 0x43, al
    mov ax, 1193            ; 1.193182 MHz / 1193: ~1 kHz
    out 0x40, al
    mov al, ah
    out 0x40, al
    mov al, 0x8b            ; RTC register B |= PIE (rate: register A's 1024 Hz)
    out 0x70, al
    in al, 0x71
    or al, 0x40
    mov ah, al
    mov al, 0x8b
    out 0x70, al
    mov al, ah
    out 0x71, al
    in al, 0x21             ; unmask IRQ0 and the cascade (IRQ2), then IRQ8
    and al, 0xfa
    out 0x21, al
    in al, 0xa1
    and al, 0xfe
    out 0xa1, al
    mov ax, 0x1000
    mov es, ax
    mov ebx, 12345
    xor ecx, ecx
    sti
fill:
    imul ebx, ebx, 1103515245
    add ebx, 12345
    mov edi, ebx
    shr edi, 16
    and di, 0xfffc
    mov [es:di], ebx
    inc ecx
    test cl, cl
    jnz fill
    mov al, 0               ; latch counter 0 and mix its count in
    out 0x43, al
    in al, 0x40
    xor bl, al
    in al, 0x40
    xor bh, al
    jmp fill
irq0:
    push ax
    inc word [PIT_TICKS]
    mov ax, [PIT_TICKS]
    test al, 15
    jnz .eoi
    push dx
    mov dx, 0x3f8
    shr ax, 4
    and al, 15
    add al, 'a'
    out dx, al
    pop dx
.eoi:
    mov al, 0x20
    out 0x20, al
    pop ax
    iret
irq8:
    push ax
    mov al, 0x0c            ; reading register C acknowledges the RTC
    out 0x70, al
    in al, 0x71
    inc word [RTC_TICKS]
    mov al, 0x20
    out 0xa0, al
    out 0x20, al
    pop ax
    iret
times 510 - ($ - $$) db 0
dw 0xaa55
