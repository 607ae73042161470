"""Direct kernel boot (`-kernel/-initrd/-append`): the Linux x86 boot protocol and multiboot v1.

Linux (Documentation/x86/boot.rst, protocol 2.02 or later): the real-mode setup code goes to
1000:0000 with the command line at 2000:0000, the protected-mode kernel to 1 MiB, and the initrd as
high as `initrd_addr_max` and RAM allow. After POST, the BIOS's INT 19h enters the setup code at
1020:0000 with DS=ES=SS=FS=GS=1000h, as a boot loader does; the setup code then asks the BIOS for the
memory map (E820) and switches to protected mode itself.

Multiboot v1 (the Multiboot Specification 0.6.96, as QEMU loads it): the header in the first 8 KiB,
ELF32 or a.out-kludge loading, an info structure with memory sizes, the command line, the initrd as a
module and a memory map; entry in flat 32-bit protected mode with EAX=2BADB002h, EBX=the info address.
"""

from __future__ import annotations

import struct

from emu.cpu import state as S


class BootError(Exception):
    """A kernel image that cannot be booted; one line for `pyemu: error: ...`."""


HDRS = b"HdrS"
SETUP_HEADER = 0x1F1
REAL_SEG = 0x1000
REAL_ADDR = REAL_SEG << 4
CMDLINE_ADDR = 0x20000
CMDLINE_MAX = 0x1000
HIGH_LOAD = 0x100000
LOADED_HIGH = 0x01
CAN_USE_HEAP = 0x80
LOADER_TYPE = 0xB0  # "QEMU" in the boot protocol's loader list
DEFAULT_INITRD_MAX = 0x37FFFFFF

MB_MAGIC = 0x1BADB002
MB_BOOT_MAGIC = 0x2BADB002
MB_SEARCH = 8192
MB_AOUT_KLUDGE = 1 << 16
MB_INFO_ADDR = 0x9000
MB_MMAP_ADDR = 0x9100
MB_CMDLINE_ADDR = 0x9800
MB_MODS_ADDR = 0x9600
MB_GDT_ADDR = 0x8F00


def read_input_file(path: str, what: str, limit: int) -> bytes:
    """The whole of a file the user named (`what` is the option), as one-line `BootError`s: missing,
    unreadable, a directory, not a regular file (/dev/zero or a FIFO would be read forever or block),
    or more than `limit` bytes (checked before reading it)."""
    import os
    import stat

    try:
        with open(path, "rb") as fh:
            st = os.fstat(fh.fileno())
            if stat.S_ISDIR(st.st_mode):
                raise BootError(f"{what} {path}: Is a directory")
            if not stat.S_ISREG(st.st_mode):
                raise BootError(f"{what} {path}: not a regular file")
            if st.st_size > limit:
                raise BootError(f"{what} {path}: {st.st_size} bytes is too big (at most {limit})")
            return fh.read(limit + 1)[:limit]
    except OSError as exc:
        raise BootError(f"{what} {path}: {exc.strerror or exc}") from None


def _read(path: str, what: str, ram_bytes: int) -> bytes:
    return read_input_file(path, what, ram_bytes)  # nothing bigger than RAM can be loaded into it


def find_multiboot(data: bytes) -> int | None:
    for off in range(0, min(len(data), MB_SEARCH) - 11, 4):
        magic, flags, checksum = struct.unpack_from("<III", data, off)
        if magic == MB_MAGIC and (magic + flags + checksum) & 0xFFFFFFFF == 0:
            return off
    return None


class DirectBoot:
    """Checked at start-up (so a bad image is a one-line error), loaded when INT 19h runs."""

    def __init__(self, kernel: str, initrd: str | None, append: str, ram_bytes: int):
        self.kernel_path = kernel
        self.kernel = _read(kernel, "-kernel", ram_bytes)
        self.initrd = _read(initrd, "-initrd", ram_bytes) if initrd else None
        self.append = append or ""
        self.ram_bytes = ram_bytes
        k = self.kernel
        self.kind = None
        if len(k) >= 0x264 and k[0x202:0x206] == HDRS:
            self.kind = "linux"
            self.version = struct.unpack_from("<H", k, 0x206)[0]
            if self.version < 0x202:
                raise BootError(f"-kernel {kernel}: Linux boot protocol {self.version >> 8}.{self.version & 0xFF}"
                                " is too old (2.02 or later needed)")
            if not k[0x211] & LOADED_HIGH:
                raise BootError(f"-kernel {kernel}: a zImage (not loaded high) is not supported")
            setup_sects = k[SETUP_HEADER] or 4
            self.setup_size = (setup_sects + 1) * 512
            if len(k) <= self.setup_size:
                raise BootError(f"-kernel {kernel}: truncated bzImage")
            if self.initrd and self._linux_initrd_addr() < HIGH_LOAD + len(k) - self.setup_size:
                raise BootError("-initrd: the initrd does not fit in RAM with the kernel (try a larger -m)")
        else:
            off = find_multiboot(k)
            if off is None:
                raise BootError(f"-kernel {kernel}: not a Linux bzImage or a multiboot image")
            self.kind = "multiboot"
            self.mb_offset = off
            self._check_multiboot()
            if self.initrd and self._multiboot_module_addr() + len(self.initrd) > ram_bytes:
                raise BootError("-initrd: the module does not fit in RAM (try a larger -m)")

    # -- Linux -----------------------------------------------------------------------------------
    def _linux_initrd_addr(self) -> int:
        """Where the initrd goes: as high as the header's initrd_addr_max and RAM allow."""
        max_addr = struct.unpack_from("<I", self.kernel, 0x22C)[0] if self.version >= 0x203 else DEFAULT_INITRD_MAX
        top = min(max_addr + 1, self.ram_bytes)
        return (top - len(self.initrd)) & ~0xFFF

    def load_linux(self, m) -> None:
        core = m.core
        k = bytearray(self.kernel)
        setup = k[: self.setup_size]
        cmdline = self.append.encode()[: CMDLINE_MAX - 1] + b"\0"
        if self.version >= 0x206:
            limit = struct.unpack_from("<I", setup, 0x238)[0]
            if limit and len(cmdline) > limit + 1:
                cmdline = cmdline[:limit] + b"\0"
        setup[0x210] = LOADER_TYPE
        setup[0x211] |= CAN_USE_HEAP
        struct.pack_into("<H", setup, 0x224, (CMDLINE_ADDR - REAL_ADDR - 0x200) & 0xFFFF)
        struct.pack_into("<I", setup, 0x228, CMDLINE_ADDR)
        if self.initrd:
            addr = self._linux_initrd_addr()
            kernel_end = HIGH_LOAD + len(k) - self.setup_size
            if addr < kernel_end:
                raise BootError("-initrd: the initrd does not fit in RAM with the kernel (try a larger -m)")
            core.write_phys(addr, self.initrd)
            struct.pack_into("<II", setup, 0x218, addr, len(self.initrd))
        core.write_phys(REAL_ADDR, bytes(setup))
        core.write_phys(CMDLINE_ADDR, cmdline)
        core.write_phys(HIGH_LOAD, bytes(k[self.setup_size:]))
        st = m.st
        for s in (S.DS, S.ES, S.SS, S.FS, S.GS):
            core.set_seg_real(s, REAL_SEG)
        st[S.ESP] = (CMDLINE_ADDR - REAL_ADDR - 0x200) & 0xFFFF
        for r in (S.EAX, S.EBX, S.ECX, S.EDX, S.ESI, S.EDI, S.EBP):
            st[r] = 0
        core.set_flags(0x0002)  # IF=0: the setup code runs with interrupts off until it enables them
        core.set_seg_real(S.CS, REAL_SEG + 0x20)
        st[S.EIP] = 0

    # -- multiboot -------------------------------------------------------------------------------
    def _check_multiboot(self) -> None:
        k, off = self.kernel, self.mb_offset
        _, flags, _ = struct.unpack_from("<III", k, off)
        self.mb_flags = flags
        if flags & MB_AOUT_KLUDGE:
            if len(k) < off + 32:
                raise BootError(f"-kernel {self.kernel_path}: truncated multiboot header")
            header_addr, load_addr, load_end, bss_end, entry = struct.unpack_from("<5I", k, off + 12)
            file_off = off - (header_addr - load_addr)
            if file_off < 0 or load_addr < 0x1000:
                raise BootError(f"-kernel {self.kernel_path}: bad multiboot load address")
            size = (load_end - load_addr) if load_end else len(k) - file_off
            self.segments = [(load_addr, k[file_off: file_off + size], (bss_end - load_addr) if bss_end else size)]
            self.entry = entry
        elif k[:4] == b"\x7fELF" and len(k) >= 52 and k[4] == 1:
            entry, phoff = struct.unpack_from("<II", k, 24)
            phentsize, phnum = struct.unpack_from("<HH", k, 42)
            self.segments = []
            for i in range(phnum):
                p = phoff + i * phentsize
                if p + 32 > len(k):
                    raise BootError(f"-kernel {self.kernel_path}: truncated ELF program headers")
                ptype, poff, _vaddr, paddr, filesz, memsz = struct.unpack_from("<6I", k, p)
                if ptype == 1 and memsz:
                    self.segments.append((paddr, k[poff: poff + filesz], memsz))
            self.entry = entry
        else:
            raise BootError(f"-kernel {self.kernel_path}: multiboot image is neither ELF32 nor a.out-kludge")
        for addr, _data, memsz in self.segments:
            if addr + memsz > self.ram_bytes:
                raise BootError(f"-kernel {self.kernel_path}: loads above the end of RAM (try a larger -m)")

    def _multiboot_module_addr(self) -> int:
        """The initrd (module) goes at the first page boundary after the kernel's segments."""
        top = max(addr + memsz for addr, _d, memsz in self.segments)
        return (top + 0xFFF) & ~0xFFF

    def load_multiboot(self, m) -> None:
        core, st = m.core, m.st
        for addr, data, memsz in self.segments:
            core.write_phys(addr, bytes(data) + bytes(max(0, memsz - len(data))))
        info = bytearray(88)
        flags = 0x1 | 0x4 | 0x40  # memory, command line, memory map
        struct.pack_into("<II", info, 4, 639, max(0, m.ram_bytes - 0x100000) // 1024)
        cmdline = (self.kernel_path + (" " + self.append if self.append else "")).encode()[:1023] + b"\0"
        core.write_phys(MB_CMDLINE_ADDR, cmdline)
        struct.pack_into("<I", info, 16, MB_CMDLINE_ADDR)
        if self.initrd:
            mod = self._multiboot_module_addr()
            if mod + len(self.initrd) > m.ram_bytes:
                raise BootError("-initrd: the module does not fit in RAM (try a larger -m)")
            core.write_phys(mod, self.initrd)
            core.write_phys(MB_MODS_ADDR, struct.pack("<IIII", mod, mod + len(self.initrd), MB_CMDLINE_ADDR, 0))
            flags |= 0x8
            struct.pack_into("<II", info, 20, 1, MB_MODS_ADDR)
        mmap = b"".join(struct.pack("<IQQI", 20, b, n, t) for b, n, t in m.bios.e820_map())
        core.write_phys(MB_MMAP_ADDR, mmap)
        struct.pack_into("<II", info, 44, len(mmap), MB_MMAP_ADDR)
        struct.pack_into("<I", info, 0, flags)
        core.write_phys(MB_INFO_ADDR, bytes(info))
        enter_flat32(m, self.entry)
        st[S.EAX] = MB_BOOT_MAGIC
        st[S.EBX] = MB_INFO_ADDR

    def load(self, m) -> None:
        if self.kind == "linux":
            self.load_linux(m)
        else:
            self.load_multiboot(m)


def enter_flat32(m, entry: int) -> None:
    """Flat 32-bit protected mode, paging off, IF=0: a GDT with code 08h and data 10h."""
    core, st = m.core, m.st
    gdt = struct.pack("<QQQ", 0, 0x00CF9A000000FFFF, 0x00CF92000000FFFF)
    core.write_phys(MB_GDT_ADDR, gdt)
    st[S.GDTR_BASE] = MB_GDT_ADDR
    st[S.GDTR_LIMIT] = len(gdt) - 1
    code = S.ATTR_P | S.ATTR_S | S.ATTR_CODE | S.ATTR_WRITABLE | S.ATTR_ACCESSED | S.ATTR_DB | S.ATTR_G
    data = S.ATTR_P | S.ATTR_S | S.ATTR_WRITABLE | S.ATTR_ACCESSED | S.ATTR_DB | S.ATTR_G
    for seg, sel, attr in ((S.CS, 0x08, code), (S.DS, 0x10, data), (S.ES, 0x10, data), (S.SS, 0x10, data),
                           (S.FS, 0x10, data), (S.GS, 0x10, data)):
        st[S.seg_slot(seg, S.SEG_SEL)] = sel
        st[S.seg_slot(seg, S.SEG_BASE)] = 0
        st[S.seg_slot(seg, S.SEG_LIMIT)] = 0xFFFFFFFF
        st[S.seg_slot(seg, S.SEG_ATTR)] = attr
    st[S.CR0] = (int(st[S.CR0]) | 1) & ~0x80000000
    st[S.CPL] = 0
    m.set_a20(True)
    core.set_flags(0x0002)
    st[S.EIP] = entry & 0xFFFFFFFF
    core.flush_tlb()
