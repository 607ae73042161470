"""A Linux initramfs built at test time: a "newc" cpio archive (the format the kernel unpacks,
Documentation/driver-api/early-userspace/buffer-format.rst) holding a static busybox and an /init.

Nothing is copied from a distribution's initrd: the archive is written here, byte by byte.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

NEWC_MAGIC = b"070701"
MODE_DIR = 0o040755
MODE_FILE = 0o100755
MODE_LINK = 0o120777
TRAILER = "TRAILER!!!"
CPIO_ALIGN = 4


def _pad(n: int) -> bytes:
    return bytes(-n % CPIO_ALIGN)


def _entry(ino: int, name: str, mode: int, data: bytes = b"") -> bytes:
    fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name) + 1, 0]
    head = NEWC_MAGIC + b"".join(b"%08X" % f for f in fields)
    out = head + name.encode() + b"\0"
    out += _pad(len(out))
    return out + data + _pad(len(data))


def newc_archive(entries: list[tuple[str, int, bytes]]) -> bytes:
    """`entries` are (path without a leading slash, mode, contents); a symlink's contents are its
    target."""
    out = bytearray()
    for ino, (name, mode, data) in enumerate(entries, start=1):
        out += _entry(ino, name, mode, data)
    out += _entry(0, TRAILER, 0)
    return bytes(out)


def i386_busybox() -> Path | None:
    """A static 32-bit busybox (Debian's busybox-static for i386), or None."""
    for cand in (shutil.which("busybox"), "/bin/busybox", "/usr/bin/busybox"):
        if cand and Path(cand).exists():
            head = Path(cand).read_bytes()[:20]
            # ELF, 32-bit class, machine EM_386 (3)
            if head[:4] == b"\x7fELF" and head[4] == 1 and head[18] == 3:
                ldd = subprocess.run(["file", cand], capture_output=True, text=True).stdout \
                    if shutil.which("file") else "statically linked"
                if "dynamically" not in ldd:
                    return Path(cand)
    return None


def busybox_initramfs(busybox: Path, init_script: str) -> bytes:
    """/bin/busybox with /bin/sh linked to it, /proc, /dev, /sys, and /init running `init_script`."""
    entries: list[tuple[str, int, bytes]] = [
        ("bin", MODE_DIR, b""), ("dev", MODE_DIR, b""), ("proc", MODE_DIR, b""), ("sys", MODE_DIR, b""),
        ("bin/busybox", MODE_FILE, busybox.read_bytes()),
        ("bin/sh", MODE_LINK, b"busybox"),
        ("init", MODE_FILE, ("#!/bin/sh\n" + init_script).encode()),
    ]
    return newc_archive(entries)
