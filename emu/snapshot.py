"""Machine snapshots: savevm / loadvm / delvm / info snapshots (QEMU's names), `-loadvm NAME`.

A snapshot is the whole machine between two runs of the guest: the CPU state array, RAM (and the
ROM/shadow copy after it) with all-zero pages left out, the physical page map, every device's
`state()` (each device's own state-as-data pair, emu/devices/bus.py), the armed timers of the
virtual clock in firing order, guest time and the instruction counts, the built-in BIOS's few
Python-side fields, and the written sectors of disks in -snapshot mode (a memory-backed disk is
kept whole). Disks that write straight into their files cannot be rolled back, so savevm refuses
them, as QEMU refuses a writable disk without snapshot support.

File format (`NAME.pyvm`), little-endian:

    magic "PYEMUVM\\0" | u32 format version | u32 header length | header (JSON, UTF-8) | sections

The header holds the name, the date, the machine fingerprint (RAM size, device set, clock mode,
drives), the state tree (device dicts, with bytes and arrays replaced by {"$b": i} / {"$a": i}
references) and the table of sections: each a zlib stream with its raw length and CRC-32. Nothing
is unpickled: a damaged, truncated, foreign or mismatched file raises SnapshotError (one line).

Where: `$PYEMU_SNAPSHOT_DIR` if set, else a directory beside the first hard disk or floppy image
(`disk.img.pyemu-snapshots/`), else `~/.cache/pyemu/snapshots` (`$XDG_CACHE_HOME`).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import struct
import zlib

import numpy as np

from emu.cpu import state as S
from emu.tsc import tsc_value

MAGIC = b"PYEMUVM\0"
FORMAT_VERSION = 1
SUFFIX = ".pyvm"
DIR_SUFFIX = ".pyemu-snapshots"
PAGE = 4096
NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,63}")
MAX_HEADER = 64 << 20
# state-array slots that belong to the host, not the guest: -d logging
HOST_SLOTS = (S.LOG_MASK, S.LOG_ACK, S.LOG_POS)
# the built-in BIOS's Python-side fields (bios/services.py); the rest of it is derived from the config
BIOS_FIELDS = ("wait_deadline", "cd_boot_rba", "cd_load_seg", "cd_load_count", "e0_prefix", "cd_media",
               "cd_emulated")


class SnapshotError(Exception):
    """A snapshot that cannot be saved, found or loaded; the message is one line."""


# -- where ------------------------------------------------------------------------------------------
def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise SnapshotError(f"invalid snapshot name '{name}' (letters, digits, '_', '.', '+', '-'; "
                            "at most 64)")
    return name


def snapshot_dir(pc) -> str:
    """The directory a machine's snapshots live in (see the module docstring)."""
    return _dir_beside([getattr(img, "path", "") for img in [*pc.disks, *pc.floppies]
                        if img is not None and not img.readonly])


def config_dir(cfg) -> str:
    """snapshot_dir from a MachineConfig, before the machine (and the engine) exists."""
    paths = []
    for item in [*cfg.disks[:2], *cfg.floppies[:2]]:
        if isinstance(item, str):
            paths.append(item)
        elif item is not None and not getattr(item, "readonly", False):  # a -drive DriveSpec
            paths.append(item.file)
    return _dir_beside(paths)


def _dir_beside(image_paths: list[str]) -> str:
    env = os.environ.get("PYEMU_SNAPSHOT_DIR")
    if env:
        return env
    for path in image_paths:
        if path:
            return path + DIR_SUFFIX
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "pyemu", "snapshots")


def snapshot_path(pc, name: str) -> str:
    return os.path.join(snapshot_dir(pc), check_name(name) + SUFFIX)


def precheck(cfg, name: str) -> tuple:
    """-loadvm NAME before the machine is built: the file is found, whole, of this format and of
    this RAM size, or SnapshotError says why (quickly, without loading the engine). Returns what
    `load` takes as `decoded`."""
    path = os.path.join(config_dir(cfg), check_name(name) + SUFFIX)
    if not os.path.exists(path):
        raise SnapshotError(f"Snapshot '{name}' does not exist ({path})")
    header, reader = decode(path)
    saved = header["fingerprint"].get("ram_mb") if isinstance(header["fingerprint"], dict) else None
    if saved != cfg.ram_mb:
        raise SnapshotError(f"snapshot '{name}' does not fit this machine: "
                            + _describe_mismatch("ram_mb", saved, cfg.ram_mb))
    return path, header, reader


# -- the machine's identity -------------------------------------------------------------------------
def _drive_slots(pc) -> list[tuple[str, object]]:
    return ([(f"floppy{i}", img) for i, img in enumerate(pc.floppies)]
            + [(f"ide0-hd{i}", img) for i, img in enumerate(pc.disks)] + [("ide1-cd0", pc.cdrom)])


def fingerprint(pc) -> dict:
    """What a snapshot and the machine it is loaded into must agree on."""
    return {
        "ram_mb": pc.ram_bytes >> 20,
        "memory_bytes": int(pc.core.mem.size),
        "devices": [type(d).__name__ for d in pc.devices],
        "pci": sorted(f"{d:02x}.{f}" for d, f in pc.pci.functions),
        "bios": "built-in" if pc.builtin_bios else "-bios",
        "clock": f"icount shift={pc.clock.shift}" if pc.clock.icount else "host time",
        "drives": {slot: None if img is None else int(img.size) for slot, img in _drive_slots(pc)},
    }


def _describe_mismatch(key: str, saved, here) -> str:
    if key == "ram_mb":
        return f"it was saved with {saved} MiB of RAM, this machine has {here} MiB"
    if key == "drives":
        for slot in sorted(set(saved) | set(here)):
            a, b = saved.get(slot), here.get(slot)
            if a != b:
                what = lambda v: "no medium" if v is None else f"{v} bytes"  # noqa: E731
                return f"drive {slot} had {what(a)} there, {what(b)} here"
    return f"{key} was {saved} there, {here} here"


# -- encoding: a JSON tree plus binary sections ------------------------------------------------------
class _Writer:
    def __init__(self):
        self.blobs: list[bytes] = []

    def blob(self, data: bytes) -> int:
        self.blobs.append(bytes(data))
        return len(self.blobs) - 1

    def tree(self, value):
        """Device state as JSON: bytes and arrays go to sections, numpy scalars become ints."""
        if isinstance(value, dict):
            out = {}
            for k, v in value.items():
                if not isinstance(k, str):
                    raise SnapshotError(f"state key {k!r} is not a string")
                out[k] = self.tree(v)
            return out
        if isinstance(value, (list, tuple)):
            return [self.tree(v) for v in value]
        if isinstance(value, (bytes, bytearray, memoryview)):
            return {"$b": self.blob(value)}
        if isinstance(value, np.ndarray):
            return {"$a": self.blob(value.tobytes()), "dtype": value.dtype.str, "shape": list(value.shape)}
        if isinstance(value, (np.bool_, bool)):
            return bool(value)
        if isinstance(value, np.integer):
            return int(value)
        if value is None or isinstance(value, (int, float, str)):
            return value
        raise SnapshotError(f"cannot save a {type(value).__name__} in a snapshot")


class _Reader:
    def __init__(self, blobs: list[bytes]):
        self.blobs = blobs

    def blob(self, i) -> bytes:
        if not isinstance(i, int) or not 0 <= i < len(self.blobs):
            raise SnapshotError("damaged (a section reference is out of range)")
        return self.blobs[i]

    def tree(self, value):
        if isinstance(value, dict):
            if "$b" in value:
                return self.blob(value["$b"])
            if "$a" in value:
                try:
                    return np.frombuffer(self.blob(value["$a"]), dtype=np.dtype(value["dtype"])).reshape(
                        value["shape"]).copy()
                except (TypeError, ValueError) as exc:
                    raise SnapshotError(f"damaged (an array section: {exc})") from None
            return {k: self.tree(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.tree(v) for v in value]
        return value


def _ram_sections(w: _Writer, mem: np.ndarray) -> dict:
    """RAM as the indices of its non-zero pages and their contents."""
    n = mem.size // PAGE
    pages = mem[: n * PAGE].reshape(n, PAGE)
    nz = np.flatnonzero(pages.any(axis=1)).astype(np.uint32)
    return {"pages": w.blob(nz.tobytes()), "data": w.blob(pages[nz].tobytes()), "count": int(n)}


def _disk_state(w: _Writer, slot: str, img) -> dict | None:
    if img is None or img.readonly:
        return None
    if getattr(img, "_data", None) is not None and getattr(img, "fd", None) is None:
        return {"memory": w.blob(bytes(img._data))}  # a memory-backed disk (the demo, tests): all of it
    if not img.snapshot:
        raise SnapshotError(f"Device '{slot}' is writable but does not support snapshots "
                            "(its writes go straight to the image; use -snapshot)")
    lbas = sorted(img.overlay)
    return {"overlay": w.blob(np.array(lbas, dtype=np.int64).tobytes()),
            "sectors": w.blob(b"".join(img.overlay[lba] for lba in lbas))}


def _check_disk(slot: str, img, saved) -> None:
    """Can `img` take the saved disk state? (checked for every drive before anything changes)"""
    if saved is None:
        return  # nothing was written there (no medium, or read-only)
    if not isinstance(saved, dict):
        raise SnapshotError(f"damaged (drive {slot})")
    if "memory" in saved:
        if img is None or getattr(img, "_data", None) is None:
            raise SnapshotError(f"drive {slot} held an in-memory disk in the snapshot, not here")
    elif img is None or not img.snapshot:
        raise SnapshotError(f"drive {slot} was in -snapshot mode when saved: loadvm needs -snapshot too")


def _load_disk(r: _Reader, slot: str, img, saved) -> None:
    if saved is None:
        return
    if "memory" in saved:
        data = r.blob(saved["memory"])
        if len(data) != len(img._data):
            raise SnapshotError(f"damaged (drive {slot})")
        img._data[:] = data
        return
    lbas = np.frombuffer(r.blob(saved["overlay"]), dtype=np.int64)
    data = r.blob(saved["sectors"])
    if len(data) != 512 * lbas.size:
        raise SnapshotError("damaged (disk overlay)")
    img.overlay.clear()
    for i, lba in enumerate(lbas.tolist()):
        img.overlay[lba] = data[512 * i: 512 * (i + 1)]


def _named_devices(pc) -> dict:
    devs = {"pic": pc.pic, "pit": pc.pit, "rtc": pc.rtc, "i8042": pc.i8042, "serial0": pc.serial[0],
            "serial1": pc.serial[1], "vga": pc.vga, "port92": pc.port92, "pci": pc.pci, "ata": pc.ata,
            "dma": pc.dma, "fdc": pc.fdc}
    if pc.pci_vga is not None:
        devs["pci_vga"] = pc.pci_vga  # after pci: its load_state maps the ROM BAR from the config space
    return devs


# -- save ---------------------------------------------------------------------------------------------
def encode(pc, loop, name: str) -> bytes:
    """The machine as a snapshot file's bytes."""
    w = _Writer()
    st = pc.core.st
    clock = pc.clock
    index = {id(t): i for i, t in enumerate(clock.timers)}
    state = {
        "cpu": w.tree(st.copy()),
        "ram": _ram_sections(w, pc.core.mem),
        "pmap": w.tree(pc.core.phys.pmap),
        "devices": {k: w.tree(d.state()) for k, d in _named_devices(pc).items()},
        "clock": {"ns": int(clock.now()), "instructions": int(clock.instructions),
                  "timers": [[index[id(t)], t.name, int(t.deadline)] for t in clock.armed_timers()]},
        "retired": int(loop.retired) if loop is not None else int(st[S.ICOUNT]),
        "bios": None if pc.bios is None else {f: w.tree(getattr(pc.bios, f)) for f in BIOS_FIELDS},
        "machine": {"reset_requested": bool(pc.reset_requested), "reset_cause": pc.reset_cause},
        "disks": {slot: _disk_state(w, slot, img) for slot, img in _drive_slots(pc)},
    }
    sections, body, offset = [], [], 0
    for blob in w.blobs:
        z = zlib.compress(blob, 1)
        sections.append([offset, len(z), len(blob), zlib.crc32(blob)])
        body.append(z)
        offset += len(z)
    header = {"name": name, "date": _dt.datetime.now().replace(microsecond=0).isoformat(" "),
              "vm_clock_ns": int(clock.now()), "icount": int(st[S.ICOUNT]),
              "fingerprint": fingerprint(pc), "state": state, "sections": sections}
    raw = json.dumps(header, separators=(",", ":")).encode()
    return MAGIC + struct.pack("<II", FORMAT_VERSION, len(raw)) + raw + b"".join(body)


def save(pc, loop, name: str) -> str:
    """savevm NAME: write the snapshot file (replacing one of that name); returns its path."""
    path = snapshot_path(pc, name)
    data = encode(pc, loop, name)
    directory = os.path.dirname(path)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        os.makedirs(directory, exist_ok=True)
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise SnapshotError(f"cannot write snapshot '{name}' to {directory}: {exc.strerror or exc}") from None
    return path


# -- load ---------------------------------------------------------------------------------------------
def read_header(path: str, fh=None) -> tuple[dict, int]:
    """The header of a snapshot file and where its sections start; SnapshotError if it is not one."""
    try:
        own = fh is None
        fh = open(path, "rb") if own else fh  # noqa: SIM115
        try:
            head = fh.read(16)
            if len(head) < 16 or head[:8] != MAGIC:
                raise SnapshotError(f"{path}: not a pyemu snapshot")
            version, size = struct.unpack("<II", head[8:])
            if version != FORMAT_VERSION:
                raise SnapshotError(f"{path}: snapshot format version {version} (this pyemu reads "
                                    f"version {FORMAT_VERSION})")
            if size > MAX_HEADER:
                raise SnapshotError(f"{path}: damaged snapshot (header length {size})")
            raw = fh.read(size)
        finally:
            if own:
                fh.close()
    except FileNotFoundError:
        raise SnapshotError(f"{path}: not found") from None
    except OSError as exc:
        raise SnapshotError(f"{path}: {exc.strerror or exc}") from None
    if len(raw) != size:
        raise SnapshotError(f"{path}: truncated snapshot (header)")
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        raise SnapshotError(f"{path}: damaged snapshot (header is not JSON)") from None
    if not isinstance(header, dict) or not all(k in header for k in ("fingerprint", "state", "sections")):
        raise SnapshotError(f"{path}: damaged snapshot (header fields missing)")
    return header, 16 + size


def decode(path: str) -> tuple[dict, _Reader]:
    """Read and check a whole snapshot file: its header and its sections."""
    try:
        with open(path, "rb") as fh:
            header, start = read_header(path, fh)
            body = fh.read()
    except OSError as exc:
        raise SnapshotError(f"{path}: {exc.strerror or exc}") from None
    blobs = []
    try:
        for offset, zlen, rawlen, crc in header["sections"]:
            if offset < 0 or offset + zlen > len(body):
                raise SnapshotError(f"{path}: truncated snapshot")
            data = zlib.decompress(body[offset: offset + zlen], bufsize=max(1, rawlen))
            if len(data) != rawlen or zlib.crc32(data) != crc:
                raise SnapshotError(f"{path}: damaged snapshot (section checksum)")
            blobs.append(data)
    except (TypeError, ValueError, zlib.error):
        raise SnapshotError(f"{path}: damaged snapshot (sections)") from None
    return header, _Reader(blobs)


def restore(pc, loop, path: str, name: str, decoded: tuple | None = None) -> None:
    """loadvm: put the machine in the state the file holds. Everything is decoded and checked
    before the machine changes, so a bad file leaves it as it was."""
    header, r = decoded if decoded is not None else decode(path)
    saved_fp, here = header["fingerprint"], fingerprint(pc)
    if not isinstance(saved_fp, dict):
        raise SnapshotError(f"{path}: damaged snapshot (fingerprint)")
    for key in here:
        if saved_fp.get(key) != here[key]:
            raise SnapshotError(f"snapshot '{name}' does not fit this machine: "
                                + _describe_mismatch(key, saved_fp.get(key), here[key]))
    try:
        plan = _prepare(pc, header["state"], r)
    except SnapshotError as exc:
        raise SnapshotError(f"{path}: {exc}") from None
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise SnapshotError(f"{path}: damaged snapshot ({type(exc).__name__}: {exc})") from None
    try:
        _apply(pc, loop, plan)
    except Exception as exc:  # noqa: BLE001 - half restored: reset rather than run a chimera
        if os.environ.get("PYEMU_DEBUG"):
            raise
        pc.reset()
        raise SnapshotError(f"snapshot '{name}' could not be applied ({type(exc).__name__}: {exc}); "
                            "the machine was reset") from None


def _prepare(pc, s: dict, r: _Reader) -> dict:
    """Decode and check the saved state against the machine; nothing changes yet."""
    core, clock = pc.core, pc.clock
    cpu = r.tree(s["cpu"])
    if not isinstance(cpu, np.ndarray) or cpu.shape != core.st.shape or cpu.dtype != core.st.dtype:
        raise SnapshotError("damaged snapshot (CPU state)")
    pmap = r.tree(s["pmap"])
    if not isinstance(pmap, np.ndarray) or pmap.shape != core.phys.pmap.shape:
        raise SnapshotError("damaged snapshot (page map)")
    ram = s["ram"]
    n = core.mem.size // PAGE
    pages = np.frombuffer(r.blob(ram["pages"]), dtype=np.uint32)
    data = np.frombuffer(r.blob(ram["data"]), dtype=np.uint8)
    if ram.get("count") != n or data.size != pages.size * PAGE or (pages.size and int(pages.max()) >= n):
        raise SnapshotError("damaged snapshot (RAM pages)")
    slots = dict(_drive_slots(pc))
    for slot, saved in s["disks"].items():
        if slot not in slots:
            raise SnapshotError(f"damaged snapshot (drive {slot})")
        _check_disk(slot, slots[slot], saved)
    c = s["clock"]
    timers = []
    for i, tname, deadline in c["timers"]:
        if not 0 <= i < len(clock.timers) or clock.timers[i].name != tname:
            raise SnapshotError(f"damaged snapshot (timer {tname})")
        timers.append((clock.timers[i], int(deadline)))
    devices = {key: r.tree(s["devices"][key]) for key in _named_devices(pc)}
    bios = None if pc.bios is None or s["bios"] is None else {f: r.tree(s["bios"][f]) for f in BIOS_FIELDS}
    return {"cpu": cpu, "pmap": pmap, "pages": pages, "data": data, "clock": (int(c["ns"]), int(c["instructions"])),
            "timers": timers, "devices": devices, "bios": bios, "machine": s["machine"],
            "disks": [(slot, slots[slot], saved) for slot, saved in s["disks"].items()], "r": r,
            "retired": int(s["retired"])}


def _apply(pc, loop, p: dict) -> None:
    core, clock, st = pc.core, pc.clock, pc.core.st
    clock.set_now(*p["clock"])  # first: the devices' load_state read the clock
    if loop is not None and loop._frozen_clock is not None:
        loop._frozen_clock = p["clock"][0]
    keep = {i: int(st[i]) for i in HOST_SLOTS}
    for key, dev in _named_devices(pc).items():
        dev.load_state(p["devices"][key])
    n = core.mem.size // PAGE
    pages = core.mem[: n * PAGE].reshape(n, PAGE)  # after the VGA, whose window is RAM
    pages[:] = 0
    pages[p["pages"]] = p["data"].reshape(-1, PAGE)
    core.phys.pmap[:] = p["pmap"]  # after the devices, whose load_state remapped pages their own way
    st[:] = p["cpu"]  # after the devices, whose callbacks (A20, INTR) write to it
    for i, v in keep.items():
        st[i] = v
    if st[S.TSC_HOST_FN]:
        # saved with the TSC on the host's clock (emu/tsc.py): TSC = guest ns + TSC_OFFSET. The
        # host-clock slots belong to the process that saved it; restore the TSC as a counted one,
        # whose value is the saved TSC, and let the main loop put it on this host's clock again.
        tsc = p["clock"][0] + int(st[S.TSC_OFFSET])
        st[S.TSC_HOST_FN] = st[S.TSC_HOST_CLOCK] = st[S.TSC_HOST_ORIGIN] = 0
        st[S.TSC_OFFSET] = tsc - tsc_value(int(st[S.ICOUNT]), 0, int(st[S.TSC_RATE]))
    clock.rearm(p["timers"])  # the saved deadlines in the saved order, over what load_state armed
    if p["bios"] is not None:
        for f, v in p["bios"].items():
            setattr(pc.bios, f, v)
    pc.reset_requested = bool(p["machine"]["reset_requested"])
    pc.reset_cause = str(p["machine"]["reset_cause"])
    for slot, img, saved in p["disks"]:
        _load_disk(p["r"], slot, img, saved)
    core.flush_blocks()  # translated code and compiled tier-1 functions belong to the old memory
    core.flush_tlb()
    if loop is not None:
        loop.retired = p["retired"]
        loop.state_loaded = True  # a running main loop re-reads ICOUNT and re-anchors the TSC


def load(pc, loop, name: str, decoded: tuple | None = None) -> None:
    """loadvm NAME (`decoded`: what precheck returned for it)."""
    if decoded is not None:
        path, header, reader = decoded
        restore(pc, loop, path, name, (header, reader))
        return
    path = snapshot_path(pc, name)
    if not os.path.exists(path):
        raise SnapshotError(f"Snapshot '{name}' does not exist")
    restore(pc, loop, path, name)


def delete(pc, name: str) -> None:
    """delvm NAME."""
    path = snapshot_path(pc, name)
    try:
        os.unlink(path)
    except FileNotFoundError:
        raise SnapshotError(f"Snapshot '{name}' does not exist") from None
    except OSError as exc:
        raise SnapshotError(f"cannot delete snapshot '{name}': {exc.strerror or exc}") from None


def listing(pc) -> list[dict]:
    """The snapshots in the machine's directory: name, size, date, vm_clock_ns, icount (by date);
    files that are not snapshots are left out."""
    directory = snapshot_dir(pc)
    try:
        names = sorted(n for n in os.listdir(directory) if n.endswith(SUFFIX))
    except OSError:
        return []
    out = []
    for fname in names:
        path = os.path.join(directory, fname)
        try:
            header, _ = read_header(path)
            out.append({"name": fname[: -len(SUFFIX)], "size": os.path.getsize(path),
                        "date": str(header.get("date", "")), "vm_clock_ns": int(header.get("vm_clock_ns", 0)),
                        "icount": int(header.get("icount", 0))})
        except (SnapshotError, OSError, TypeError, ValueError):
            continue
    out.sort(key=lambda d: (d["date"], d["name"]))
    return out


def info_text(pc) -> str:
    """`info snapshots`, in QEMU's layout."""
    snaps = listing(pc)
    if not snaps:
        return "There is no snapshot available.\n"
    lines = ["List of snapshots present on all disks:",
             f"{'ID':<9} {'TAG':<17} {'VM SIZE':>9} {'DATE':>19} {'VM CLOCK':>15} {'ICOUNT':>11}"]
    for i, d in enumerate(snaps, 1):
        ns = d["vm_clock_ns"]
        secs, frac = divmod(ns, 1_000_000_000)
        clock = f"{secs // 3600:02d}:{secs // 60 % 60:02d}:{secs % 60:02d}.{frac // 1_000_000:03d}"
        lines.append(f"{i:<9} {d['name']:<17} {_size(d['size']):>9} {d['date']:>19} {clock:>15} "
                     f"{d['icount']:>11}")
    return "\n".join(lines) + "\n"


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1024
    return str(n)  # pragma: no cover
