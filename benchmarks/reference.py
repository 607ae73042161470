"""Python references of the guest workloads (benchmarks/guests/*.c): the checksum each prints.

    python -m benchmarks.reference [--quick] [--write]

`--write` stores both scales' checksums in benchmarks/guests/expected.json, which the suite checks
every emulator's output against (the full-scale references take a minute in Python).
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
import zlib
from math import sqrt
from pathlib import Path

import numpy as np

EXPECTED = Path(__file__).resolve().parent / "guests" / "expected.json"
M = 0xFFFFFFFF
FNV_BASIS = 2166136261
FNV_PRIME = 16777619


def scale(full: int, quick: int, q: bool) -> int:
    return quick if q else full


class Lcg:
    def __init__(self, seed: int) -> None:
        self.s = seed

    def __call__(self) -> int:
        self.s = (self.s * 1103515245 + 12345) & M
        return self.s


def fnv(h: int, words) -> int:
    for w in words:
        h = ((h ^ int(w)) * FNV_PRIME) & M
    return h


def null(q: bool) -> int:
    return 0


def crc32(q: bool) -> int:
    lcg = Lcg(1)
    buf = bytes((lcg() >> 16) & 0xFF for _ in range(65536))
    crc = 0
    for _ in range(scale(640, 64, q)):
        crc = zlib.crc32(buf, crc)
    return crc


def sort(q: bool) -> int:
    lcg, h = Lcg(42), FNV_BASIS
    for _ in range(scale(150, 15, q)):
        h = fnv(h, sorted(lcg() for _ in range(20000)))
    return h


def matmul(q: bool) -> int:
    n, lcg, h = 64, Lcg(7), FNV_BASIS
    for _ in range(scale(100, 10, q)):
        a = np.array([lcg() >> 8 for _ in range(n * n)], dtype=np.int64).reshape(n, n)
        b = np.array([lcg() >> 8 for _ in range(n * n)], dtype=np.int64).reshape(n, n)
        h = fnv(h, ((a @ b) & M).ravel().tolist())  # entries < 2^24: the int64 sums are exact
    return h


def memops(q: bool) -> int:
    size, h = 32768, FNV_BASIS
    i = np.arange(size, dtype=np.int64)
    for r in range(scale(700, 70, q)):
        src = (i * 31 + r) & 0xFF
        dst = src.copy()  # rep stosd's fill is overwritten by rep movsd
        dst[3:3 + size - 64] = src[1:1 + size - 64]  # rep movsb, unaligned
        h = ((h ^ (int((dst ^ (i & 0xFF)).sum()) & M)) * FNV_PRIME) & M
    return h


def interp(q: bool) -> int:
    n = scale(2000000, 200000, q)
    x, y = 12345, 0
    for _ in range(n):
        x = (x * 1103515245 + 12345) & M
        if x & 0x10000:
            y = (y + (x >> 3)) & M
        else:
            y ^= x
            y = ((y << 1) | (y >> 31)) & M
    return y ^ n


def tree(q: bool) -> int:
    depth = 16
    nodes = (1 << depth) - 1
    lcg, h = Lcg(99), FNV_BASIS
    val = np.array([lcg() for _ in range(nodes)], dtype=np.uint64)
    for r in range(scale(100, 10, q)):
        below = np.full(1 << depth, depth, dtype=np.uint64)  # what the missing children return
        for level in range(depth - 1, -1, -1):  # bottom-up, a level at a time (heap order)
            lo = (1 << level) - 1
            v = val[lo:lo + (1 << level)]
            below = ((v + r) ^ (below[0::2] * 3 + below[1::2])) & M
        h = ((h ^ int(below[0])) * FNV_PRIME) & M
    return h


def fpu(q: bool) -> int:
    lcg = Lcg(5)

    def unit() -> float:
        return (lcg() >> 8) / 16777216.0

    bodies = []
    for _ in range(5):
        x, y, z = unit() * 10.0 - 5.0, unit() * 10.0 - 5.0, unit() * 10.0 - 5.0
        vx, vy, vz = unit() - 0.5, unit() - 0.5, unit() - 0.5
        bodies.append([x, y, z, vx, vy, vz, unit() + 0.5])
    dt = 0.001
    pairs = [(bodies[i], bodies[j]) for i in range(5) for j in range(i + 1, 5)]
    for _ in range(scale(50000, 5000, q)):
        for bi, bj in pairs:
            dx, dy, dz = bi[0] - bj[0], bi[1] - bj[1], bi[2] - bj[2]
            d2 = dx * dx + dy * dy + dz * dz + 0.01
            mag = dt / (d2 * sqrt(d2))
            mi, mj = bi[6] * mag, bj[6] * mag
            bi[3] -= dx * mj
            bi[4] -= dy * mj
            bi[5] -= dz * mj
            bj[3] += dx * mi
            bj[4] += dy * mi
            bj[5] += dz * mi
        for b in bodies:
            b[0] += dt * b[3]
            b[1] += dt * b[4]
            b[2] += dt * b[5]
    return fnv(FNV_BASIS, struct.unpack("<60I", b"".join(struct.pack("<6d", *b[:6]) for b in bodies)))


def smc(q: bool) -> int:
    lcg, h = Lcg(3), 0
    for _ in range(scale(250000, 25000, q)):
        imm = lcg()
        for _ in range(64):
            h = (h + imm) & M
            h = ((h << 3) | (h >> 29)) & M
    return h


REFERENCES = {f.__name__: f for f in (null, crc32, sort, matmul, memops, interp, tree, fpu, smc)}


def checksum(name: str, quick: bool) -> str:
    return f"{REFERENCES[name](quick):08x}"


def expected() -> dict[str, dict[str, str]]:
    """The stored checksums: {workload: {"quick": hex, "full": hex}}."""
    return json.loads(EXPECTED.read_text()) if EXPECTED.exists() else {}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--write", action="store_true", help="store both scales in guests/expected.json")
    a = ap.parse_args(argv)
    if a.write:
        out = {name: {"quick": checksum(name, True), "full": checksum(name, False)} for name in REFERENCES}
        EXPECTED.write_text(json.dumps(out, indent=1) + "\n")
        print(json.dumps(out, indent=1))
        return 0
    for name in REFERENCES:
        print(f"{name:8} CRC {checksum(name, a.quick)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
