; pyemu's built-in demo: a one-sector boot program (nasm -f bin demo.asm -o demo.bin).
;
; It clears the screen, prints a banner and the base memory size through the BIOS, then echoes
; what is typed, from the PS/2 keyboard (INT 16h) or from COM1, to the screen and to COM1.
; Esc stops it: it says goodbye and halts with interrupts disabled, which ends pyemu with status 0.
; Between keys it sleeps with HLT until the next interrupt.

bits 16
org 0x7c00

COM1        equ 0x3f8
LSR         equ COM1 + 5
LSR_DR      equ 0x01
LSR_THRE    equ 0x20
KEY_ESC     equ 27

start:
    cli
    xor ax, ax
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov sp, 0x7c00
    sti
    cld

    mov ax, 0x0003              ; 80x25 colour text, clears the screen
    int 0x10

    mov ax, 0x1301              ; write string, move the cursor
    mov bx, 0x001e              ; page 0, yellow on blue
    mov cx, banner_len
    xor dx, dx                  ; row 0, column 0
    mov bp, banner
    int 0x10
    mov si, crlf2
    call print

    mov si, intro
    call print
    int 0x12                    ; AX = base memory in KiB
    call print_dec
    mov si, kib
    call print

.loop:
    mov ah, 0x01                ; a key waiting on the keyboard?
    int 0x16
    jz .serial
    xor ah, ah
    int 0x16
    jmp .got
.serial:
    mov dx, LSR
    in al, dx
    test al, LSR_DR
    jz .idle
    mov dx, COM1
    in al, dx
    jmp .got
.idle:
    hlt
    jmp .loop

.got:
    cmp al, KEY_ESC
    je .quit
    cmp al, 13
    je .newline
    cmp al, 10
    je .newline
    cmp al, 8
    je .backspace
    cmp al, 32
    jb .loop                    ; other control keys: ignored
    call putc
    jmp .loop
.newline:
    mov si, crlf
    call print
    jmp .loop
.backspace:
    mov si, rubout
    call print
    jmp .loop

.quit:
    mov si, bye
    call print
    cli
.halt:
    hlt
    jmp .halt

; print the NUL-terminated string at DS:SI
print:
    lodsb
    test al, al
    jz .done
    call putc
    jmp print
.done:
    ret

; AL to the screen (teletype) and to COM1
putc:
    push ax
    push bx
    push dx
    mov ah, 0x0e
    mov bx, 0x0007
    int 0x10
    mov ah, al
    mov dx, LSR
.wait:
    in al, dx
    test al, LSR_THRE
    jz .wait
    mov al, ah
    mov dx, COM1
    out dx, al
    pop dx
    pop bx
    pop ax
    ret

; AX as a decimal number
print_dec:
    mov bx, 10
    xor cx, cx
.div:
    xor dx, dx
    div bx
    push dx
    inc cx
    test ax, ax
    jnz .div
.out:
    pop ax
    add al, '0'
    call putc
    loop .out
    ret

banner:     db " pyemu demo: this PC booted a 512-byte program of our own "
banner_len  equ $ - banner
crlf2:      db 13, 10
crlf:       db 13, 10, 0
intro:      db "Base memory (INT 12h): ", 0
kib:        db " KiB", 13, 10, 13, 10
            db "Type some text; it echoes here and on COM1. Esc quits.", 13, 10, "> ", 0
rubout:     db 8, " ", 8, 0
bye:        db 13, 10, "Bye.", 13, 10, 0

times 510 - ($ - $$) db 0
dw 0xaa55
