"""The built-in BIOS's services, run in Python when a ROM stub traps (see bios/rom.py).

`Bios.trap()` is the write handler of the private trap port. It finds the service from CS:IP,
reads and writes guest registers in the CPU state array, guest memory through the host RAM array
(or `CpuCore.write_phys` where code may land, e.g. sectors read from disk), and sets CF/ZF in the
FLAGS image that the stub's IRET pops. A blocking service (INT 16h AH=00h with an empty buffer,
INT 15h AH=86h before its deadline) moves IP to the stub's `sti; hlt` path: the guest sleeps until
the next interrupt and calls the service again.

The machine object gives: core, bus, clock, pic, rtc, vga, floppies, disks, boot_order, ram_bytes,
set_a20(bool), a20_enabled(), message(str).
"""

from __future__ import annotations

from emu.cpu import state as S
from emu.devices.diskimage import (
    SECTOR_SIZE,
    DiskError,
    DiskWriteProtected,
    Geometry,
    ImageSlice,
    floppy_medium,
    lba_assist_geometry,
)

from . import bda as B
from . import keyboard as KB
from . import rom as R

CF, ZF, IF, VM = 0x0001, 0x0040, 0x0200, 0x20000
SMAP = 0x534D4150
CR0_CD_NW = 0x6000_0000

# INT 13h status codes (AH)
DISK_OK = 0x00
DISK_BAD_COMMAND = 0x01
DISK_WRITE_PROTECTED = 0x03
DISK_NOT_FOUND = 0x04
DISK_DMA_BOUNDARY = 0x09
DISK_TIMEOUT = 0x80

E820_RAM, E820_RESERVED = 1, 2

TEXT_BASE = 0xB8000
TEXT_PAGE_SIZE = 0x1000
DEFAULT_ATTR = 0x07

PIC1_CMD, PIC2_CMD = 0x20, 0xA0
PIC_EOI = 0x20
PIT_CONTROL, PIT_COUNTER0 = 0x43, 0x40
CRTC_INDEX, CRTC_DATA = 0x3D4, 0x3D5
KBD_DATA = 0x60
RTC_INDEX = 0x70
BOOT_SECTOR = 0x7C00
BOOT_SIGNATURE = b"\x55\xaa"
US_PER_TICK = 54925


CD_DRIVE = 0xE0  # the drive number a no-emulation El Torito boot gets in DL (as SeaBIOS)
CD_SECTOR = 2048
EL_TORITO_BRVD = 17  # the boot record volume descriptor's sector (El Torito 1.0, section 2.0)
EL_TORITO_ID = b"\x00CD001\x01EL TORITO SPECIFICATION"
ELTORITO_NO_EMULATION, ELTORITO_HARD_DISK = 0, 4  # boot media types (El Torito 1.0, section 2.2)
ELTORITO_FLOPPY_SECTORS = {1: 2400, 2: 2880, 3: 5760}  # 1.2M, 1.44M, 2.88M diskettes
MBR_PARTITIONS = 0x1BE


class Drive:
    """A BIOS drive: an image and the CHS geometry INT 13h reports for it."""

    def __init__(self, image, number: int):
        self.image = image
        self.number = number
        self.floppy = number < 0x80
        self.cd = number == CD_DRIVE
        self.sector_size = CD_SECTOR if self.cd else SECTOR_SIZE
        self.sectors = image.sectors // (self.sector_size // SECTOR_SIZE)
        fmt = floppy_medium(image.size) if self.floppy else None
        if self.cd:
            self.geometry = Geometry(max(1, min(1024, self.sectors // (64 * 32))), 64, 32)
            self.drive_type = 0
        elif fmt is not None:
            self.geometry = fmt.geometry
            self.drive_type = fmt.drive_type
        elif self.floppy:  # odd-sized floppy image: guess 1.44M-style tracks
            self.geometry = Geometry(max(1, image.sectors // 36), 2, 18)
            self.drive_type = 4
        else:
            self.geometry = lba_assist_geometry(image.sectors)
            self.drive_type = 0


class Bios:
    def __init__(self, machine):
        self.m = machine
        self.core = machine.core
        self.st = machine.core.st
        self.ram = B.Ram(machine.core.mem)
        self.wait_deadline: int | None = None
        self.cd_boot_rba = 0
        self.cd_load_seg = 0x07C0
        self.cd_load_count = 4
        self.e0_prefix = False
        self.cd_media = ELTORITO_NO_EMULATION
        self.cd_emulated = -1  # the drive number an El Torito emulated image took, if any
        self.drives: dict[int, Drive] = {}
        for i, img in enumerate(machine.floppies):
            if img is not None:
                self.drives[i] = Drive(img, i)
        for i, img in enumerate(machine.disks):
            if img is not None:
                self.drives[0x80 + i] = Drive(img, 0x80 + i)
        if getattr(machine, "cdrom", None) is not None:
            self.drives[CD_DRIVE] = Drive(machine.cdrom, CD_DRIVE)
        from .video import Video

        self.video = Video(self)
        self.handlers = {
            0x09: self.int09, 0x10: self.int10, 0x11: self.int11, 0x12: self.int12, 0x13: self.int13,
            0x15: self.int15, 0x16: self.int16, 0x18: self.int18, 0x19: self.int19, 0x1A: self.int1a,
            0x14: self.int14, 0x17: self.int17,
        }

    # -- registers -------------------------------------------------------------------------------
    def r16(self, r: int) -> int:
        return int(self.st[r]) & 0xFFFF

    def w16(self, r: int, v: int) -> None:
        self.st[r] = (int(self.st[r]) & 0xFFFF0000) | (v & 0xFFFF)

    def hi(self, r: int) -> int:
        return (int(self.st[r]) >> 8) & 0xFF

    def lo(self, r: int) -> int:
        return int(self.st[r]) & 0xFF

    def set_hi(self, r: int, v: int) -> None:
        self.st[r] = (int(self.st[r]) & 0xFFFF00FF) | ((v & 0xFF) << 8)

    def set_lo(self, r: int, v: int) -> None:
        self.st[r] = (int(self.st[r]) & 0xFFFFFF00) | (v & 0xFF)

    def seg(self, s: int) -> int:
        return int(self.st[S.seg_slot(s, S.SEG_SEL)]) & 0xFFFF

    def _flags_addr(self) -> int:
        ss = int(self.st[S.seg_slot(S.SS, S.SEG_BASE)])
        return ss + ((self.r16(S.ESP) + 4) & 0xFFFF)

    def set_flag(self, mask: int, on: bool) -> None:
        a = self._flags_addr()
        v = self.ram.r16(a)
        self.ram.w16(a, (v | mask) if on else (v & ~mask))

    def ok(self) -> None:
        self.set_flag(CF, False)

    def fail(self, ah: int) -> None:
        self.set_hi(S.EAX, ah)
        self.set_flag(CF, True)

    def wait(self) -> None:
        """Come back after the next interrupt (the stub's sti; hlt path)."""
        self.st[S.EIP] = (int(self.st[S.EIP]) - R.STUB_RET + R.STUB_WAIT) & 0xFFFF

    def jump(self, cs: int, ip: int) -> None:
        self.core.set_seg_real(S.CS, cs)
        self.st[S.EIP] = ip

    # -- dispatch --------------------------------------------------------------------------------
    def trap(self, port: int = 0, size: int = 1, value: int = 0) -> None:
        st = self.st
        if int(st[S.seg_slot(S.CS, S.SEG_BASE)]) != R.ROM_BASE:
            return  # not our ROM: ignore, like an unclaimed port
        if st[S.CR0] & 1 and not st[S.EFLAGS] & VM:
            return  # protected mode (virtual-8086 mode, e.g. under EMM386, is served)
        site = R.trap_site(int(st[S.EIP]) & 0xFFFF)
        if site is None:
            return
        kind, vector = site
        if kind == "post":
            self.post()
        elif kind == "int08":
            self.int08()
        else:
            fn = self.handlers.get(vector)
            if fn is not None:
                fn()
            elif 0x08 <= vector <= 0x0F or 0x70 <= vector <= 0x77:
                self.default_irq(vector)

    # -- POST ------------------------------------------------------------------------------------
    def post(self) -> None:
        m, ram, bus = self.m, self.ram, self.m.bus
        self.st[S.CR0] = int(self.st[S.CR0]) & ~CR0_CD_NW  # caches on, as a PC BIOS (SeaBIOS) leaves them
        m.core.mem[0:0x500] = 0
        for v in range(256):
            off = R.INT08_STUB if v == 0x08 else R.vector_stub(v)
            ram.w16(v * 4, off)
            ram.w16(v * 4 + 2, R.ROM_SEGMENT)
        ram.w16(0x1E * 4, R.DISKETTE_PARAMS)
        for v in (0x1D, 0x1F, 0x43, *range(0x60, 0x68)):
            ram.w32(v * 4, 0)
        # BDA
        b = B.BDA
        ram.w16(b + B.COM_PORTS, 0x3F8)
        ram.w16(b + B.COM_PORTS + 2, 0x2F8)
        ram.w16(b + B.EBDA_SEG, B.EBDA_SEGMENT)
        nfloppy = sum(1 for d in self.drives if d < 0x80)
        equip = 0x0002 | 0x0020 | (2 << 9)  # FPU, 80x25 colour, two serial ports
        if nfloppy:
            equip |= 0x0001 | ((nfloppy - 1) << 6)
        ram.w16(b + B.EQUIPMENT, equip)
        ram.w16(b + B.MEMORY_KB, B.BASE_MEMORY_KB)
        ram.w16(b + B.KBD_HEAD, B.KBD_BUFFER)
        ram.w16(b + B.KBD_TAIL, B.KBD_BUFFER)
        ram.w16(b + B.KBD_BUF_START, B.KBD_BUFFER)
        ram.w16(b + B.KBD_BUF_END_PTR, B.KBD_BUFFER_END)
        ram.w8(b + B.KBD_FLAGS0, 0)
        ram.w8(b + B.KBD_FLAGS3, 0x10)  # 101/102-key keyboard
        ram.w8(b + B.DISK_COUNT, sum(1 for d in self.drives if 0x80 <= d < CD_DRIVE))
        ram.w16(b + B.CRTC_BASE, CRTC_INDEX)
        # EBDA
        ebda = B.EBDA_SEGMENT << 4
        m.core.mem[ebda: ebda + B.EBDA_KB * 1024] = 0
        ram.w8(ebda, B.EBDA_KB)
        # PICs: master at 08h, slave at 70h, only the timer, keyboard and cascade unmasked
        for base, vec, icw3, mask in ((PIC1_CMD, 0x08, 0x04, 0xF8), (PIC2_CMD, 0x70, 0x02, 0xFF)):
            bus.write(base, 1, 0x11)
            bus.write(base + 1, 1, vec)
            bus.write(base + 1, 1, icw3)
            bus.write(base + 1, 1, 0x01)
            bus.write(base + 1, 1, mask)
        # PIT channel 0: mode 3, count 65536 = 18.2 Hz
        bus.write(PIT_CONTROL, 1, 0x36)
        bus.write(PIT_COUNTER0, 1, 0)
        bus.write(PIT_COUNTER0, 1, 0)
        # COM1/COM2: 9600 baud, 8 data bits, no parity, 1 stop bit (reset leaves 5 data bits)
        for base in (0x3F8, 0x2F8):
            bus.write(base + 3, 1, 0x80)
            bus.write(base, 1, 12)
            bus.write(base + 1, 1, 0)
            bus.write(base + 3, 1, 0x03)
        self.set_ticks_from_rtc()
        self.set_mode(3)
        self.print_text("pyemu BIOS\r\n\r\n")
        self.core.set_seg_real(S.SS, 0)
        self.w16(S.ESP, BOOT_SECTOR)
        self.core.set_seg_real(S.DS, 0x40)

    def set_ticks_from_rtc(self) -> None:
        try:
            dt = self.m.rtc.now_datetime()
            secs = dt.hour * 3600 + dt.minute * 60 + dt.second
        except Exception:  # noqa: BLE001 - a clock problem must not stop POST
            secs = 0
        self.ram.w32(B.BDA + B.TIMER_TICKS, secs * B.TICKS_PER_DAY // 86400)

    def message(self, text: str) -> None:
        self.print_text(text + "\r\n")
        self.m.message(text)

    # -- hardware interrupts ---------------------------------------------------------------------
    def eoi(self, vector: int) -> None:
        if 0x70 <= vector <= 0x77:
            self.m.bus.write(PIC2_CMD, 1, PIC_EOI)
        self.m.bus.write(PIC1_CMD, 1, PIC_EOI)

    def default_irq(self, vector: int) -> None:
        if vector == 0x70:  # RTC: reading register C acknowledges it
            self.m.bus.write(RTC_INDEX, 1, 0x0C)
            self.m.bus.read(RTC_INDEX + 1, 1)
        self.eoi(vector)

    def int08(self) -> None:
        a = B.BDA + B.TIMER_TICKS
        t = self.ram.r32(a) + 1
        if t >= B.TICKS_PER_DAY:
            t = 0
            self.ram.w8(B.BDA + B.TIMER_OVERFLOW, 1)
        self.ram.w32(a, t)
        self.eoi(0x08)

    def int09(self) -> None:
        sc = self.m.bus.read(KBD_DATA, 1)
        self.key_scancode(sc)
        self.eoi(0x09)

    def key_scancode(self, sc: int) -> None:
        ram = self.ram
        fa = B.BDA + B.KBD_FLAGS0
        flags = ram.r8(fa)
        if sc == KB.EXTENDED_PREFIX:
            self.e0_prefix = True
            return
        ext, self.e0_prefix = self.e0_prefix, False
        make = not (sc & KB.BREAK_BIT)
        code = sc & 0x7F
        mods = {KB.SC_LSHIFT: KB.LSHIFT, KB.SC_RSHIFT: KB.RSHIFT, KB.SC_CTRL: KB.CTRL, KB.SC_ALT: KB.ALT}
        if code in mods:
            if ext and code in (KB.SC_LSHIFT, KB.SC_RSHIFT):
                return  # fake shifts around extended keys
            flags = (flags | mods[code]) if make else (flags & ~mods[code])
            ram.w8(fa, flags)
            return
        toggles = {KB.SC_CAPS: KB.CAPS_LOCK, KB.SC_NUM: KB.NUM_LOCK, KB.SC_SCROLL: KB.SCROLL_LOCK}
        if code in toggles and not ext:
            if make:
                ram.w8(fa, flags ^ toggles[code])
            return
        if not make:
            return
        if ext and code == 0x35:  # keypad /
            word = 0xE02F
        elif ext and code == 0x1C:  # keypad enter
            word = 0xE00D
        else:
            word = KB.translate(code, flags, ext)
        if word is not None:
            self.push_key(word)

    def push_key(self, word: int) -> bool:
        ram = self.ram
        start = ram.r16(B.BDA + B.KBD_BUF_START) or B.KBD_BUFFER
        end = ram.r16(B.BDA + B.KBD_BUF_END_PTR) or B.KBD_BUFFER_END
        tail = ram.r16(B.BDA + B.KBD_TAIL)
        nxt = tail + 2
        if nxt >= end:
            nxt = start
        if nxt == ram.r16(B.BDA + B.KBD_HEAD):
            return False  # buffer full: the key is lost (a real BIOS beeps)
        ram.w16(B.BDA + tail, word)
        ram.w16(B.BDA + B.KBD_TAIL, nxt)
        return True

    def pop_key(self, remove: bool) -> int | None:
        ram = self.ram
        head = ram.r16(B.BDA + B.KBD_HEAD)
        if head == ram.r16(B.BDA + B.KBD_TAIL):
            return None
        word = ram.r16(B.BDA + head)
        if remove:
            nxt = head + 2
            if nxt >= (ram.r16(B.BDA + B.KBD_BUF_END_PTR) or B.KBD_BUFFER_END):
                nxt = ram.r16(B.BDA + B.KBD_BUF_START) or B.KBD_BUFFER
            ram.w16(B.BDA + B.KBD_HEAD, nxt)
        return word

    # -- INT 10h: video --------------------------------------------------------------------------
    def video_cols(self) -> int:
        return self.ram.r16(B.BDA + B.VIDEO_COLUMNS) or 80

    def video_rows(self) -> int:
        return self.ram.r8(B.BDA + B.VIDEO_ROWS) + 1

    def page_base(self, page: int) -> int:
        return TEXT_BASE + (page & 7) * TEXT_PAGE_SIZE

    def get_cursor(self, page: int) -> tuple[int, int]:
        v = self.ram.r16(B.BDA + B.CURSOR_POS + 2 * (page & 7))
        return v >> 8, v & 0xFF

    def crtc(self, index: int, value: int) -> None:
        self.m.bus.write(CRTC_INDEX, 1, index)
        self.m.bus.write(CRTC_DATA, 1, value & 0xFF)

    def set_cursor(self, page: int, row: int, col: int) -> None:
        page &= 7
        self.ram.w16(B.BDA + B.CURSOR_POS + 2 * page, (row << 8) | col)
        if page == self.ram.r8(B.BDA + B.ACTIVE_PAGE):
            pos = page * (TEXT_PAGE_SIZE // 2) + row * self.video_cols() + col
            self.crtc(0x0E, pos >> 8)
            self.crtc(0x0F, pos)

    def set_mode(self, mode: int) -> None:
        ram, b = self.ram, B.BDA
        clear = not (mode & 0x80)
        mode &= 0x7F
        if self.video.set_mode(mode, clear):  # graphics modes (bios/video.py)
            return
        self.m.vga.reset()
        self.video.set_font_vectors(16)
        ram.w8(b + B.VIDEO_MODE, mode)
        ram.w16(b + B.VIDEO_COLUMNS, 80)
        ram.w16(b + B.VIDEO_PAGE_SIZE, TEXT_PAGE_SIZE)
        ram.w16(b + B.VIDEO_PAGE_START, 0)
        ram.w8(b + B.ACTIVE_PAGE, 0)
        ram.w8(b + B.VIDEO_ROWS, 24)
        ram.w16(b + B.CHAR_HEIGHT, 16)
        ram.w8(b + B.VIDEO_CTL, 0x60)
        ram.w8(b + B.VIDEO_SWITCHES, 0xF9)
        ram.w8(b + B.VGA_FLAGS, 0x51)
        ram.w8(b + B.VIDEO_MODE_CTL, 0x29)
        ram.w8(b + B.VIDEO_PALETTE, 0x30)
        if clear:
            mem = self.m.core.mem
            text = mem[TEXT_BASE: TEXT_BASE + 8 * TEXT_PAGE_SIZE]
            text[0::2] = 0x20
            text[1::2] = DEFAULT_ATTR
        for p in range(8):
            ram.w16(b + B.CURSOR_POS + 2 * p, 0)
        self.set_cursor_shape(0x06, 0x07)
        self.set_cursor(0, 0, 0)

    def set_cursor_shape(self, start: int, end: int) -> None:
        self.ram.w8(B.BDA + B.CURSOR_SHAPE, end)
        self.ram.w8(B.BDA + B.CURSOR_SHAPE + 1, start)
        height = self.ram.r16(B.BDA + B.CHAR_HEIGHT) or 16
        if start & 0x20:
            self.crtc(0x0A, 0x20)
            return
        if height > 8 and end < 8 and start < 8:  # CGA-style shapes scaled to the 16-line cell
            start, end = start * 2, end * 2 + 1
        self.crtc(0x0A, start & 0x1F)
        self.crtc(0x0B, end & 0x1F)

    def cell_addr(self, page: int, row: int, col: int) -> int:
        return self.page_base(page) + 2 * (row * self.video_cols() + col)

    def scroll(self, page: int, lines: int, attr: int, top: int, left: int, bottom: int, right: int,
               up: bool) -> None:
        rows, cols = self.video_rows(), self.video_cols()
        bottom, right = min(bottom, rows - 1), min(right, cols - 1)
        if top > bottom or left > right:
            return
        if self.video.graphics():
            self.video.scroll(lines, attr, top, left, bottom, right, up)
            return
        height = bottom - top + 1
        if lines == 0 or lines > height:
            lines = height
        mem = self.m.core.mem
        width = 2 * (right - left + 1)
        order = range(top, bottom + 1 - lines) if up else range(bottom, top - 1 + lines, -1)
        for r in order:
            src = r + lines if up else r - lines
            d, s = self.cell_addr(page, r, left), self.cell_addr(page, src, left)
            mem[d: d + width] = mem[s: s + width].copy()
        blank = range(bottom + 1 - lines, bottom + 1) if up else range(top, top + lines)
        for r in blank:
            d = self.cell_addr(page, r, left)
            mem[d: d + width: 2] = 0x20
            mem[d + 1: d + width: 2] = attr

    def put_char(self, page: int, ch: int, attr: int | None = None, count: int = 1) -> None:
        if self.video.graphics():
            self.video.put_chars(page, ch, attr if attr is not None else self.lo(S.EBX), count)
            return
        row, col = self.get_cursor(page)
        mem = self.m.core.mem
        a = self.cell_addr(page, row, col)
        end = min(a + 2 * count, self.page_base(page) + 2 * self.video_rows() * self.video_cols())
        mem[a:end:2] = ch
        if attr is not None:
            mem[a + 1:end:2] = attr

    def teletype(self, ch: int, page: int | None = None, attr: int | None = None) -> None:
        if page is None:
            page = self.ram.r8(B.BDA + B.ACTIVE_PAGE)
        row, col = self.get_cursor(page)
        cols, rows = self.video_cols(), self.video_rows()
        if ch == 0x0D:
            col = 0
        elif ch == 0x0A:
            row += 1
        elif ch == 0x08:
            col = max(0, col - 1)
        elif ch == 0x07:
            return
        elif ch == 0x09:
            col = (col + 8) & ~7
        elif self.video.graphics():
            self.video.draw_char(row, col, ch, attr)
            col += 1
        else:
            a = self.cell_addr(page, row, col)
            self.m.core.mem[a] = ch
            if attr is not None:
                self.m.core.mem[a + 1] = attr
            col += 1
        if col >= cols:
            col = 0
            row += 1
        if row >= rows:
            self.scroll(page, 1, 0 if self.video.graphics() else DEFAULT_ATTR, 0, 0, rows - 1, cols - 1, True)
            row = rows - 1
        self.set_cursor(page, row, col)

    def print_text(self, text: str) -> None:
        for ch in text.encode("cp437", "replace"):
            self.teletype(ch)

    def int10(self) -> None:
        ram, b = self.ram, B.BDA
        ah, al = self.hi(S.EAX), self.lo(S.EAX)
        bh, bl = self.hi(S.EBX), self.lo(S.EBX)
        if ah == 0x00:
            self.set_mode(al)
            self.set_lo(S.EAX, 0x30 if (al & 0x7F) <= 7 else 0x20)
        elif ah == 0x01:
            self.set_cursor_shape(self.hi(S.ECX), self.lo(S.ECX))
        elif ah == 0x02:
            self.set_cursor(bh, self.hi(S.EDX), self.lo(S.EDX))
        elif ah == 0x03:
            row, col = self.get_cursor(bh)
            self.w16(S.EDX, (row << 8) | col)
            self.w16(S.ECX, ram.r16(b + B.CURSOR_SHAPE))  # CH = start, CL = end
            self.w16(S.EAX, 0)
        elif ah == 0x05:
            page = al & 7
            ram.w8(b + B.ACTIVE_PAGE, page)
            ram.w16(b + B.VIDEO_PAGE_START, page * TEXT_PAGE_SIZE)
            start = page * TEXT_PAGE_SIZE // 2
            self.crtc(0x0C, start >> 8)
            self.crtc(0x0D, start)
            row, col = self.get_cursor(page)
            self.set_cursor(page, row, col)
        elif ah in (0x06, 0x07):
            self.scroll(ram.r8(b + B.ACTIVE_PAGE), al, bh, self.hi(S.ECX), self.lo(S.ECX),
                        self.hi(S.EDX), self.lo(S.EDX), ah == 0x06)
        elif ah == 0x08:
            row, col = self.get_cursor(bh)
            a = self.cell_addr(bh, row, col)
            self.w16(S.EAX, ram.r16(a))
        elif ah == 0x09:
            self.put_char(bh, al, bl, self.r16(S.ECX))
        elif ah == 0x0A:
            self.put_char(bh, al, None, self.r16(S.ECX))
        elif ah in (0x0C, 0x0D, 0x10):
            self.video.int10(ah, al)
        elif ah == 0x0E:
            self.teletype(al, attr=bl if self.video.graphics() else None)
        elif ah == 0x0F:
            self.set_hi(S.EAX, self.video_cols())
            self.set_lo(S.EAX, ram.r8(b + B.VIDEO_MODE))
            self.set_hi(S.EBX, ram.r8(b + B.ACTIVE_PAGE))
        elif ah == 0x11:
            self.font(al)
        elif ah == 0x12:
            if bl == 0x10:
                self.w16(S.EBX, 0x0003)
                self.w16(S.ECX, 0x0009)
        elif ah == 0x13:
            self.write_string(al, bh, bl)
        elif ah == 0x1A:
            if al == 0x00:
                self.set_lo(S.EAX, 0x1A)
                self.w16(S.EBX, 0x0008)
        elif ah == 0x4F:
            self.w16(S.EAX, 0x0100 | 0x4F)  # VBE: function failed (no VBE)

    def font(self, al: int) -> None:
        self.video.font(al)  # AH=11h: bios/video.py

    def write_string(self, mode: int, page: int, attr: int) -> None:
        cx = self.r16(S.ECX)
        addr = (self.seg(S.ES) << 4) + self.r16(S.EBP)
        old = self.get_cursor(page)
        self.set_cursor(page, self.hi(S.EDX), self.lo(S.EDX))
        step = 2 if mode & 2 else 1
        data = self.core.read_phys(addr, cx * step)
        for i in range(cx):
            ch = data[i * step]
            a = data[i * step + 1] if mode & 2 else attr
            if ch in (0x07, 0x08, 0x0A, 0x0D):
                self.teletype(ch, page)
            else:
                self.teletype(ch, page, a)
        if not mode & 1:
            self.set_cursor(page, *old)

    # -- INT 11h, 12h ----------------------------------------------------------------------------
    def int11(self) -> None:
        self.w16(S.EAX, self.ram.r16(B.BDA + B.EQUIPMENT))

    def int12(self) -> None:
        self.w16(S.EAX, self.ram.r16(B.BDA + B.MEMORY_KB))

    def int14(self) -> None:
        self.set_hi(S.EAX, 0x80)  # timeout: the BIOS serial services are not provided

    def int17(self) -> None:
        self.set_hi(S.EAX, 0x30)  # printer not present: "selected" + "out of paper" clear

    # -- INT 13h: disk ---------------------------------------------------------------------------
    def _disk_status(self, drive: int, status: int) -> None:
        self.ram.w8(B.BDA + (B.DISK_STATUS if drive & 0x80 else B.FLOPPY_STATUS), status)
        self.set_hi(S.EAX, status)
        self.set_flag(CF, status != 0)

    def transfer(self, drive: Drive, lba: int, count: int, addr: int, write: bool) -> int:
        img = drive.image
        per = drive.sector_size // SECTOR_SIZE
        try:
            if write:
                if drive.cd:
                    return DISK_WRITE_PROTECTED
                data = self.core.read_phys(addr, count * SECTOR_SIZE)
                img.write_sectors(lba, data)
            else:
                data = img.read_sectors(lba * per, count * per)
                self.core.write_phys(addr, data)
        except DiskWriteProtected:
            return DISK_WRITE_PROTECTED
        except DiskError:
            return DISK_NOT_FOUND
        return DISK_OK

    def int13(self) -> None:
        ah, al = self.hi(S.EAX), self.lo(S.EAX)
        dl = self.lo(S.EDX)
        drive = self.drives.get(dl)
        if ah == 0x00 or ah == 0x0D:
            self._disk_status(dl, DISK_OK if drive or dl in (0, 1) else DISK_BAD_COMMAND)
            return
        if ah == 0x01:
            st = self.ram.r8(B.BDA + (B.DISK_STATUS if dl & 0x80 else B.FLOPPY_STATUS))
            self.set_hi(S.EAX, st)
            self.set_flag(CF, st != 0)
            return
        if ah == 0x15:
            if drive is None:
                self.set_hi(S.EAX, 0)
                self.set_flag(CF, dl < 0x80)
                return
            if drive.floppy:
                self.set_hi(S.EAX, 0x02)
            else:
                self.set_hi(S.EAX, 0x03)
                n = drive.image.sectors
                self.w16(S.ECX, n >> 16)
                self.w16(S.EDX, n)
            self.set_flag(CF, False)
            return
        if ah == 0x08:
            self.get_params(dl, drive)
            return
        if drive is None:
            self._disk_status(dl, DISK_BAD_COMMAND if dl & 0x80 else DISK_TIMEOUT)
            return
        if ah in (0x02, 0x03, 0x04):
            ch, cl, dh = self.hi(S.ECX), self.lo(S.ECX), self.hi(S.EDX)
            cyl = ch | ((cl & 0xC0) << 2)
            sector = cl & 0x3F
            g = drive.geometry
            if al == 0 or sector == 0 or sector > g.sectors or dh >= g.heads:
                self.set_lo(S.EAX, 0)
                self._disk_status(dl, DISK_NOT_FOUND if al else DISK_BAD_COMMAND)
                return
            lba = (cyl * g.heads + dh) * g.sectors + sector - 1
            if ah == 0x04:
                status = DISK_OK if lba + al <= drive.image.sectors else DISK_NOT_FOUND
            else:
                addr = (self.seg(S.ES) << 4) + self.r16(S.EBX)
                if drive.floppy and dl != self.cd_emulated and addr >> 16 != (addr + al * 512 - 1) >> 16:
                    status = DISK_DMA_BOUNDARY  # the diskette's ISA DMA cannot cross a 64 KiB page
                else:
                    status = self.transfer(drive, lba, al, addr, ah == 0x03)
            if status:
                self.set_lo(S.EAX, 0)
            self._disk_status(dl, status)
            return
        if ah in (0x05, 0x09, 0x0C, 0x10, 0x11, 0x14, 0x47):
            self._disk_status(dl, DISK_OK)
            return
        if ah == 0x16:
            self.set_hi(S.EAX, 0)
            self.set_flag(CF, False)
            return
        if ah == 0x41:
            # no EDD for a diskette drive (as IBM's BIOS and SeaBIOS): its boot code then reads by CHS
            if self.r16(S.EBX) != 0x55AA or (drive.floppy and dl != self.cd_emulated):
                self._disk_status(dl, DISK_BAD_COMMAND)
                return
            self.w16(S.EBX, 0xAA55)
            self.set_hi(S.EAX, 0x30)
            self.w16(S.ECX, 0x0005)  # extended disk access and EDD functions
            self.set_flag(CF, False)
            return
        if ah in (0x42, 0x43, 0x44):
            pkt = (self.seg(S.DS) << 4) + self.r16(S.ESI)
            ram = self.ram
            count = ram.r16(pkt + 2)
            off, seg = ram.r16(pkt + 4), ram.r16(pkt + 6)
            lba = ram.r32(pkt + 8) | (ram.r32(pkt + 12) << 32)
            addr = (seg << 4) + off
            if ram.r8(pkt) >= 0x18 and off == 0xFFFF and seg == 0xFFFF:
                addr = ram.r32(pkt + 16)
            if ah == 0x44:
                status = DISK_OK if lba + count <= drive.sectors else DISK_NOT_FOUND
            else:
                status = self.transfer(drive, lba, count, addr, ah == 0x43)
            if status:
                ram.w16(pkt + 2, 0)
            self._disk_status(dl, status)
            return
        if ah == 0x4B and (drive.cd or dl == self.cd_emulated):
            if al in (0x00, 0x01):  # terminate emulation / get status: the specification packet
                pkt = (self.seg(S.DS) << 4) + self.r16(S.ESI)
                spec = bytearray(0x13)
                spec[0] = 0x13
                spec[1] = self.cd_media
                spec[2] = CD_DRIVE if self.cd_media == ELTORITO_NO_EMULATION else self.cd_emulated
                spec[3] = 0  # controller index
                spec[4:8] = self.cd_boot_rba.to_bytes(4, "little")
                spec[0x0C:0x0E] = self.cd_load_seg.to_bytes(2, "little")
                spec[0x0E:0x10] = self.cd_load_count.to_bytes(2, "little")
                self.core.write_phys(pkt, bytes(spec))
                self._disk_status(dl, DISK_OK)
            else:
                self._disk_status(dl, DISK_BAD_COMMAND)
            return
        if ah == 0x48:
            buf = (self.seg(S.DS) << 4) + self.r16(S.ESI)
            ram = self.ram
            size = ram.r16(buf)
            if size < 0x1A:
                self._disk_status(dl, DISK_BAD_COMMAND)
                return
            g = drive.geometry
            ram.w16(buf, 0x1A if size < 0x1E else 0x1E)
            ram.w16(buf + 2, 0x0074 if drive.cd else (0x0002 if not drive.floppy else 0x0004))
            ram.w32(buf + 4, 0xFFFFFFFF if drive.cd else g.cylinders)
            ram.w32(buf + 8, 0xFFFFFFFF if drive.cd else g.heads)
            ram.w32(buf + 12, 0xFFFFFFFF if drive.cd else g.sectors)
            ram.w32(buf + 16, drive.sectors & 0xFFFFFFFF)
            ram.w32(buf + 20, drive.sectors >> 32)
            ram.w16(buf + 24, drive.sector_size)
            if size >= 0x1E:
                ram.w32(buf + 26, 0xFFFFFFFF)
            self._disk_status(dl, DISK_OK)
            return
        self._disk_status(dl, DISK_BAD_COMMAND)

    def get_params(self, dl: int, drive: Drive | None) -> None:
        if drive is None:
            if dl < 0x80 and dl < 2:
                # a floppy drive slot without a medium: report no drive
                self.w16(S.EAX, 0)
                self.w16(S.EBX, 0)
                self.w16(S.ECX, 0)
                self.w16(S.EDX, sum(1 for d in self.drives if d < 0x80))
                self.set_flag(CF, False)
                return
            self._disk_status(dl, DISK_BAD_COMMAND)
            return
        g = drive.geometry
        maxc = min(g.cylinders, 1024) - 1
        self.w16(S.ECX, ((maxc & 0xFF) << 8) | ((maxc >> 2) & 0xC0) | g.sectors)
        same = sum(1 for d in self.drives if (d & 0x80) == (dl & 0x80))
        self.w16(S.EDX, ((g.heads - 1) << 8) | same)
        if drive.floppy:
            self.set_lo(S.EBX, drive.drive_type)
            self.core.set_seg_real(S.ES, R.ROM_SEGMENT)
            self.w16(S.EDI, R.DISKETTE_PARAMS)
        self.set_lo(S.EAX, 0)
        self._disk_status(dl, DISK_OK)

    # -- INT 15h: system -------------------------------------------------------------------------
    def e820_map(self) -> list[tuple[int, int, int]]:
        ram = self.m.ram_bytes
        ebda = B.EBDA_SEGMENT << 4
        out = [(0, ebda, E820_RAM), (ebda, 0xA0000 - ebda, E820_RESERVED),
               (0xF0000, 0x10000, E820_RESERVED)]
        if ram > 0x100000:
            out.append((0x100000, ram - 0x100000, E820_RAM))
        out.append((0x1_0000_0000 - R.ROM_SIZE, R.ROM_SIZE, E820_RESERVED))
        return out

    def int15(self) -> None:
        st = self.st
        ah, al = self.hi(S.EAX), self.lo(S.EAX)
        ax = self.r16(S.EAX)
        ext_kb = max(0, self.m.ram_bytes - 0x100000) // 1024
        if ax == 0xE820 and (int(st[S.EDX]) & 0xFFFFFFFF) == SMAP:
            entries = self.e820_map()
            i = int(st[S.EBX]) & 0xFFFFFFFF
            if i >= len(entries):
                self.fail(0x86)
                return
            base, length, kind = entries[i]
            addr = (self.seg(S.ES) << 4) + self.r16(S.EDI)
            data = (base.to_bytes(8, "little") + length.to_bytes(8, "little") + kind.to_bytes(4, "little"))
            self.core.write_phys(addr, data)
            st[S.EAX] = SMAP
            st[S.ECX] = 20
            st[S.EBX] = 0 if i + 1 >= len(entries) else i + 1
            self.ok()
        elif ax == 0xE801:
            low = min(ext_kb, 15 * 1024)
            high = max(0, self.m.ram_bytes - 0x1000000) // 0x10000
            self.w16(S.EAX, low)
            self.w16(S.ECX, low)
            self.w16(S.EBX, high)
            self.w16(S.EDX, high)
            self.ok()
        elif ah == 0x88:
            self.w16(S.EAX, min(ext_kb, 0xFFFF))
            self.ok()
        elif ah == 0xC0:
            self.core.set_seg_real(S.ES, R.ROM_SEGMENT)
            self.w16(S.EBX, R.CONFIG_TABLE)
            self.set_hi(S.EAX, 0)
            self.ok()
        elif ah == 0xC1:
            self.core.set_seg_real(S.ES, B.EBDA_SEGMENT)
            self.ok()
        elif ah == 0x24:
            if al == 0x00 or al == 0x01:
                self.m.set_a20(al == 0x01)
                self.set_hi(S.EAX, 0)
            elif al == 0x02:
                self.set_hi(S.EAX, 0)
                self.set_lo(S.EAX, 1 if self.m.a20_enabled() else 0)
            elif al == 0x03:
                self.set_hi(S.EAX, 0)
                self.w16(S.EBX, 0x0003)  # keyboard controller and port 92h
            else:
                self.fail(0x86)
                return
            self.ok()
        elif ah == 0x86:
            us = (self.r16(S.ECX) << 16) | self.r16(S.EDX)
            now = self.m.clock.now()
            if self.wait_deadline is None:
                self.wait_deadline = now + us * 1000
            if now < self.wait_deadline:
                self.wait()
                return
            self.wait_deadline = None
            self.set_hi(S.EAX, 0)
            self.ok()
        elif ah == 0x87:
            self.move_block()
        elif ah in (0x90, 0x91):
            self.set_hi(S.EAX, 0)
            self.ok()
        elif ah == 0x4F:
            self.set_flag(CF, True)  # keep the scancode
        else:
            self.fail(0x86)

    def move_block(self) -> None:
        gdt = (self.seg(S.ES) << 4) + self.r16(S.ESI)
        ram = self.ram

        def base(desc: int) -> int:
            return ram.r16(desc + 2) | (ram.r8(desc + 4) << 16) | (ram.r8(desc + 7) << 24)

        src, dst = base(gdt + 0x10), base(gdt + 0x18)
        n = self.r16(S.ECX) * 2
        self.core.write_phys(dst, self.core.read_phys(src, n))
        self.set_hi(S.EAX, 0)
        self.ok()

    # -- INT 16h: keyboard -----------------------------------------------------------------------
    def int16(self) -> None:
        ah = self.hi(S.EAX)
        ram = self.ram
        if ah in (0x00, 0x10):
            word = self.pop_key(True)
            if word is None:
                self.wait()
                return
            if ah == 0x00 and (word & 0xFF) == 0xE0 and word >> 8:
                word &= 0xFF00
            self.w16(S.EAX, word)
        elif ah in (0x01, 0x11):
            word = self.pop_key(False)
            if word is None:
                self.set_flag(ZF, True)
                return
            if ah == 0x01 and (word & 0xFF) == 0xE0 and word >> 8:
                word &= 0xFF00
            self.w16(S.EAX, word)
            self.set_flag(ZF, False)
        elif ah == 0x02:
            self.set_lo(S.EAX, ram.r8(B.BDA + B.KBD_FLAGS0))
        elif ah == 0x12:
            self.set_lo(S.EAX, ram.r8(B.BDA + B.KBD_FLAGS0))
            self.set_hi(S.EAX, ram.r8(B.BDA + B.KBD_FLAGS1))
        elif ah == 0x05:
            self.set_lo(S.EAX, 0 if self.push_key(self.r16(S.ECX)) else 1)
        elif ah == 0x03:
            pass
        elif ah == 0x0A:
            self.w16(S.EBX, 0xAB83)

    # -- INT 18h, 19h: boot ----------------------------------------------------------------------
    def int18(self) -> None:
        self.message("No bootable device.")
        self.jump(R.ROM_SEGMENT, R.HALT_LOOP)

    def int19(self) -> None:
        if self.m.direct_boot is not None:
            from emu.bootproto import BootError

            self.print_text("Booting from the -kernel image...\r\n")
            try:
                self.m.direct_boot.load(self.m)
            except BootError as exc:
                self.message(str(exc))
                self.jump(R.ROM_SEGMENT, R.HALT_LOOP)
            return
        names = {"a": "Floppy", "c": "Hard Disk", "d": "DVD/CD"}
        for dev in self.m.boot_order:
            number = {"a": 0x00, "c": 0x80, "d": CD_DRIVE}[dev]
            drive = self.drives.get(number)
            if drive is None:
                continue
            self.print_text(f"Booting from {names[dev]}...\r\n")
            try:
                loaded = self.load_cd_boot(drive) if drive.cd else self.load_boot_sector(drive)
            except DiskError:
                loaded = "could not read the boot disk"
            if isinstance(loaded, str):
                self.print_text(f"Boot failed: {loaded}\r\n\r\n")
                continue
            seg, data, boot_dl = loaded
            self.core.write_phys(seg << 4, data)
            st = self.st
            for r in (S.EAX, S.EBX, S.ECX, S.ESI, S.EDI, S.EBP):
                st[r] = 0
            st[S.EDX] = boot_dl
            for s_ in (S.DS, S.ES, S.SS, S.FS, S.GS):
                self.core.set_seg_real(s_, 0)
            st[S.ESP] = BOOT_SECTOR
            self.core.set_flags(0x0202)
            if seg == BOOT_SECTOR >> 4:
                self.jump(0, BOOT_SECTOR)
            else:
                self.jump(seg, 0)
            return
        self.int18()

    def load_boot_sector(self, drive: Drive):
        sector = drive.image.read_sectors(0, 1)
        if not drive.floppy and sector[510:512] != BOOT_SIGNATURE:
            return "not a bootable disk"
        if drive.floppy and not any(sector):
            return "not a bootable disk"
        return BOOT_SECTOR >> 4, sector, drive.number

    def load_cd_boot(self, drive: Drive):
        """El Torito no-emulation boot: the boot catalog's default entry."""
        per = CD_SECTOR // SECTOR_SIZE
        brvd = drive.image.read_sectors(EL_TORITO_BRVD * per, per)
        if brvd[: len(EL_TORITO_ID)] != EL_TORITO_ID:
            return "no El Torito boot record on the CD"
        catalog_lba = int.from_bytes(brvd[0x47:0x4B], "little")
        cat = drive.image.read_sectors(catalog_lba * per, per)
        if cat[0] != 0x01 or cat[30:32] != BOOT_SIGNATURE:
            return "bad El Torito boot catalog"
        entry = cat[32:64]
        if entry[0] != 0x88:
            return "the CD's default boot entry is not bootable"
        media = entry[1] & 0x0F
        if media > ELTORITO_HARD_DISK:
            return f"unknown El Torito boot media type {media}"
        seg = int.from_bytes(entry[2:4], "little") or 0x07C0
        count = int.from_bytes(entry[6:8], "little") or 1
        rba = int.from_bytes(entry[8:12], "little")
        self.cd_boot_rba, self.cd_load_seg, self.cd_load_count = rba, seg, count
        self.cd_media = media
        if media == ELTORITO_NO_EMULATION:
            return seg, drive.image.read_sectors(rba * per, count), CD_DRIVE
        number = self.emulate_from_cd(drive, rba * per, media)
        return seg, self.drives[number].image.read_sectors(0, count), number

    def emulate_from_cd(self, cd: Drive, first: int, media: int) -> int:
        """El Torito floppy/hard-disk emulation (El Torito 1.0, 5.1): the boot image becomes drive
        00h or 80h and the drives there move up one number. Returns the emulated drive number."""
        if media == ELTORITO_HARD_DISK:
            mbr = cd.image.read_sectors(first, 1)
            ends = [int.from_bytes(mbr[o + 8:o + 12], "little") + int.from_bytes(mbr[o + 12:o + 16], "little")
                    for o in range(MBR_PARTITIONS, MBR_PARTITIONS + 64, 16) if mbr[o + 4]]
            size, number = max(ends, default=1), 0x80
        else:
            size, number = ELTORITO_FLOPPY_SECTORS[media], 0x00
        if number in self.drives:
            moved = self.drives.pop(number)
            moved.number = number + 1
            self.drives[number + 1] = moved
        self.drives[number] = Drive(ImageSlice(cd.image, first, size), number)
        ram, b = self.ram, B.BDA
        if number == 0x80:
            ram.w8(b + B.DISK_COUNT, sum(1 for d in self.drives if 0x80 <= d < CD_DRIVE))
        else:
            n = sum(1 for d in self.drives if d < 0x80)
            ram.w16(b + B.EQUIPMENT, (ram.r16(b + B.EQUIPMENT) & ~0x00C1) | 0x0001 | ((n - 1) << 6))
        self.cd_emulated = number
        return number

    # -- INT 1Ah: time ---------------------------------------------------------------------------
    def _rtc(self, index: int) -> int:
        return self.m.rtc.read_register(index)

    def _rtc_bcd(self, index: int) -> int:
        v = self._rtc(index)
        if self._rtc(0x0B) & 0x04:  # binary mode: report BCD as the BIOS interface promises
            v = ((v // 10) << 4) | (v % 10)
        return v

    def int1a(self) -> None:
        ah = self.hi(S.EAX)
        ram = self.ram
        if ah == 0x00:
            t = ram.r32(B.BDA + B.TIMER_TICKS)
            self.w16(S.ECX, t >> 16)
            self.w16(S.EDX, t)
            self.set_lo(S.EAX, ram.r8(B.BDA + B.TIMER_OVERFLOW))
            ram.w8(B.BDA + B.TIMER_OVERFLOW, 0)
            self.ok()
        elif ah == 0x01:
            ram.w32(B.BDA + B.TIMER_TICKS, (self.r16(S.ECX) << 16) | self.r16(S.EDX))
            ram.w8(B.BDA + B.TIMER_OVERFLOW, 0)
            self.ok()
        elif ah == 0x02:
            self.set_hi(S.ECX, self._rtc_bcd(0x04))
            self.set_lo(S.ECX, self._rtc_bcd(0x02))
            self.set_hi(S.EDX, self._rtc_bcd(0x00))
            self.set_lo(S.EDX, self._rtc(0x0B) & 0x01)
            self.ok()
        elif ah == 0x04:
            self.set_hi(S.ECX, self._rtc_bcd(0x32))
            self.set_lo(S.ECX, self._rtc_bcd(0x09))
            self.set_hi(S.EDX, self._rtc_bcd(0x08))
            self.set_lo(S.EDX, self._rtc_bcd(0x07))
            self.ok()
        elif ah in (0x03, 0x05):
            rtc = self.m.rtc
            regs = ((0x04, self.hi(S.ECX)), (0x02, self.lo(S.ECX)), (0x00, self.hi(S.EDX))) if ah == 0x03 \
                else ((0x32, self.hi(S.ECX)), (0x09, self.lo(S.ECX)), (0x08, self.hi(S.EDX)),
                      (0x07, self.lo(S.EDX)))
            b = rtc.read_register(0x0B)
            rtc.write_register(0x0B, b | 0x80)
            for idx, v in regs:
                rtc.write_register(idx, v)
            rtc.write_register(0x0B, b & ~0x80)
            self.ok()
        else:
            self.fail(0x86)
