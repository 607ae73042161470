"""Opening a disk image in its format: raw (`DiskImage`) or qcow2 (`Qcow2Image`), probed or given.

`open_image(path, fmt=None, readonly=False, snapshot=False)` probes the qcow2 magic when no format
is given (`-hda`, `-fda`, `-cdrom`, the positional image), as QEMU does; `-drive format=` names it.
`DriveSpec` is one `-drive` option, parsed with QEMU's key names.
"""

from __future__ import annotations

from dataclasses import dataclass

from emu.devices.diskimage import DiskError, DiskImage
from emu.devices.qcow2 import Header, Qcow2Image, is_qcow2, read_header

FORMATS = ("raw", "qcow2")


def probe_format(path: str) -> str:
    """qcow2 by its magic, else raw. Only regular files are read: anything else (a FIFO would block
    the probe) is left to DiskImage.open, which names what is wrong with it."""
    import os
    import stat

    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return "raw"
    except OSError:
        return "raw"
    return "qcow2" if is_qcow2(path) else "raw"


def open_image(path: str, fmt: str | None = None, readonly: bool = False, snapshot: bool = False):
    """A raw or qcow2 image with the sector interface (see diskimage.py for the promises)."""
    if fmt is None:
        fmt = probe_format(path)
    if fmt == "qcow2":
        return Qcow2Image.open(path, readonly=readonly, snapshot=snapshot)
    if fmt == "raw":
        return DiskImage.open(path, readonly=readonly, snapshot=snapshot)
    raise DiskError(f"image format '{fmt}' is not supported (raw, qcow2)")


def virtual_size(path: str, fmt: str | None = None) -> int | None:
    """The guest-visible size of the image at `path` (None when it cannot be read)."""
    import os

    try:
        if (fmt or probe_format(path)) == "qcow2":
            fd = os.open(path, os.O_RDONLY)
            try:
                header: Header = read_header(fd, path)
            finally:
                os.close(fd)
            return header.size
        return os.stat(path).st_size
    except (OSError, DiskError):
        return None


@dataclass
class DriveSpec:
    """`-drive file=PATH,format=raw|qcow2,if=ide|floppy,index=N,media=disk|cdrom,snapshot=on,readonly=on`."""

    file: str
    format: str | None = None
    interface: str = "ide"
    index: int | None = None
    media: str = "disk"
    snapshot: bool = False
    readonly: bool = False

    KEYS = ("file", "format", "if", "index", "media", "snapshot", "readonly")

    @classmethod
    def parse(cls, text: str) -> DriveSpec:
        """Parse QEMU's comma-separated key=value list (`,,` is a literal comma in a value)."""
        parts, cur, i = [], "", 0
        while i < len(text):
            if text[i] == ",":
                if text[i + 1:i + 2] == ",":
                    cur += ","
                    i += 2
                    continue
                parts.append(cur)
                cur = ""
            else:
                cur += text[i]
            i += 1
        parts.append(cur)
        values: dict[str, str] = {}
        for part in parts:
            key, eq, val = part.partition("=")
            if not eq:
                raise ValueError(f"-drive {text}: expected key=value, got {part!r}")
            if key not in cls.KEYS:
                raise ValueError(f"-drive: unknown key {key!r} (pyemu has: {', '.join(cls.KEYS)})")
            values[key] = val
        if not values.get("file"):
            raise ValueError(f"-drive {text}: file= is needed")
        spec = cls(values["file"])
        choices = {"format": FORMATS, "if": ("ide", "floppy"), "media": ("disk", "cdrom"),
                   "snapshot": ("on", "off"), "readonly": ("on", "off")}
        for key, allowed in choices.items():
            if key in values and values[key] not in allowed:
                raise ValueError(f"-drive {key}={values[key]}: expected {' or '.join(allowed)}")
        spec.format = values.get("format")
        spec.interface = values.get("if", "ide")
        spec.media = values.get("media", "disk")
        spec.snapshot = values.get("snapshot") == "on"
        spec.readonly = values.get("readonly") == "on"
        if "index" in values:
            try:
                spec.index = int(values["index"])
            except ValueError:
                raise ValueError(f"-drive index={values['index']}: not a number") from None
            limit = 2 if spec.interface == "floppy" else 4
            if not 0 <= spec.index < limit:
                raise ValueError(f"-drive index={spec.index}: {spec.interface} has indexes 0-{limit - 1}")
        if spec.interface == "floppy" and spec.media == "cdrom":
            raise ValueError("-drive if=floppy,media=cdrom: a floppy drive takes no CD")
        return spec

    def open(self, snapshot: bool = False):
        readonly = self.readonly or self.media == "cdrom"
        return open_image(self.file, self.format, readonly=readonly, snapshot=(self.snapshot or snapshot)
                          and not readonly)


def place_drives(specs: list[str], floppies: list, disks: list, cdrom):
    """Put each `-drive` into pyemu's slots (floppies 0-1; IDE disks at index 0-1, the CD-ROM at
    index 2, as QEMU's -cdrom); returns the CD-ROM slot. Raises ValueError with a one-line message."""
    for text in specs:
        spec = DriveSpec.parse(text)
        if spec.interface == "floppy":
            slots, index = floppies, spec.index
            if index is None:
                index = next((i for i, v in enumerate(floppies) if v is None), None)
            if index is None or slots[index] is not None:
                raise ValueError(f"-drive {text}: floppy drive {'A:' if index == 0 else 'B:'} is already in use"
                                 if index is not None else f"-drive {text}: both floppy drives are in use")
            slots[index] = spec
        elif spec.media == "cdrom":
            if spec.index not in (None, 2):
                raise ValueError(f"-drive {text}: pyemu's CD-ROM is IDE index 2 (secondary master)")
            if cdrom is not None:
                raise ValueError(f"-drive {text}: the CD-ROM is already in use")
            cdrom = spec
        else:
            index = spec.index
            if index is None:
                index = next((i for i, v in enumerate(disks) if v is None), None)
                if index is None:
                    raise ValueError(f"-drive {text}: both hard disks (IDE index 0 and 1) are in use")
            if index > 1:
                raise ValueError(f"-drive {text}: pyemu's hard disks are IDE index 0 and 1 (index 2 is the CD-ROM)")
            if disks[index] is not None:
                raise ValueError(f"-drive {text}: IDE index {index} is already in use")
            disks[index] = spec
    return cdrom
