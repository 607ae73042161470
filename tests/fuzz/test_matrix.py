"""The image-test matrix (`pyemu fuzz --matrix SPEC`): every boot image of the repo under every option
set shows its expected text, each in its own pyemu process, fanned out over workers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from emu.fuzz import matrix as M

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "tests" / "data" / "image-matrix.json"


def test_the_repo_matrix_boots_every_image_under_every_option_set():
    jobs = M.expand(M.load_spec(SPEC))
    s = M.run_matrix(jobs, workers=2)
    failed = [r for r in s["results"] if r["result"] == "fail"]
    assert not failed, failed
    assert s["pass"] >= 40  # 10 repo images x 4 option sets, whatever the host has besides
    names = {r["name"] for r in s["results"] if r["result"] == "pass"}
    assert {"crc32/tier0", "crc32/all-compiled", "smc/all-compiled", "demo/icount"} <= names


def test_a_boot_that_does_not_show_its_text_fails():
    spec = M.load_spec(SPEC)
    crc = next(r for r in spec["images"] if r["name"] == "crc32")
    job = dict(crc, name="crc32/wrong", serial="CRC 00000000", needs=[])
    r = M.run_job(job)
    assert r["result"] == "fail" and "serial lacks 'CRC 00000000'" in r["why"], r
    assert "CRC e976923b" in r["why"]  # the line it did print


def test_a_row_whose_host_files_are_missing_is_skipped_with_the_reason():
    r = M.run_job({"name": "x/default", "args": [], "needs": ["/nonexistent/memtest.bin"]})
    assert r == {"name": "x/default", "result": "skipped", "why": "needs /nonexistent/memtest.bin", "seconds": 0.0}


def test_options_multiply_images():
    spec = {"images": [{"name": "a", "args": ["-fda", "a.img"]}, {"name": "b", "args": ["-fda", "b.img"]}],
            "options": [{"name": "t0", "args": ["-accel", "tcg,tier=0"]}, {"name": "ic", "args": ["-icount"],
                                                                            "needs": ["/x"]}]}
    jobs = M.expand(spec)
    assert [j["name"] for j in jobs] == ["a/t0", "a/ic", "b/t0", "b/ic"]
    assert jobs[0]["args"] == ["-fda", "a.img", "-accel", "tcg,tier=0"] and jobs[1]["needs"] == ["/x"]


def test_a_bad_spec_is_one_line_error(tmp_path):
    bad = tmp_path / "m.json"
    bad.write_text("{not json")
    p = subprocess.run([sys.executable, "-m", "emu", "fuzz", "--matrix", str(bad)], capture_output=True, text=True,
                       cwd=ROOT)
    assert p.returncode == 2 and p.stderr.startswith("pyemu: error: ") and len(p.stderr.splitlines()) == 1
    assert "Traceback" not in p.stderr
