"""Direct boot: `-kernel` with multiboot v1 images assembled at test time, and bad kernels."""

from __future__ import annotations

import struct

from tests.cpu.guestasm import assemble, needs_nasm
from tests.test_boot_cli import one_line_error, pyemu

MULTIBOOT = """
bits 32
org 0x100000
FLAGS equ 0x00010003
header:
    dd 0x1BADB002
    dd FLAGS
    dd -(0x1BADB002 + FLAGS)
    dd header
    dd 0x100000
    dd 0
    dd 0
    dd start
start:
    mov esp, 0x200000
    cmp eax, 0x2BADB002
    jne fail
    mov al, 'M'
    out 0xe9, al
    mov eax, [ebx]          ; flags
    call out32
    mov eax, [ebx + 8]      ; mem_upper
    call out32
    mov eax, [ebx + 20]     ; mods_count
    call out32
    mov esi, [ebx + 16]     ; command line
.cmd:
    lodsb
    out 0xe9, al
    test al, al
    jnz .cmd
    cmp dword [ebx + 20], 0
    je .mmap
    mov esi, [ebx + 24]
    mov esi, [esi]          ; mod_start
    mov ecx, 4
.mod:
    lodsb
    out 0xe9, al
    loop .mod
.mmap:
    mov eax, [ebx + 44]     ; mmap_length
    call out32
    cli
    hlt
fail:
    mov al, '!'
    out 0xe9, al
    cli
    hlt
out32:
    mov ecx, 4
.b:
    out 0xe9, al
    shr eax, 8
    loop .b
    ret
"""


@needs_nasm
def test_multiboot_kernel_with_cmdline_module_and_memory_map(tmp_path):
    kernel = tmp_path / "mb.bin"
    kernel.write_bytes(assemble(MULTIBOOT))
    initrd = tmp_path / "initrd.img"
    initrd.write_bytes(b"INIT" + bytes(100))
    log = tmp_path / "debug.log"
    p = pyemu("-kernel", str(kernel), "-initrd", str(initrd), "-append", "console=ttyS0 x=1", "-m", "64",
              "-display", "none", "-icount", "-debugcon", f"file:{log}", "--timeout", "60")
    assert p.returncode == 0, p.stderr
    out = log.read_bytes()
    assert out[:1] == b"M"
    flags, mem_upper, mods = struct.unpack("<III", out[1:13])
    assert flags & 0x4D == 0x4D  # memory, cmdline, mods, mmap
    assert mem_upper == 63 * 1024
    assert mods == 1
    cmdline, _, rest = out[13:].partition(b"\0")
    assert cmdline.endswith(b"mb.bin console=ttyS0 x=1")
    assert rest[:4] == b"INIT"
    mmap_len = struct.unpack("<I", rest[4:8])[0]
    assert mmap_len % 24 == 0 and mmap_len >= 4 * 24


def test_corrupt_kernel_is_a_one_line_error(tmp_path):
    bad = tmp_path / "bzImage"
    bad.write_bytes(b"MZ" + bytes(4000))
    p = pyemu("-kernel", str(bad), "-display", "none")
    assert p.returncode == 1
    assert "not a Linux bzImage or a multiboot image" in one_line_error(p)
    truncated = tmp_path / "trunc"
    data = bytearray(0x400)
    data[0x1F1] = 4
    data[0x202:0x206] = b"HdrS"
    data[0x206:0x208] = (0x20C).to_bytes(2, "little")
    data[0x211] = 1
    truncated.write_bytes(bytes(data))
    p = pyemu("-kernel", str(truncated), "-display", "none")
    assert p.returncode == 1
    assert "truncated" in one_line_error(p)
    p = pyemu("-kernel", str(tmp_path / "missing"), "-display", "none")
    assert p.returncode == 1
    one_line_error(p)


FAKE_BZIMAGE = """
bits 16
org 0
    times 0x1f1-($-$$) db 0
    db 4                    ; setup_sects
    times 0x1fe-($-$$) db 0
    dw 0xaa55
    jmp short start         ; 0x200: the entry, CS = real-mode base + 20h
    db "HdrS"
    dw 0x020c               ; protocol 2.12
    times 0x211-($-$$) db 0
    db 0x01                 ; LOADED_HIGH
    times 0x22c-($-$$) db 0
    dd 0x37ffffff           ; initrd_addr_max
    times 0x238-($-$$) db 0
    dd 255                  ; cmdline_size
    times 0x280-($-$$) db 0
start:
    mov ax, ds
    call out16
    mov ax, cs
    call out16
    mov ax, sp
    call out16
    mov al, [0x210]         ; type_of_loader
    out 0xe9, al
    mov al, [0x211]         ; loadflags
    out 0xe9, al
    mov eax, [0x218]        ; ramdisk_image
    call out32
    mov eax, [0x21c]        ; ramdisk_size
    call out32
    mov eax, [0x228]        ; cmd_line_ptr
    call out32
    mov eax, [0x228]
    shr eax, 4
    mov ds, ax
    xor si, si
.cmd:
    lodsb
    out 0xe9, al
    test al, al
    jnz .cmd
    cli
    hlt
out32:
    call out16
    shr eax, 16
out16:
    out 0xe9, al
    xchg al, ah
    out 0xe9, al
    xchg al, ah
    ret
    times 0xa00-($-$$) db 0
    db "PMKERNEL"
"""


@needs_nasm
def test_linux_boot_protocol_setup_entry(tmp_path):
    from emu.machine import Machine, MachineConfig
    from emu.mainloop import MainLoop

    kernel = tmp_path / "bzImage"
    kernel.write_bytes(assemble(FAKE_BZIMAGE))
    initrd = tmp_path / "initrd"
    initrd.write_bytes(b"RAMDISK!" * 512)
    debug = bytearray()
    m = Machine(MachineConfig(ram_mb=32, icount=True, icount_sleep=False, debugcon=debug.extend,
                              kernel=str(kernel), initrd=str(initrd), append="root=/dev/sda1 quiet"))
    assert MainLoop(m, timeout=30).run() == 0
    ds, cs, sp = struct.unpack("<HHH", debug[:6])
    assert (ds, cs) == (0x1000, 0x1020) and sp == 0xFE00
    loader, loadflags = debug[6], debug[7]
    assert loader == 0xB0 and loadflags & 0x81 == 0x81  # LOADED_HIGH | CAN_USE_HEAP
    rd_image, rd_size, cmd_ptr = struct.unpack("<III", debug[8:20])
    assert rd_size == 4096 and rd_image % 4096 == 0 and rd_image + rd_size <= 32 << 20
    assert m.core.read_phys(rd_image, 8) == b"RAMDISK!"
    assert cmd_ptr == 0x20000
    assert bytes(debug[20:]) == b"root=/dev/sda1 quiet\0"
    assert m.core.read_phys(0x100000, 8) == b"PMKERNEL"
