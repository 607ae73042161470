"""The built-in BIOS's services, each exercised by a boot sector assembled at test time.

The guest reports through the 0xE9 debug console and halts with IF=0 (see tests/test_machine.py).
"""

from __future__ import annotations

import struct

from tests.cpu.guestasm import needs_nasm
from tests.test_machine import run_guest

pytestmark = needs_nasm


def test_int10_teletype_reaches_the_screen():
    body = """
    mov si, msg
.next:
    lodsb
    test al, al
    jz .end
    mov ah, 0x0e
    mov bx, 7
    int 0x10
    jmp .next
.end:
    mov ah, 0x03          ; cursor position of page 0
    xor bh, bh
    int 0x10
    mov ax, dx
    call out_ax
    jmp done
msg: db "Hello from INT 10h", 13, 10, "second line", 0
"""
    r = run_guest(body)
    lines = r.screen.splitlines()
    assert "Hello from INT 10h" in lines
    assert "second line" in lines
    row = lines.index("second line")
    assert r.debug == bytes([len("second line"), row])


def test_int10_set_mode_write_string_scroll_and_read_char():
    body = """
    mov ax, 0x0003
    int 0x10
    mov ax, 0x1301          ; write string, attribute in BL, move cursor
    mov bx, 0x001e
    mov cx, 5
    mov dx, 0x0203          ; row 2, column 3
    mov bp, msg
    int 0x10
    mov ah, 0x02            ; cursor to 2,3
    xor bh, bh
    mov dx, 0x0203
    int 0x10
    mov ah, 0x08            ; read char+attr at the cursor
    int 0x10
    call out_ax
    mov ax, 0x0601          ; scroll the whole screen up one line
    mov bh, 0x07
    xor cx, cx
    mov dx, 0x184f
    int 0x10
    mov ah, 0x0f
    int 0x10
    call out_ax
    jmp done
msg: db "ABCDE"
"""
    r = run_guest(body)
    assert r.debug[:2] == bytes([ord("A"), 0x1E])
    assert r.debug[2:4] == bytes([3, 80])  # mode 3, 80 columns
    lines = r.screen.splitlines()
    assert lines[1] == "   ABCDE"  # scrolled up from row 2 to row 1


def test_int13_chs_and_extended_reads_from_floppy_and_disk():
    marker = b"SECTOR-ONE" + bytes(502)
    body = """
    mov [drive], dl
    mov ax, 0x0201          ; read 1 sector: C0 H0 S2
    mov cx, 0x0002
    xor dh, dh
    mov dl, [drive]
    mov bx, 0x8000
    int 0x13
    jc .fail
    mov si, 0x8000
    mov cx, 10
.copy:
    lodsb
    call out_al
    loop .copy
    cmp byte [drive], 0x80
    jne .end
    mov ah, 0x41
    mov bx, 0x55aa
    mov dl, 0x80
    int 0x13
    jc .fail
    mov ax, bx
    call out_ax
    mov ah, 0x42
    mov dl, 0x80
    mov si, dap
    int 0x13
    jc .fail
    mov si, 0x9000
    mov cx, 3
.copy2:
    lodsb
    call out_al
    loop .copy2
    mov ah, 0x48
    mov dl, 0x80
    mov si, params
    mov word [params], 0x1e
    int 0x13
    jc .fail
    mov ax, [params + 16]   ; total sectors, low word
    call out_ax
.end:
    mov ah, 0x08
    mov dl, [drive]
    int 0x13
    mov ax, cx
    call out_ax
    mov ax, dx
    call out_ax
    jmp done
.fail:
    mov al, '!'
    call out_al
    mov al, ah
    call out_al
    jmp done
drive: db 0
dap: db 0x10, 0
    dw 1
    dw 0x9000, 0
    dq 1
params: times 0x1e db 0
"""
    r = run_guest(body, extra_sectors=marker)
    assert r.debug[:10] == b"SECTOR-ONE"
    cx, dx = struct.unpack("<HH", r.debug[10:14])
    assert cx == (79 << 8) | 18 and dx == (1 << 8) | 1  # 1.44M: 80 cylinders, 18 sectors, 2 heads; 1 drive

    r = run_guest(body, disk=True, extra_sectors=marker, disk_size=4 << 20)
    assert r.debug[:10] == b"SECTOR-ONE"
    assert r.debug[10:12] == b"\x55\xaa"  # BX = AA55h
    assert r.debug[12:15] == b"SEC"
    assert struct.unpack("<H", r.debug[15:17])[0] == (4 << 20) // 512
    cx, dx = struct.unpack("<HH", r.debug[17:21])
    assert cx & 0x3F == 63 and dx & 0xFF == 1


def test_int13_41_on_a_diskette_says_no_extensions():
    """Like IBM's BIOS and SeaBIOS: a floppy boot sector (SYSLINUX's) then reads by CHS (found diffing
    a SYSLINUX boot against QEMU's, README "Traces and lockstep")."""
    body = """
    mov ah, 0x41
    mov bx, 0x55aa
    xor dl, dl
    int 0x13
    pushf
    call out_ax
    mov ax, bx
    call out_ax
    pop ax
    call out_al
    jmp done
"""
    r = run_guest(body)
    ax, bx, fl = struct.unpack("<HHB", r.debug[:5])
    assert ax >> 8 == 0x01 and fl & 1 and bx == 0x55AA


def test_int13_diskette_read_across_a_64k_page_is_a_dma_boundary_error():
    """AH=09h, nothing read, as on a PC (ISA DMA) and in SeaBIOS: SYSLINUX's loader splits its read then."""
    body = """
    mov ax, 0x1000
    mov es, ax
    mov bx, 0xfe00              ; 0x1FE00: a second sector would cross 0x20000
    mov ax, 0x0202
    mov cx, 0x0001
    xor dx, dx
    int 0x13
    pushf
    call out_ax
    pop ax
    call out_al
    mov ax, 0x0201              ; one sector fits
    mov cx, 0x0001
    xor dx, dx
    int 0x13
    pushf
    call out_ax
    pop ax
    call out_al
    jmp done
"""
    r = run_guest(body)
    ax, fl, ax2, fl2 = struct.unpack("<HBHB", r.debug[:6])
    assert ax == 0x0900 and fl & 1
    assert ax2 == 0x0001 and not fl2 & 1


DISK_RW = """
    mov [drive], dl
    mov di, 0x8000          ; fill a sector with a pattern
    mov cx, 512
    mov al, 0x5a
    rep stosb
    mov dword [0x8000], 'WRIT'
    mov ax, 0x0301          ; write C0 H0 S3
    mov cx, 0x0003
    xor dh, dh
    mov dl, [drive]
    mov bx, 0x8000
    int 0x13
    jc .fail
    mov di, 0x8000
    mov cx, 512
    xor al, al
    rep stosb
    mov ax, 0x0201          ; read it back
    mov cx, 0x0003
    xor dh, dh
    mov dl, [drive]
    mov bx, 0x8000
    int 0x13
    jc .fail
    mov si, 0x8000
    mov cx, 5
.copy:
    lodsb
    call out_al
    loop .copy
    jmp done
.fail:
    mov al, '!'
    call out_al
    jmp done
drive: db 0
"""


def test_int13_write_then_read_persists_to_the_image(tmp_path):
    path = tmp_path / "disk.img"
    r = run_guest(DISK_RW, disk=True, image_path=str(path), disk_size=1 << 20)
    assert r.debug == b"WRITZ"
    data = path.read_bytes()
    assert data[2 * 512: 2 * 512 + 5] == b"WRITZ"


def test_int13_snapshot_leaves_the_image_byte_identical(tmp_path):
    from tests.test_machine import boot_sector

    path = tmp_path / "disk.img"
    with open(path, "wb") as fh:
        fh.write(boot_sector(DISK_RW))
        fh.truncate(1 << 20)
    before = path.read_bytes()
    r = run_guest(DISK_RW, disk=True, image_path=str(path), snapshot=True)
    assert r.debug == b"WRITZ"  # the guest sees its own write
    assert path.read_bytes() == before  # the file does not


def test_int15_e820_map_and_memory_sizes():
    body = """
    xor ebx, ebx
    mov di, 0x8000
.next:
    mov eax, 0xe820
    mov edx, 0x534d4150
    mov ecx, 20
    int 0x15
    jc .end
    cmp eax, 0x534d4150
    jne .end
    mov si, di
    mov cx, 20
.copy:
    lodsb
    call out_al
    loop .copy
    test ebx, ebx
    jnz .next
.end:
    mov al, '|'
    call out_al
    mov ah, 0x88
    int 0x15
    call out_ax
    mov ax, 0xe801
    int 0x15
    call out_ax
    mov ax, bx
    call out_ax
    int 0x12
    call out_ax
    int 0x11
    call out_ax
    mov ah, 0xc0
    int 0x15
    mov al, [es:bx + 2]
    call out_al
    jmp done
"""
    r = run_guest(body, ram_mb=32)
    table, sep, tail = r.debug[:-12], r.debug[-12:-11], r.debug[-11:]
    assert sep == b"|" and len(table) % 20 == 0
    entries = [struct.unpack("<QQI", table[i: i + 20]) for i in range(0, len(table), 20)]
    ram = [(b, n) for b, n, t in entries if t == 1]
    assert ram[0] == (0, 639 * 1024)
    assert (0x100000, (32 << 20) - 0x100000) in ram
    assert any(t == 2 and b <= 0xF0000 < b + n for b, n, t in entries)
    ext, e801_low, e801_high, base, equip = struct.unpack("<HHHHH", tail[:10])
    assert ext == 31 * 1024
    assert e801_low == 15 * 1024 and e801_high == (16 << 20) // 65536
    assert base == 639
    assert equip & 1  # a floppy drive
    assert tail[10] == 0xFC  # model byte in the configuration table


def test_int16_returns_typed_keys():
    body = """
    mov cx, 4
.next:
    xor ah, ah
    int 0x16
    call out_ax
    loop .next
    mov ah, 0x01            ; nothing left: ZF=1
    int 0x16
    mov al, 'Z'
    jz .empty
    mov al, 'N'
.empty:
    call out_al
    jmp done
"""
    r = run_guest(body, keys=b"aB1\r")
    words = struct.unpack("<4H", r.debug[:8])
    assert words == (0x1E61, 0x3042, 0x0231, 0x1C0D)
    assert r.debug[8:] == b"Z"


def test_int1a_ticks_advance_and_rtc_reads():
    body = """
    xor ah, ah
    int 0x1a
    mov bx, dx
.wait:
    hlt                     ; IF=1: the timer wakes us
    xor ah, ah
    int 0x1a
    mov ax, dx
    sub ax, bx
    cmp ax, 3
    jb .wait
    mov al, 'T'
    call out_al
    mov ah, 0x02
    int 0x1a
    jc .bad
    mov ax, cx
    call out_ax
    mov ah, 0x04
    int 0x1a
    jc .bad
    mov ax, cx
    call out_ax
    jmp done
.bad:
    mov al, '!'
    call out_al
    jmp done
"""
    r = run_guest(body)
    assert r.debug[:1] == b"T"
    minutes_hours = struct.unpack("<H", r.debug[1:3])[0]
    year_century = struct.unpack("<H", r.debug[3:5])[0]
    assert (year_century >> 8) == 0x20  # BCD century
    assert (minutes_hours >> 8) <= 0x23


def test_int15_wait_and_a20():
    body = """
    mov ax, 0x2402          ; A20 status
    int 0x15
    call out_al
    mov ax, 0x2400          ; disable
    int 0x15
    mov ax, 0x2402
    int 0x15
    call out_al
    mov ax, 0x2401
    int 0x15
    mov ah, 0x86            ; wait 100 ms
    mov cx, 1
    mov dx, 0x86a0
    int 0x15
    jc .bad
    mov al, 'W'
    call out_al
    jmp done
.bad:
    mov al, '!'
    call out_al
    jmp done
"""
    r = run_guest(body)
    assert r.debug == b"\x01\x00W"


def test_int10_font_8x8_gives_80x50():
    body = """
    mov ax, 0x1112          ; load the 8x8 font: 50 rows
    xor bl, bl
    int 0x10
    push ds
    mov ax, 0x40
    mov ds, ax
    mov al, [0x84]          ; rows - 1
    pop ds
    call out_al
    mov ah, 0x02
    xor bh, bh
    mov dx, 0x3100          ; row 49
    int 0x10
    mov ax, 0x0e41
    int 0x10
    jmp done
"""
    r = run_guest(body)
    assert r.debug == bytes([49])
    lines = r.screen.splitlines()
    assert len(lines) == 50 and lines[49] == "A"


def test_el_torito_cd_boot_and_2048_byte_extended_reads():
    from emu.devices.diskimage import DiskImage
    from emu.machine import Machine, MachineConfig
    from emu.mainloop import MainLoop
    from tests.cpu.guestasm import assemble

    code = assemble("""
bits 16
org 0x7c00
    xor ax, ax
    mov ds, ax
    mov es, ax
    mov al, dl              ; the boot drive
    out 0xe9, al
    mov ah, 0x42
    mov si, dap
    int 0x13
    jc .fail
    mov si, 0x8000
    mov cx, 4
.copy:
    lodsb
    out 0xe9, al
    loop .copy
    mov al, [0x8000 + 2047] ; the last byte of the 2048-byte sector
    out 0xe9, al
    mov ax, 0x4b01          ; El Torito status
    mov si, spec
    int 0x13
    jc .fail
    mov al, [spec + 2]
    out 0xe9, al
    cli
    hlt
.fail:
    mov al, '!'
    out 0xe9, al
    cli
    hlt
dap: db 0x10, 0
    dw 1
    dw 0x8000, 0
    dq 30
spec: times 0x13 db 0
""")
    iso = bytearray(_eltorito_iso(0, code, sectors=64))  # no emulation
    iso[30 * 2048: 30 * 2048 + 4] = b"CD30"
    iso[30 * 2048 + 2047] = 0x77
    debug = bytearray()
    m = Machine(MachineConfig(icount=True, icount_sleep=False, debugcon=debug.extend,
                              cdrom_image=DiskImage.from_bytes(iso)))
    assert m.boot_order.startswith("d")
    assert MainLoop(m, timeout=30).run() == 0
    assert bytes(debug) == b"\xe0CD30\x77\xe0"


def _eltorito_iso(media: int, image: bytes, image_lba: int = 20, sectors: int = 0) -> bytes:
    """A minimal El Torito CD of at least `sectors` 2048-byte sectors: the boot record volume
    descriptor, a catalog whose default entry boots `image` (at sector `image_lba`) with boot media
    type `media`, loading one 512-byte sector."""
    iso = bytearray(max(sectors, image_lba + len(image) // 2048 + 2) * 2048)
    iso[17 * 2048: 17 * 2048 + 30] = b"\x00CD001\x01EL TORITO SPECIFICATION"
    iso[17 * 2048 + 0x47: 17 * 2048 + 0x4B] = (18).to_bytes(4, "little")
    cat = bytearray(64)
    cat[0] = 0x01
    cat[28:30] = (-(0x0001 + 0xAA55) & 0xFFFF).to_bytes(2, "little")  # the validation checksum
    cat[30:32] = b"\x55\xaa"
    cat[32] = 0x88  # bootable
    cat[33] = media
    cat[38:40] = (1).to_bytes(2, "little")  # one 512-byte sector loaded
    cat[40:44] = image_lba.to_bytes(4, "little")
    iso[18 * 2048: 18 * 2048 + 64] = cat
    iso[image_lba * 2048: image_lba * 2048 + len(image)] = image
    return bytes(iso)


def test_int13_el_torito_floppy_emulation_boots_the_image_as_drive_00():
    """El Torito 1.0 floppy emulation (memtest86+'s ISO): the catalog's 1.44M image becomes drive
    00h, CHS reads see the image's sectors, and INT 13h 4B01h reports the emulation."""
    from emu.devices.diskimage import DiskImage
    from emu.machine import Machine, MachineConfig
    from emu.mainloop import MainLoop
    from tests.cpu.guestasm import assemble

    code = assemble("""
bits 16
org 0x7c00
    xor ax, ax
    mov ds, ax
    mov es, ax
    mov al, dl              ; the boot drive: 00h
    out 0xe9, al
    mov ax, 0x0201          ; CHS read 1 sector: cylinder 1, head 1, sector 18 = LBA 71
    mov cx, 0x0112
    mov dx, 0x0100
    mov bx, 0x8000
    int 0x13
    jc .fail
    mov si, 0x8000
    mov cx, 4
.copy:
    lodsb
    out 0xe9, al
    loop .copy
    mov ah, 0x08            ; drive parameters: 1.44M geometry
    xor dx, dx
    int 0x13
    mov al, cl              ; sectors per track
    out 0xe9, al
    mov ax, 0x4b01
    mov dl, 0
    mov si, spec
    int 0x13
    jc .fail
    mov al, [spec + 1]      ; boot media type
    out 0xe9, al
    int 0x11                ; equipment word: one floppy drive
    out 0xe9, al
    cli
    hlt
.fail:
    mov al, '!'
    out 0xe9, al
    cli
    hlt
spec: times 0x13 db 0
""")
    floppy = bytearray(1440 * 1024)
    floppy[:len(code)] = code
    floppy[510:512] = b"\x55\xaa"
    floppy[71 * 512: 71 * 512 + 4] = b"FD71"
    iso = _eltorito_iso(2, bytes(floppy))
    debug = bytearray()
    m = Machine(MachineConfig(icount=True, icount_sleep=False, debugcon=debug.extend,
                              cdrom_image=DiskImage.from_bytes(iso)))
    assert MainLoop(m, timeout=30).run() == 0
    assert bytes(debug[:7]) == b"\x00FD71\x12\x02"
    assert debug[7] & 0xC1 == 0x01  # a floppy present, one drive


def test_a_cd_with_an_unknown_boot_media_type_is_a_bios_screen_message():
    from emu.devices.diskimage import DiskImage
    from emu.machine import Machine, MachineConfig
    from emu.mainloop import MainLoop

    iso = _eltorito_iso(7, bytes(2048))
    m = Machine(MachineConfig(icount=True, icount_sleep=False, cdrom_image=DiskImage.from_bytes(iso)))
    assert MainLoop(m, timeout=30).run() == 0
    assert "unknown El Torito boot media type 7" in m.vga.screendump_text()
