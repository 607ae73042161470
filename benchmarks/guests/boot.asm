; boot.asm - the benchmark suite's boot sector (nasm -f bin -DSECTORS=n).
; Loads SECTORS sectors that follow it on the floppy to 0x10000 with INT 13h (one sector per call,
; 18 sectors a track, two heads), enables A20 (port 92h), enters 32-bit flat protected mode and
; jumps to the payload at 0x10000 with ESP = 0x90000.
bits 16
org 0x7c00
%ifndef SECTORS
%define SECTORS 64
%endif
LOAD_SEG equ 0x1000

start:
  cli
  xor ax, ax
  mov ds, ax
  mov ss, ax
  mov sp, 0x7c00
  sti
  mov [drive], dl
  mov ax, LOAD_SEG
  mov es, ax
  xor bx, bx                 ; ES:BX = where the next sector goes
  mov si, 1                  ; LBA of the next sector
.next:
  cmp si, SECTORS + 1
  jae .loaded
  mov ax, si                 ; CHS from LBA: sector = lba % 18 + 1, head = lba / 18 % 2, cyl = lba / 36
  xor dx, dx
  mov cx, 18
  div cx                     ; ax = lba / 18, dx = lba % 18
  mov cl, dl
  inc cl                     ; CL = sector
  mov dh, al
  and dh, 1                  ; DH = head
  shr ax, 1
  mov ch, al                 ; CH = cylinder
  mov dl, [drive]
  mov di, 3                  ; tries
.try:
  mov ax, 0x0201
  int 0x13
  jnc .ok
  xor ax, ax
  int 0x13                   ; reset the drive and try again
  dec di
  jnz .try
  mov al, '!'
  mov dx, 0x3f8
  out dx, al
  jmp .halt
.ok:
  inc si
  mov ax, es
  add ax, 0x20               ; 512 bytes further
  mov es, ax
  jmp .next
.loaded:
  cli
  in al, 0x92                ; fast A20
  or al, 2
  and al, 0xfe
  out 0x92, al
  lgdt [gdtr]
  mov eax, cr0
  or eax, 1
  mov cr0, eax
  jmp 0x08:pm
.halt:
  hlt
  jmp .halt

bits 32
pm:
  mov ax, 0x10
  mov ds, ax
  mov es, ax
  mov fs, ax
  mov gs, ax
  mov ss, ax
  mov esp, 0x90000
  jmp 0x08:0x10000

drive: db 0
align 8
gdt: dq 0
  dq 0x00cf9a000000ffff      ; 0x08: code, flat 4 GiB
  dq 0x00cf92000000ffff      ; 0x10: data, flat 4 GiB
gdtr: dw 23
  dd gdt
times 510-($-$$) db 0
dw 0xaa55
