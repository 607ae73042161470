"""The engine benchmark's guest bytes are the assembly of its source (benchmarks/guest/intloop.asm)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("nasm") is None, reason="nasm is not installed")
def test_intloop_bytes_match_source(tmp_path):
    out = tmp_path / "intloop.bin"
    subprocess.run(["nasm", "-f", "bin", "-o", str(out), str(ROOT / "benchmarks/guest/intloop.asm")], check=True)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import bench_engine
    finally:
        sys.path.pop(0)
    assert out.read_bytes() == bench_engine.INTLOOP
