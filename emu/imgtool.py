"""`pyemu img`: qemu-img's create, info, check and convert verbs for raw and qcow2 images.

    pyemu img create [-f raw|qcow2] [-o compat=0.10|1.1,cluster_size=N] [-b BACKING [-F fmt]] FILE [SIZE]
    pyemu img info [-f fmt] FILE
    pyemu img check [-f fmt] FILE        exit 0 clean, 2 corruptions, 3 leaked clusters only
    pyemu img convert [-f fmt] -O raw|qcow2 [-o ...] IN OUT

Sizes take qemu-img's suffixes (k/K, M, G, T: powers of 1024; none: bytes). Errors are one line
`pyemu: error: ...` with status 1, as for `pyemu boot`.
"""

from __future__ import annotations

import argparse
import math
import os
import struct
import sys

from emu.devices.diskimage import SECTOR_SIZE, DiskError
from emu.devices.imageformat import FORMATS, open_image, probe_format
from emu.devices.qcow2 import (
    INCOMPAT_CORRUPT,
    OFFSET_MASK,
    OFLAG_COMPRESSED,
    OFLAG_COPIED,
    Header,
    Qcow2Image,
    bitmap_ranges,
    create,
    read_header,
)

EXIT_ERROR = 1
CHECK_CORRUPT = 2
CHECK_LEAKS = 3
CHECK_UNSUPPORTED = 63

_SUFFIX = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


class ImgError(Exception):
    """One line for `pyemu: error: ...`."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # noqa: D401 - argparse's name
        raise ImgError(message)


def parse_size(text: str) -> int:
    t = text.strip()
    num, suf = t, ""
    if t and t[-1].lower() in _SUFFIX:
        num, suf = t[:-1], t[-1].lower()
    try:
        value = float(num) if "." in num else int(num)
    except ValueError:
        raise ImgError(f"invalid image size {text!r} (e.g. 64M, 2G, 1048576)") from None
    size = int(value * _SUFFIX[suf])
    if size < 0:
        raise ImgError(f"invalid image size {text!r}")
    return size


def size_to_str(value: float) -> str:
    """qemu's human size: three significant digits, the unit switching at 1000 of the smaller one."""
    units = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
    i = 0
    if value > 0:
        _, exp = math.frexp(value / (1000.0 / 1024.0))
        i = max(0, min(len(units) - 1, (exp - 1) // 10))
    return f"{value / (1 << (10 * i)):0.3g} {units[i]}"


def _options(text: str | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in (text or "").split(","):
        if not part:
            continue
        key, eq, val = part.partition("=")
        if not eq:
            raise ImgError(f"-o {text}: expected key=value")
        out[key] = val
    return out


def _qcow2_opts(opts: dict[str, str]) -> dict:
    known = {"compat", "cluster_size"}
    bad = set(opts) - known
    if bad:
        raise ImgError(f"-o: unknown option {sorted(bad)[0]!r} (pyemu has: compat, cluster_size)")
    out: dict = {}
    if "compat" in opts:
        out["compat"] = {"v2": "0.10", "v3": "1.1"}.get(opts["compat"], opts["compat"])
    if "cluster_size" in opts:
        out["cluster_size"] = parse_size(opts["cluster_size"])
    return out


def _format(path: str, fmt: str | None) -> str:
    if fmt is not None and fmt not in FORMATS:
        raise ImgError(f"unknown format '{fmt}' (pyemu has: raw, qcow2)")
    if fmt is None:
        if not os.path.exists(path):
            raise ImgError(f"could not open '{path}': No such file or directory")
        fmt = probe_format(path)
    return fmt


# -- create --------------------------------------------------------------------------------------

def cmd_create(args) -> int:
    fmt = args.f or "raw"
    if fmt not in FORMATS:
        raise ImgError(f"unknown format '{fmt}' (pyemu has: raw, qcow2)")
    opts = _options(args.o)
    if fmt == "raw":
        if opts:
            raise ImgError("-o: raw images have no options")
        if args.b:
            raise ImgError("raw images have no backing file (use -f qcow2)")
    qopts = _qcow2_opts(opts) if fmt == "qcow2" else {}
    backing_fmt = ""
    size = parse_size(args.size) if args.size is not None else None
    if args.b:
        bpath = args.b if os.path.isabs(args.b) else os.path.join(os.path.dirname(os.path.abspath(args.file)), args.b)
        if not os.path.exists(bpath):
            raise ImgError(f"could not open backing file '{args.b}': No such file or directory")
        backing_fmt = _format(bpath, args.F)
        if size is None:
            try:
                with open_image(bpath, backing_fmt, readonly=True) as img:
                    size = img.size
            except DiskError as e:
                raise ImgError(str(e)) from None
    elif args.F:
        raise ImgError("-F needs -b")
    if size is None:
        raise ImgError("create: a size is needed (e.g. 64M)")
    if size % SECTOR_SIZE:
        size = -(-size // SECTOR_SIZE) * SECTOR_SIZE  # qemu-img rounds up to whole sectors
    line = f"Formatting '{args.file}', fmt={fmt}"
    if fmt == "qcow2":
        line += f" cluster_size={qopts.get('cluster_size', 65536)}"
    line += f" size={size}"
    if args.b:
        line += f" backing_file={args.b} backing_fmt={backing_fmt}"
    if fmt == "qcow2" and qopts.get("compat") == "0.10":
        line += " compat=0.10"
    print(line)
    if fmt == "raw":
        try:
            with open(args.file, "wb") as fh:
                fh.truncate(size)
        except OSError as e:
            raise ImgError(f"cannot create '{args.file}': {e.strerror}") from None
        return 0
    try:
        create(args.file, size, backing_file=args.b or "", backing_format=backing_fmt, **qopts)
    except DiskError as e:
        raise ImgError(str(e)) from None
    return 0


# -- info ----------------------------------------------------------------------------------------

def cmd_info(args) -> int:
    fmt = _format(args.file, args.f)
    try:
        st = os.stat(args.file)
    except OSError as e:
        raise ImgError(f"could not open '{args.file}': {e.strerror}") from None
    out = [f"image: {args.file}", f"file format: {fmt}"]
    if fmt == "raw":
        size = st.st_size
        h = None
    else:
        h = _read_header(args.file)
        size = h.size
    out.append(f"virtual size: {size_to_str(size)} ({size} bytes)")
    out.append(f"disk size: {size_to_str(st.st_blocks * 512)}")
    if h is not None:
        out.append(f"cluster_size: {h.cluster_size}")
        if h.backing_file:
            actual = os.path.join(os.path.dirname(args.file), h.backing_file)  # as qemu-img names it
            out.append(f"backing file: {h.backing_file}" + (f" (actual path: {actual})" if actual != h.backing_file
                                                             else ""))
            if h.backing_format:
                out.append(f"backing file format: {h.backing_format}")
        out.append("Format specific information:")
        out.append(f"    compat: {'1.1' if h.version == 3 else '0.10'}")
        out.append(f"    compression type: {'zlib' if h.compression_type == 0 else 'zstd'}")
        if h.version == 3:
            out.append(f"    lazy refcounts: {'true' if h.compatible & 1 else 'false'}")
        out.append(f"    refcount bits: {1 << h.refcount_order}")
        if h.version == 3:
            out.append(f"    corrupt: {'true' if h.incompatible & INCOMPAT_CORRUPT else 'false'}")
            out.append(f"    extended l2: {'true' if h.incompatible & (1 << 4) else 'false'}")
    print("\n".join(out))
    return 0


def _read_header(path: str) -> Header:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as e:
        raise ImgError(f"could not open '{path}': {e.strerror}") from None
    try:
        return read_header(fd, path)
    except DiskError as e:
        raise ImgError(str(e)) from None
    finally:
        os.close(fd)


# -- check ---------------------------------------------------------------------------------------

class CheckResult:
    def __init__(self):
        self.corruptions = 0
        self.leaks = 0
        self.messages: list[str] = []  # qemu-img prints these on stderr
        self.allocated = self.fragmented = self.compressed = self.total = 0
        self.image_end = 0


def check_qcow2(path: str) -> CheckResult:
    """Count every reference to every host cluster and compare with the stored refcounts."""
    from emu.devices.diskimage import DiskImage

    res = CheckResult()
    file = DiskImage.open(path, readonly=True)
    try:
        h = read_header(file.fd, path)
        img = Qcow2Image(file, h, snapshot=False, backing=None)
        img.load_refcount_table()
        cs = h.cluster_size
        file_size = os.fstat(file.fd).st_size
        nclusters = -(-file_size // cs)
        refs: dict[int, int] = {}

        def err(msg: str) -> None:
            res.corruptions += 1
            res.messages.append(msg)

        def count(off: int, length: int) -> None:
            if length <= 0:
                return
            first, last = off // cs, (off + length - 1) // cs
            if off + length - file_size >= cs:
                err(f"ERROR: counting reference for region exceeding the end of the file by one cluster or "
                    f"more: offset {off:#x} size {length:#x}")
                return
            for hc in range(first, last + 1):
                refs[hc] = refs.get(hc, 0) + 1

        def walk_l1(l1_off: int, l1_size: int, active: bool) -> None:
            count(l1_off, l1_size * 8)
            raw = os.pread(file.fd, l1_size * 8, l1_off)
            raw += bytes(l1_size * 8 - len(raw))
            next_off = 0
            for l1e in struct.unpack(f">{l1_size}Q", raw):
                l2_off = l1e & OFFSET_MASK
                if not l2_off:
                    continue
                if l2_off % cs:
                    err(f"ERROR l2_offset={l2_off:x}: Table is not cluster aligned; L1 entry corrupted")
                    continue
                count(l2_off, cs)
                l2raw = os.pread(file.fd, cs, l2_off)
                l2raw += bytes(cs - len(l2raw))
                for e in struct.unpack(f">{cs // 8}Q", l2raw):
                    if e & OFLAG_COMPRESSED:
                        if e & OFLAG_COPIED:
                            err(f"ERROR: coffset={e & img.coffset_mask:#x}: copied flag must never be set for "
                                "compressed clusters")
                        host = e & img.coffset_mask
                        nsec = ((e >> img.csize_shift) & img.csize_mask) + 1
                        end = (host & ~511) + nsec * 512
                        count(host, end - host)
                        if active:
                            res.allocated += 1
                            res.compressed += 1
                            res.fragmented += 1
                        continue
                    host = e & OFFSET_MASK
                    if not host:
                        continue
                    if host % cs:
                        err(f"ERROR offset={host:x}: Cluster is not properly aligned; L2 entry corrupted.")
                        continue
                    count(host, cs)
                    if active:
                        res.allocated += 1
                        if next_off and next_off != host:
                            res.fragmented += 1
                        next_off = host + cs

        walk_l1(h.l1_table_offset, h.l1_size, True)
        count(0, cs)  # the header
        count(h.refcount_table_offset, h.refcount_table_clusters * cs)
        for bi, off in enumerate(img.rc_table):
            off &= OFFSET_MASK
            if not off:
                continue
            if off % cs:
                err(f"ERROR refcount block {bi} is not cluster aligned; refcount table entry corrupted")
                continue
            if off // cs >= nclusters:
                err(f"ERROR refcount block {bi} is outside image")
                continue
            count(off, cs)
        # internal snapshots: the table, each snapshot's L1 and what it maps
        pos = h.snapshots_offset
        for _ in range(h.nb_snapshots):
            ent = os.pread(file.fd, 40, pos)
            if len(ent) < 40:
                err("ERROR snapshot table is truncated")
                break
            s_l1_off, s_l1_size, id_len, name_len = struct.unpack_from(">QIHH", ent, 0)
            extra = struct.unpack_from(">I", ent, 36)[0]
            walk_l1(s_l1_off, s_l1_size, False)
            pos += (40 + extra + id_len + name_len + 7) & ~7
        if h.nb_snapshots:
            count(h.snapshots_offset, pos - h.snapshots_offset)
        if h.version >= 3 and h.autoclear & 1:  # bitmaps count only while their autoclear bit is set
            for off, length in bitmap_ranges(file.fd, h, os.pread(file.fd, cs, 0)):
                count(off, length)
        # compare
        last = max([nclusters - 1, *refs.keys()]) if refs or nclusters else -1
        for hc in range(last + 1):
            stored = img.refcount(hc)
            ref = refs.get(hc, 0)
            if stored < ref:
                err(f"ERROR cluster {hc} refcount={stored} reference={ref}")
            elif stored > ref:
                res.leaks += 1
                res.messages.append(f"Leaked cluster {hc} refcount={stored} reference={ref}")
            if stored:
                res.image_end = (hc + 1) * cs
        # the COPIED flags of the active tables: set exactly when the refcount is 1
        raw = os.pread(file.fd, h.l1_size * 8, h.l1_table_offset)
        raw += bytes(h.l1_size * 8 - len(raw))
        for i, l1e in enumerate(struct.unpack(f">{h.l1_size}Q", raw)):
            l2_off = l1e & OFFSET_MASK
            if not l2_off or l2_off % cs:
                continue
            rc = img.refcount(l2_off // cs)
            if (rc == 1) != bool(l1e & OFLAG_COPIED):
                err(f"ERROR OFLAG_COPIED L2 cluster: l1_index={i} l1_entry={l1e:x} refcount={rc}")
            l2raw = os.pread(file.fd, cs, l2_off)
            l2raw += bytes(cs - len(l2raw))
            for e in struct.unpack(f">{cs // 8}Q", l2raw):
                host = e & OFFSET_MASK
                if e & OFLAG_COMPRESSED or not host or host % cs:
                    continue
                rc = img.refcount(host // cs)
                if (rc == 1) != bool(e & OFLAG_COPIED):
                    err(f"ERROR OFLAG_COPIED data cluster: l2_entry={e:x} refcount={rc}")
        res.total = -(-h.size // cs)
    finally:
        file.close()
    return res


def cmd_check(args) -> int:
    fmt = _format(args.file, args.f)
    if fmt != "qcow2":
        raise ImgError(f"'{args.file}': this image format ({fmt}) does not support checks")
    _read_header(args.file)  # a readable qcow2 header, or one line
    try:
        res = check_qcow2(args.file)
    except (DiskError, OSError) as e:
        raise ImgError(f"check of '{args.file}' failed: {e}") from None
    for msg in res.messages:
        print(msg, file=sys.stderr)
    out = []
    if not res.corruptions and not res.leaks:
        out.append("No errors were found on the image.")
    if res.corruptions:
        out += ["", f"{res.corruptions} errors were found on the image.",
                "Data may be corrupted, or further writes to the image may corrupt it."]
    if res.leaks:
        out += ["", f"{res.leaks} leaked clusters were found on the image.",
                "This means waste of disk space, but no harm to data."]
    if res.total and res.allocated:
        alloc = res.allocated
        out.append(f"{alloc}/{res.total} = {alloc * 100 / res.total:.2f}% allocated, "
                   f"{(res.fragmented * 100 / alloc) if alloc else 0:.2f}% fragmented, "
                   f"{(res.compressed * 100 / alloc) if alloc else 0:.2f}% compressed clusters")
    out.append(f"Image end offset: {res.image_end}")
    print("\n".join(out))
    if res.corruptions:
        return CHECK_CORRUPT
    return CHECK_LEAKS if res.leaks else 0


# -- convert -------------------------------------------------------------------------------------

def cmd_convert(args) -> int:
    in_fmt = _format(args.input, args.f)
    out_fmt = args.O or "raw"
    if out_fmt not in FORMATS:
        raise ImgError(f"unknown output format '{out_fmt}' (pyemu has: raw, qcow2)")
    opts = _options(args.o)
    if out_fmt == "raw" and opts:
        raise ImgError("-o: raw images have no options")
    qopts = _qcow2_opts(opts) if out_fmt == "qcow2" else {}
    if os.path.exists(args.output) and os.path.samefile(args.input, args.output):
        raise ImgError("convert: the input and output are the same file")
    try:
        src = open_image(args.input, in_fmt, readonly=True)
    except DiskError as e:
        raise ImgError(str(e)) from None
    try:
        size = src.sectors * SECTOR_SIZE
        chunk = qopts.get("cluster_size", 65536)
        if out_fmt == "raw":
            try:
                fd = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            except OSError as e:
                raise ImgError(f"cannot create '{args.output}': {e.strerror}") from None
            try:
                os.ftruncate(fd, size)
                for off in range(0, size, chunk):
                    n = min(chunk, size - off)
                    data = src.read_sectors(off // SECTOR_SIZE, n // SECTOR_SIZE)
                    if data.count(0) != len(data):
                        os.pwrite(fd, data, off)
                os.fsync(fd)
            finally:
                os.close(fd)
            return 0
        create(args.output, size, **qopts)
        with Qcow2Image.open(args.output) as dst:
            dst.ordered_sync = False  # a new file: an interrupted convert is redone, not repaired
            for off in range(0, size, chunk):
                n = min(chunk, size - off)
                data = src.read_sectors(off // SECTOR_SIZE, n // SECTOR_SIZE)
                if data.count(0) != len(data):
                    dst.write_sectors(off // SECTOR_SIZE, data)
        return 0
    except DiskError as e:
        raise ImgError(str(e)) from None
    finally:
        src.close()


# -- dispatch ------------------------------------------------------------------------------------

def build_parser() -> _Parser:
    parser = _Parser(prog="pyemu img", description="create, inspect, check and convert disk images")
    sub = parser.add_subparsers(dest="verb", parser_class=_Parser)
    c = sub.add_parser("create", help="make an empty image")
    c.add_argument("-f", metavar="FMT", help="raw (default) or qcow2")
    c.add_argument("-o", metavar="OPTS", help="qcow2: compat=0.10|1.1,cluster_size=N")
    c.add_argument("-b", metavar="BACKING", help="backing file (qcow2), relative to FILE's directory")
    c.add_argument("-F", metavar="FMT", help="the backing file's format (probed when absent)")
    c.add_argument("file")
    c.add_argument("size", nargs="?")
    i = sub.add_parser("info", help="format, sizes, backing file")
    i.add_argument("-f", metavar="FMT")
    i.add_argument("file")
    k = sub.add_parser("check", help="check a qcow2 image's metadata (0 clean, 2 corrupt, 3 leaks)")
    k.add_argument("-f", metavar="FMT")
    k.add_argument("file")
    v = sub.add_parser("convert", help="copy an image into another format")
    v.add_argument("-f", metavar="FMT", help="the input's format (probed when absent)")
    v.add_argument("-O", metavar="FMT", help="the output's format: raw (default) or qcow2")
    v.add_argument("-o", metavar="OPTS", help="qcow2 output: compat=0.10|1.1,cluster_size=N")
    v.add_argument("input")
    v.add_argument("output")
    return parser


def main(argv: list[str]) -> int:
    try:
        args = build_parser().parse_args(argv)
        verbs = {"create": cmd_create, "info": cmd_info, "check": cmd_check, "convert": cmd_convert}
        if args.verb not in verbs:
            raise ImgError("a verb is needed: pyemu img create|info|check|convert ... (see pyemu img --help)")
        return verbs[args.verb](args)
    except ImgError as e:
        print(f"pyemu: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except DiskError as e:
        print(f"pyemu: error: {e}", file=sys.stderr)
        return EXIT_ERROR
