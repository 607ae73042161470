"""The image-test matrix (`pyemu fuzz --matrix SPEC.json`): many boot images × many option sets,
each boot checked against the text it must put on COM1 or on the screen.

A spec is JSON with two lists. `images` rows: `name`, `args` (pyemu's boot options: `-fda IMG`,
`-kernel K`, ...; relative paths are relative to the spec file), and what the boot must show:
`serial` and/or `screen` (text that must appear), with optional `stdin` (keys to type), `timeout`
(seconds, default 30) and `needs` (host files the row needs: it is skipped, with that reason,
where one is missing). `options` rows: `name`, `args` (e.g. `-accel tcg,tier=0`) and optional `needs`. Every
job runs `python -m emu boot` in its own process with `-snapshot` (the images are never
written), `-display none`, `-no-reboot`, COM1 into a file and a text screendump at exit.

Jobs fan out like the fuzzing batches: local workers by default, Ray tasks with `--ray ADDRESS`.
A job fails when its expected text is missing, when pyemu printed a traceback, or when the
process died by a signal or outlived its timeout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

DEFAULT_TIMEOUT = 30.0  # seconds of guest run per job (pyemu's --timeout)
START_ALLOWANCE = 240.0  # host seconds on top: a first start may compile the engine (~2 min cold)


def load_spec(path: str | os.PathLike) -> dict:
    """The spec at `path`, with its relative image paths made absolute."""
    p = Path(path)
    try:
        spec = json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable matrix spec ({exc})") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("images"), list):
        raise ValueError(f"{path}: a matrix spec needs an 'images' list")
    spec.setdefault("options", [{"name": "default", "args": []}])
    base = p.resolve().parent
    for row in spec["images"]:
        row["args"] = [_resolve(a, base) for a in row.get("args", [])]
    return spec


def _resolve(arg: str, base: Path) -> str:
    """An image path relative to the spec file, made absolute; options and absolute paths as they are."""
    if arg.startswith("-") or os.path.isabs(arg):
        return arg
    cand = base / arg
    return str(cand) if cand.exists() else arg


def expand(spec: dict) -> list[dict]:
    """The jobs: every image row with every option row, in image order."""
    jobs = []
    for img in spec["images"]:
        for opt in spec["options"]:
            job = {k: v for k, v in img.items() if k != "args"}
            job["needs"] = list(img.get("needs", [])) + list(opt.get("needs", []))
            job["name"] = f"{img['name']}/{opt['name']}"
            job["args"] = list(img.get("args", [])) + list(opt.get("args", []))
            jobs.append(job)
    return jobs


def run_job(job: dict) -> dict:
    """Boot one job in its own pyemu process and check what it showed."""
    missing = [n for n in job.get("needs", []) if not os.path.exists(n)]
    if missing:
        return {"name": job["name"], "result": "skipped", "why": f"needs {missing[0]}", "seconds": 0.0}
    timeout = float(job.get("timeout", DEFAULT_TIMEOUT))
    with tempfile.TemporaryDirectory(prefix="pyemu-matrix-") as tmp:
        serial, screen = os.path.join(tmp, "com1.txt"), os.path.join(tmp, "screen.txt")
        argv = [sys.executable, "-m", "emu", "boot", *job["args"], "-snapshot", "-display", "none", "-no-reboot",
                "-serial", f"file:{serial}", "--screendump", screen, "--timeout", f"{timeout:g}"]
        t = time.perf_counter()
        try:
            proc = subprocess.run(argv, input=job.get("stdin", "").encode("latin-1"), capture_output=True,
                                  timeout=timeout + START_ALLOWANCE)
        except subprocess.TimeoutExpired:
            return {"name": job["name"], "result": "fail", "why": "the process outlived its timeout",
                    "seconds": round(time.perf_counter() - t, 2)}
        seconds = round(time.perf_counter() - t, 2)
        got = {"serial": _read(serial), "screen": _read(screen)}
    err = proc.stderr.decode(errors="replace")
    why = None
    if proc.returncode < 0:
        why = f"killed by signal {-proc.returncode}"
    elif "Traceback" in err:
        why = "a Python traceback: " + err.strip().splitlines()[-1][:200]
    else:
        for where in ("serial", "screen"):
            want = job.get(where)
            if want is not None and want not in got[where]:
                why = f"{where} lacks {want!r} (status {proc.returncode}; last line {_last(got[where])!r}"
                why += f"; screen {_last(got['screen'])!r})" if where == "serial" else ")"
                break
    return {"name": job["name"], "result": "fail" if why else "pass", "why": why, "seconds": seconds,
            "status": proc.returncode}


def _last(text: str) -> str:
    """The last non-blank line of `text`, stripped and cut to 80 characters."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1][:80] if lines else ""


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return ""


def run_matrix(jobs: list[dict], workers: int = 2, ray_address: str | None = None) -> dict:
    """Run `jobs` on `workers` local workers (each job is its own pyemu process), or as Ray tasks."""
    t = time.perf_counter()
    if ray_address:
        from emu.fuzz.campaign import ray_connect

        ray = ray_connect(ray_address)
        task = ray.remote(max_retries=0)(run_job)
        results = ray.get([task.remote(j) for j in jobs])
    else:
        with ThreadPoolExecutor(max(1, workers)) as pool:
            results = list(pool.map(run_job, jobs))
    counts = {k: sum(r["result"] == k for r in results) for k in ("pass", "fail", "skipped")}
    return {"jobs": len(jobs), **counts, "seconds": round(time.perf_counter() - t, 2),
            "workers": 0 if ray_address else workers, "ray": ray_address, "results": results}


def cmd_matrix(args) -> int:
    try:
        spec = load_spec(args.matrix)
    except ValueError as exc:
        print(f"pyemu: error: {exc}", file=sys.stderr)
        return 2
    s = run_matrix(expand(spec), args.workers, args.ray)
    for r in s["results"]:
        line = f"{r['result']:7} {r['name']:32} {r['seconds']:7.2f} s"
        print(line + (f"  {r['why']}" if r.get("why") else ""))
    print(f"{s['jobs']} jobs in {s['seconds']} s: {s['pass']} passed, {s['fail']} failed, {s['skipped']} skipped")
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "matrix.json"), "w") as fh:
            json.dump(s, fh, indent=1)
            fh.write("\n")
    return 1 if s["fail"] else 0
