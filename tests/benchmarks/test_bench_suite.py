"""The benchmark suite's guests compute what their Python references compute (quick scale).

Each quick image (built with nasm/gcc/ld when present, else the checked-in one) is booted by pyemu
in this process (one numba load for all) with COM1 going to a file; its `CRC` line must equal the
reference's. With QEMU or Bochs installed, the suite's own command races them on one workload.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import build, reference, suite
from benchmarks.chart import bar_chart

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bench-cache")


def boot_in_process(img: Path, serial: Path) -> str:
    from emu.cli import main

    status = main(["boot", "-fda", str(img), "-m", "16", "-display", "none", "-no-reboot", "-serial",
                   f"file:{serial}", "-device", suite.DEBUG_EXIT, "--timeout", "60"])
    assert status == 1, f"isa-debug-exit with 0 makes status 1, got {status}"
    m = re.findall(r"CRC ([0-9a-f]{8})", serial.read_text(errors="replace"))
    assert m, f"no CRC line on COM1: {serial.read_text(errors='replace')!r}"
    return m[-1]


def test_references_agree_with_the_stored_checksums():
    stored = reference.expected()
    assert set(stored) == set(build.WORKLOADS)
    for name in build.WORKLOADS:
        assert reference.checksum(name, True) == stored[name]["quick"], name


@pytest.mark.parametrize("name", build.WORKLOADS)
def test_quick_guest_prints_the_reference_checksum(name, cache_dir, tmp_path):
    img, _origin = build.image(name, True, cache_dir)
    assert boot_in_process(img, tmp_path / "com1.txt") == reference.expected()[name]["quick"]


def test_checked_in_image_boots(cache_dir, tmp_path):
    img, origin = build.image("crc32", True, cache_dir, prebuilt=True)
    assert origin == "checked-in"
    assert boot_in_process(img, tmp_path / "com1.txt") == reference.checksum("crc32", True)


def test_table_shows_a_mismatch_and_the_ratios():
    good = suite.Workload("crc32", expected="e976923b")
    good.cells = {"pyemu": suite.Cell([suite.Run(wall=4.0, ok=True, checksum="e976923b",
                                                 stats={"guest_instructions": 34_000_000, "mips": 50.0,
                                                        "lookup_hit_rate": 0.99, "exits_io_out": 3})]),
                  "qemu": suite.Cell([suite.Run(wall=0.5, ok=True, checksum="e976923b")]),
                  "bochs": suite.Cell([suite.Run(wall=2.0, checksum="00000000", error="MISMATCH 00000000")])}
    text = suite.table([good])
    assert "MISMATCH" in text and "8.0x" in text and "34.0M" in text
    assert any("disagree" in line for line in suite.notes([good]))
    png = bar_chart("t", ["crc32"], {"pyemu / QEMU": [8.0], "pyemu / Bochs": [None]}, "ratio")
    assert png.startswith(b"\x89PNG\r\n\x1a\n")


@pytest.mark.skipif(not (shutil.which("qemu-system-i386") or shutil.which("bochs")),
                    reason="neither QEMU nor Bochs is installed")
def test_suite_races_the_installed_peers_on_one_quick_workload(cache_dir, tmp_path):
    peers = ",".join(p for p, exe in (("qemu", "qemu-system-i386"), ("bochs", "bochs")) if shutil.which(exe))
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--runs", "1", "--only", "crc32",
                           "--peers", peers, "--no-warmup", "--cache-dir", str(cache_dir), "--json", str(out)],
                          cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (w,) = json.loads(out.read_text())["workloads"]
    for emu in ("pyemu", *peers.split(",")):
        (run,) = w["emulators"][emu]["runs"]
        assert run["checksum"] == reference.checksum("crc32", True), (emu, run)
    assert w["pyemu"]["insns"] > 10_000_000
