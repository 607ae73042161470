"""Build the benchmark guests: boot sector (nasm) + payload (freestanding C, gcc -m32, ld) per workload.

    python -m benchmarks.build [--quick] [--check-in]

Each image is the boot sector (benchmarks/guests/boot.asm, told how many sectors to load) followed
by the payload (start.asm, rt.c and the workload's C file linked flat at 0x10000). Built images go
to a cache directory keyed by a hash of the sources and the tools' versions; where nasm, gcc or ld
is missing, the images checked in under benchmarks/guests/img/ are used. Images are kept compact
(boot sector + payload) and padded to a 1.44 MB floppy when they are run. `--check-in` rebuilds the
checked-in images.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

GUESTS = Path(__file__).resolve().parent / "guests"
CHECKED_IN = GUESTS / "img"
FLOPPY_BYTES = 1474560
WORKLOADS = ("null", "crc32", "sort", "matmul", "memops", "interp", "tree", "fpu", "smc")
CFLAGS = ("-m32", "-march=i686", "-mno-sse", "-mno-mmx", "-ffreestanding", "-nostdlib", "-fno-pic", "-fno-pie",
          "-O2", "-fno-stack-protector", "-fno-asynchronous-unwind-tables", "-fno-tree-loop-distribute-patterns",
          "-fno-math-errno", "-fcf-protection=none", "-Wall")
TOOLS = ("nasm", "gcc", "ld")


class BuildError(RuntimeError):
    pass


def image_name(name: str, quick: bool) -> str:
    return f"{name}-quick.img" if quick else f"{name}.img"


def tools_present() -> bool:
    return all(shutil.which(t) for t in TOOLS)


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pyemu-bench"


def _run(args: list[str], cwd: Path) -> None:
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BuildError(f"{' '.join(args)} failed:\n{proc.stdout}{proc.stderr}")


def _tool_versions() -> str:
    out = []
    for tool in TOOLS:
        proc = subprocess.run([tool, "--version"] if tool != "nasm" else [tool, "-v"], capture_output=True, text=True)
        out.append((proc.stdout or proc.stderr).splitlines()[0] if (proc.stdout or proc.stderr) else tool)
    return "\n".join(out)


def source_key(name: str, quick: bool) -> str:
    h = hashlib.sha256()
    for src in ("boot.asm", "start.asm", "link.ld", "rt.h", "rt.c", f"{name}.c"):
        h.update((GUESTS / src).read_bytes())
    h.update(" ".join(CFLAGS).encode())
    h.update(b"quick" if quick else b"full")
    h.update(_tool_versions().encode())
    return h.hexdigest()[:16]


def build_compact(name: str, quick: bool, out: Path) -> Path:
    """Assemble, compile and link one workload; write boot sector + payload to `out`."""
    with tempfile.TemporaryDirectory(prefix="pyemu-bench-") as tmp:
        t = Path(tmp)
        _run(["nasm", "-f", "elf32", "-o", str(t / "start.o"), str(GUESTS / "start.asm")], t)
        objs = [str(t / "start.o")]
        for src in ("rt.c", f"{name}.c"):
            obj = t / (Path(src).stem + ".o")
            _run(["gcc", *CFLAGS, *(["-DQUICK"] if quick else []), "-c", "-o", str(obj), str(GUESTS / src)], t)
            objs.append(str(obj))
        payload = t / "payload.bin"
        _run(["ld", "-m", "elf_i386", "-T", str(GUESTS / "link.ld"), "--oformat", "binary", "-o", str(payload),
              *objs], t)
        data = payload.read_bytes()
        sectors = max(1, (len(data) + 511) // 512)
        if sectors > 900:
            raise BuildError(f"{name}: payload of {len(data)} bytes does not fit")
        boot = t / "boot.bin"
        _run(["nasm", "-f", "bin", f"-DSECTORS={sectors}", "-o", str(boot), str(GUESTS / "boot.asm")], t)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp_out = out.with_suffix(".tmp")
        tmp_out.write_bytes(boot.read_bytes() + data.ljust(sectors * 512, b"\0"))
        tmp_out.replace(out)
    return out


def padded(compact: Path, dest: Path) -> Path:
    """A floppy-sized copy of a compact image (QEMU and Bochs take their geometry from the size)."""
    data = compact.read_bytes()
    if not dest.exists() or dest.stat().st_size != FLOPPY_BYTES or dest.read_bytes()[: len(data)] != data:
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data.ljust(FLOPPY_BYTES, b"\0"))
    return dest


def image(name: str, quick: bool, cache_dir: Path | None = None, prebuilt: bool = False) -> tuple[Path, str]:
    """A floppy image for the workload, ready to boot, and where it came from ('built' or 'checked-in')."""
    cache = cache_dir or default_cache_dir()
    fname = image_name(name, quick)
    if not prebuilt and tools_present():
        compact = cache / "compact" / f"{source_key(name, quick)}-{fname}"
        if not compact.exists():
            build_compact(name, quick, compact)
        origin = "built"
    else:
        compact = CHECKED_IN / fname
        if not compact.exists():
            raise BuildError(f"no compiler and no checked-in image {compact}")
        origin = "checked-in"
    return padded(compact, cache / "run" / fname), origin


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="only the --quick images")
    ap.add_argument("--check-in", action="store_true", help="rebuild benchmarks/guests/img/ (both scales)")
    ap.add_argument("--cache-dir", type=Path, default=None)
    a = ap.parse_args(argv)
    if not tools_present():
        print(f"needs {', '.join(TOOLS)}", file=sys.stderr)
        return 2
    scales = (True, False) if a.check_in or not a.quick else (True,)
    for name in WORKLOADS:
        for quick in scales:
            if a.check_in:
                path = build_compact(name, quick, CHECKED_IN / image_name(name, quick))
            else:
                path, _ = image(name, quick, a.cache_dir)
            print(f"{path} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
