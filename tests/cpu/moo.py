"""Reader for the MOO test-file format of the SingleStepTests CPU suites (MOO 1.1).

The format (MOO-FORMAT.md beside the data): a gzip'd stream of little-endian chunks, each a 4-byte
ASCII id, a u32 payload length and the payload. The file is a `MOO ` header chunk (major, minor,
2 reserved bytes, u32 test count, 4-byte CPU id), a `META` chunk, an optional top-level
`RMSK`/`RM32`, then one `TEST` chunk per test. A `TEST` payload is a u32 index followed by
subchunks: `NAME`, `BYTS`, `INIT`, `FINA`, `CYCL`, `EXCP`, `HASH` (and others). `INIT`/`FINA` hold
`REGS` (u16 presence mask, then one u16 per set bit in the order ax bx cx dx cs ss ds es sp bp si
di ip flags), `RAM ` (u32 count, then u32 address + u8 byte each), optionally `QUEU`, `RMSK`,
`RG32`, `RM32`, `EA32`. A conforming reader advances by the chunk length and skips chunks it does
not know; this one does both (the 286 files carry an undocumented `GMET` chunk, for instance).

Only the fields the harness needs are decoded; `CYCL` (bus cycles) is skipped unless asked for.
"""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass, field
from pathlib import Path

REG_NAMES = ("ax", "bx", "cx", "dx", "cs", "ss", "ds", "es", "sp", "bp", "si", "di", "ip", "flags")
REG32_NAMES = ("cr0", "cr3", "eax", "ebx", "ecx", "edx", "esi", "edi", "ebp", "esp", "cs", "ds", "es",
               "fs", "gs", "ss", "eip", "eflags", "dr6", "dr7")

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_CHUNK = struct.Struct("<4sI")
_RAM_ENTRY = struct.Struct("<IB")
_EXCP = struct.Struct("<BI")
_META = struct.Struct("<BBBI8sIQB3s")
_CYCLE = struct.Struct("<BIBBBBHBBBB")


class MooError(ValueError):
    """The file does not follow the MOO format."""


@dataclass(slots=True)
class MooMeta:
    major: int
    minor: int
    cpu_type: int
    opcode: int
    mnemonic: str
    test_count: int
    seed: int
    cpu_mode: int


@dataclass(slots=True)
class MooState:
    """An `INIT` or `FINA` snapshot. `regs` has only the registers present in the chunk."""

    regs: dict[str, int] = field(default_factory=dict)
    ram: list[tuple[int, int]] = field(default_factory=list)
    queue: bytes = b""
    regs_mask: dict[str, int] | None = None  # from an `RMSK`, when the state carries one
    regs32: dict[str, int] | None = None  # from an `RG32` (386 files)


@dataclass(slots=True)
class MooTest:
    idx: int
    name: str = ""
    bytes: bytes = b""
    init: MooState = field(default_factory=MooState)
    final: MooState = field(default_factory=MooState)
    exception: tuple[int, int] | None = None  # (vector, address of the FLAGS word pushed)
    hash: str = ""  # SHA-1 as lower-case hex
    cycles: list[tuple[int, ...]] | None = None  # only with parse(..., cycles=True)


@dataclass(slots=True)
class MooFile:
    major: int
    minor: int
    test_count: int
    cpu_id: str
    meta: MooMeta | None
    tests: list[MooTest]
    regs_mask: dict[str, int] | None = None  # a top-level `RMSK`


def _chunks(buf: bytes | memoryview, start: int, end: int):
    """Yield (id, payload_start, payload_end) for the chunks in buf[start:end]."""
    pos = start
    unpack = _CHUNK.unpack_from
    while pos < end:
        if pos + 8 > end:
            raise MooError(f"truncated chunk header at {pos}")
        cid, length = unpack(buf, pos)
        body = pos + 8
        nxt = body + length
        if nxt > end:
            raise MooError(f"chunk {cid!r} at {pos} runs past its container ({nxt} > {end})")
        yield cid, body, nxt
        pos = nxt


def _masked_values(buf, pos: int, end: int, names: tuple[str, ...], wide: bool) -> dict[str, int]:
    if wide:
        (mask,) = _U32.unpack_from(buf, pos)
        pos += 4
        size, unpack = 4, _U32.unpack_from
    else:
        (mask,) = _U16.unpack_from(buf, pos)
        pos += 2
        size, unpack = 2, _U16.unpack_from
    out: dict[str, int] = {}
    for bit, name in enumerate(names):
        if mask >> bit & 1:
            if pos + size > end:
                raise MooError("register chunk shorter than its mask says")
            out[name] = unpack(buf, pos)[0]
            pos += size
    if mask >> len(names):
        raise MooError(f"register mask {mask:#x} has bits beyond {names[-1]}")
    return out


def _state(buf, start: int, end: int) -> MooState:
    st = MooState()
    for cid, a, b in _chunks(buf, start, end):
        if cid == b"REGS":
            st.regs = _masked_values(buf, a, b, REG_NAMES, False)
        elif cid == b"RAM ":
            (n,) = _U32.unpack_from(buf, a)
            if a + 4 + 5 * n > b:
                raise MooError("RAM chunk shorter than its count")
            st.ram = list(_RAM_ENTRY.iter_unpack(bytes(buf[a + 4:a + 4 + 5 * n])))
        elif cid == b"QUEU":
            (n,) = _U32.unpack_from(buf, a)
            st.queue = bytes(buf[a + 4:a + 4 + n])
        elif cid == b"RMSK":
            st.regs_mask = _masked_values(buf, a, b, REG_NAMES, False)
        elif cid == b"RG32":
            st.regs32 = _masked_values(buf, a, b, REG32_NAMES, True)
        # RM32, EA32 and anything newer: skipped by length
    return st


def _lp_bytes(buf, a: int, b: int) -> bytes:
    """A u32-length-prefixed byte string (NAME, BYTS)."""
    (n,) = _U32.unpack_from(buf, a)
    if a + 4 + n > b:
        raise MooError("length-prefixed field runs past its chunk")
    return bytes(buf[a + 4:a + 4 + n])


def _test(buf, a: int, b: int, cycles: bool) -> MooTest:
    (idx,) = _U32.unpack_from(buf, a)
    t = MooTest(idx)
    for cid, c, d in _chunks(buf, a + 4, b):
        if cid == b"NAME":
            t.name = _lp_bytes(buf, c, d).decode("ascii", "replace")
        elif cid == b"BYTS":
            t.bytes = _lp_bytes(buf, c, d)
        elif cid == b"INIT":
            t.init = _state(buf, c, d)
        elif cid == b"FINA":
            t.final = _state(buf, c, d)
        elif cid == b"EXCP":
            t.exception = _EXCP.unpack_from(buf, c)
        elif cid == b"HASH":
            t.hash = bytes(buf[c:c + 20]).hex()
        elif cid == b"CYCL" and cycles:
            (n,) = _U32.unpack_from(buf, c)
            t.cycles = list(_CYCLE.iter_unpack(bytes(buf[c + 4:c + 4 + 15 * n])))
        # CYCL (by default), IDX , GMET and unknown chunks: skipped by length
    return t


def parse_bytes(data: bytes, *, cycles: bool = False) -> MooFile:
    """Parse an uncompressed MOO image."""
    buf = memoryview(data)
    end = len(buf)
    it = _chunks(buf, 0, end)
    try:
        cid, a, b = next(it)
    except StopIteration:
        raise MooError("empty file") from None
    if cid != b"MOO ":
        raise MooError(f"not a MOO file (first chunk {cid!r})")
    if b - a < 12:
        raise MooError("MOO header shorter than 12 bytes")
    major, minor = buf[a], buf[a + 1]
    (count,) = _U32.unpack_from(buf, a + 4)
    cpu_id = bytes(buf[a + 8:a + 12]).decode("ascii", "replace")
    out = MooFile(major, minor, count, cpu_id, None, [])
    for cid, a, b in it:
        if cid == b"TEST":
            out.tests.append(_test(buf, a, b, cycles))
        elif cid == b"META":
            f = _META.unpack_from(buf, a)
            out.meta = MooMeta(f[0], f[1], f[2], f[3], f[4].decode("ascii", "replace").rstrip(),
                               f[5], f[6], f[7])
        elif cid == b"RMSK":
            out.regs_mask = _masked_values(buf, a, b, REG_NAMES, False)
        # anything else at the top level: skipped by length
    if len(out.tests) != count:
        raise MooError(f"header says {count} tests, file holds {len(out.tests)}")
    return out


def parse_file(path: str | Path, *, cycles: bool = False) -> MooFile:
    """Parse a MOO file, gzip'd (`.gz` or gzip magic) or plain."""
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return parse_bytes(raw, cycles=cycles)
