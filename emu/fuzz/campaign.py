"""The fuzzing campaign: batches of programs in worker processes (or Ray tasks), findings
isolated, minimized and written as reproducers (`pyemu fuzz`)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

from emu.fuzz import devfuzz as D
from emu.fuzz import gen as G

BATCH = 25
PER_PROGRAM_TIMEOUT = 20.0  # seconds: a program slower than this in a child is a hang
WARMUP_TIMEOUT = 900.0  # a fresh worker may compile (or load) the engine first
PROGRESS_STEPS = 50  # a Ray campaign logs its progress this many times
RAY_ENV = ("PYEMU_T1_CG", "PYEMU_T1_PASSES")  # engine settings a Ray task must run with

_runner = None


def _get_runner(budget: int):
    global _runner
    if _runner is None or _runner.budget != budget:
        from emu.fuzz.runner import Runner

        _runner = Runner(budget)
    return _runner


def program_for(seed: int, index: int, modes: tuple[str, ...]) -> dict:
    mode = modes[index % len(modes)]
    if mode == D.MODE:
        return D.program(seed * 1_000_003 + index)
    return G.program(seed * 1_000_003 + index, mode)


_device_runner = None


def check_program(p: dict, budget: int, use_unicorn: bool = False) -> dict | None:
    global _device_runner
    if p["mode"] == D.MODE:
        if _device_runner is None:
            _device_runner = D.DeviceRunner()
        return _device_runner.check(p)
    r = _get_runner(budget)
    f = r.check(p)
    if f is None and use_unicorn:
        from emu.fuzz.ucdiff import unicorn_check

        f = unicorn_check(r, p)
    return f


def run_batch(seed: int, indices: list[int], modes: tuple[str, ...], budget: int, use_unicorn: bool = False) -> dict:
    """Run programs `indices` of the campaign; the unit of work of a worker or a Ray task."""
    findings = []
    compiled = 0
    t = time.perf_counter()
    r = _get_runner(budget)
    compared = r.uc_compared
    for i in indices:
        p = program_for(seed, i, modes)
        f = check_program(p, budget, use_unicorn)
        compiled += p["mode"] != D.MODE and r.compiled > 0
        if f is not None:
            findings.append({"index": i, "program": p, "finding": f})
    return {"n": len(indices), "findings": findings, "compiled": compiled, "unicorn": r.uc_compared - compared,
            "seconds": time.perf_counter() - t, "worker": f"{socket.gethostname()}:{os.getpid()}", "node": _ray_node()}


def _ray_node() -> str | None:
    """The Ray node a task runs on (None outside Ray)."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return None
    return ray.get_runtime_context().get_node_id()


# ------------------------------------------------------------------------------ isolation in a child
def child_main() -> None:
    """`python -m emu.fuzz.campaign --child`: programs (JSON lines) on stdin; prints `start`/`ok`
    before and after each so that the parent knows which one a crash or hang belongs to."""
    budget = int(os.environ.get("PYEMU_FUZZ_BUDGET", "20000"))
    _get_runner(budget)
    print("ready", flush=True)
    for line in sys.stdin:
        p = json.loads(line)
        print("start", flush=True)
        f = check_program(p, budget)
        print("result " + json.dumps(f), flush=True)


def isolate(programs: list[dict], budget: int, timeout: float = PER_PROGRAM_TIMEOUT) -> list[dict | None]:
    """Run programs one by one in child processes: a dead child is a crash, a silent one a hang."""
    results: list[dict | None] = []
    pending = list(programs)
    while pending:
        env = dict(os.environ, PYEMU_FUZZ_BUDGET=str(budget))
        proc = subprocess.Popen([sys.executable, "-m", "emu.fuzz.campaign", "--child"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        try:
            _readline(proc, WARMUP_TIMEOUT)
            while pending:
                proc.stdin.write(json.dumps(pending[0]) + "\n")
                proc.stdin.flush()
                if _readline(proc, timeout) != "start":
                    raise EOFError
                line = _readline(proc, timeout)
                if not line.startswith("result "):
                    raise EOFError
                results.append(json.loads(line[7:]))
                pending.pop(0)
        except TimeoutError:
            proc.kill()
            results.append({"kind": "hang", "detail": f"no result within {timeout} s"})
            pending.pop(0)
        except EOFError:
            proc.kill()
            rc = proc.wait()
            err = proc.stderr.read()[-2000:]
            results.append({"kind": "crash", "detail": f"child died (status {rc}): {err.strip()[-400:]}"})
            pending.pop(0)
        finally:
            if proc.poll() is None:
                proc.stdin.close()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    return results


def _readline(proc, timeout: float) -> str:
    import select

    r, _, _ = select.select([proc.stdout], [], [], timeout)
    if not r:
        raise TimeoutError
    line = proc.stdout.readline()
    if not line:
        raise EOFError
    return line.strip()


# ------------------------------------------------------------------------------ minimization
def reproduces(p: dict, f: dict, budget: int) -> bool:
    """Does `p` still show a finding of the same kind (and, for a divergence, in the same fields)?"""
    if f["kind"] in ("crash", "hang"):
        g = isolate([p], budget)[0]
    else:
        try:
            g = check_program(p, budget, use_unicorn=f["kind"] == "unicorn")
        except Exception:  # noqa: BLE001
            return False
    if g is None or g["kind"] != f["kind"]:
        return False
    if f["kind"] in ("divergence", "unicorn"):
        return sorted(g["detail"]) == sorted(f["detail"])
    return True


def minimize(p: dict, f: dict, budget: int, max_tries: int = 300) -> tuple[dict, dict]:
    """Drop chunks of code bytes (halves, quarters, ... single bytes), or of a device program's
    operations, while the finding reproduces."""
    ops = p["mode"] == D.MODE
    code = p["ops"] if ops else bytes.fromhex(p["code"])
    tries = 0
    if f["kind"] in ("crash", "hang", "slow"):  # each try costs seconds
        max_tries = min(max_tries, 12)
    chunk = max(1, len(code) // 2)
    while chunk >= 1 and tries < max_tries:
        i = 0
        while i < len(code) and tries < max_tries:
            cand = code[:i] + code[i + chunk:]
            q = dict(p, ops=cand) if ops else dict(p, code=cand.hex())
            tries += 1
            if cand and reproduces(q, f, budget):
                code = cand
            else:
                i += chunk
        chunk //= 2
    q = dict(p, ops=code) if ops else dict(p, code=code.hex())
    g = f
    if f["kind"] not in ("crash", "hang"):
        g = check_program(q, budget, use_unicorn=f["kind"] == "unicorn") or f
    return q, g


def write_reproducer(out: str, p: dict, f: dict, budget: int, original_len: int) -> str:
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, f"{f['kind']}-{p['mode']}-{p['seed']}.json")
    with open(path, "w") as fh:
        json.dump({"program": p, "finding": f, "budget": budget, "original_code_bytes": original_len}, fh, indent=1)
        fh.write("\n")
    return path


def finding_key(p: dict, f: dict) -> tuple:
    if f["kind"] in ("divergence", "unicorn"):
        return (f["kind"], p["mode"], tuple(sorted(f["detail"])))
    return (f["kind"], p["mode"])


# ------------------------------------------------------------------------------ the campaign
def _batches(programs: int, size: int) -> list[list[int]]:
    return [list(range(i, min(i + size, programs))) for i in range(0, programs, size)]


def _run_local(seed, batches, modes, budget, workers, use_unicorn, log, deadline=None):
    # imported here, not at the top: `pyemu boot` builds the fuzz options and should not pay ~14 ms
    # for multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures import TimeoutError as FutureTimeout
    from concurrent.futures.process import BrokenProcessPool

    results = []
    pool = ProcessPoolExecutor(workers)
    futs = [pool.submit(run_batch, seed, b, modes, budget, use_unicorn) for b in batches]
    warm = False
    try:
        for i, b in enumerate(batches):
            if deadline is not None and time.monotonic() > deadline:
                log(f"time limit: stopping after {sum(r['n'] for r in results)} programs")
                for f in futs[i:]:
                    f.cancel()
                break
            timeout = len(b) * PER_PROGRAM_TIMEOUT + (60 if warm else WARMUP_TIMEOUT)
            try:
                results.append(futs[i].result(timeout=timeout))
                warm = True
            except (BrokenProcessPool, FutureTimeout) as exc:
                log(f"batch {b[0]}..{b[-1]}: {type(exc).__name__}; isolating its programs in child processes")
                _kill_pool(pool)
                results.append(_isolate_batch(seed, b, modes, budget))
                pool = ProcessPoolExecutor(workers)
                warm = False
                for j in range(i + 1, len(batches)):  # what the dead pool had not finished goes to a new one
                    f = futs[j]
                    if not (f.done() and not f.cancelled() and f.exception() is None):
                        futs[j] = pool.submit(run_batch, seed, batches[j], modes, budget, use_unicorn)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return results


def _kill_pool(pool) -> None:
    for proc in list(getattr(pool, "_processes", {}).values()):
        try:
            proc.kill()
        except Exception:  # noqa: BLE001
            pass
    pool.shutdown(wait=False, cancel_futures=True)


def _isolate_batch(seed, indices, modes, budget) -> dict:
    progs = [program_for(seed, i, modes) for i in indices]
    t = time.perf_counter()
    res = isolate(progs, budget)
    findings = [{"index": i, "program": p, "finding": f} for i, p, f in zip(indices, progs, res, strict=True) if f]
    return {"n": len(indices), "findings": findings, "compiled": 0, "seconds": time.perf_counter() - t}


def ray_connect(address: str):
    """Ray (the optional `cluster` extra), connected to `address` (`local`: a Ray started here)."""
    import ray

    env = {k: os.environ[k] for k in RAY_ENV if k in os.environ}  # (a cluster's workers do not inherit ours)
    ray.init(address=None if address == "local" else address, ignore_reinit_error=True,
             runtime_env={"env_vars": env} if env else None)
    return ray


def ray_shape(ray) -> dict:
    """The cluster the tasks ran on: its live nodes and CPUs."""
    return {"ray_nodes": sum(1 for n in ray.nodes() if n.get("Alive")),
            "ray_cpus": int(ray.cluster_resources().get("CPU", 0))}


def _run_ray(address, seed, batches, modes, budget, use_unicorn, log, shape=None):
    ray = ray_connect(address)
    if shape is not None:
        shape["ray_nodes_at_start"] = ray_shape(ray)["ray_nodes"]
    task = ray.remote(max_retries=0)(run_batch)
    refs = {task.remote(seed, b, modes, budget, use_unicorn): b for b in batches}
    results = []
    pending = list(refs)
    t = time.perf_counter()
    step = max(1, len(batches) // PROGRESS_STEPS)
    while pending:  # as they finish (nodes may join the cluster meanwhile and take tasks)
        done, pending = ray.wait(pending, num_returns=min(len(pending), step), timeout=None)
        for ref in done:
            b = refs[ref]
            try:
                results.append(ray.get(ref))
            except Exception as exc:  # noqa: BLE001 - a worker that died: isolate locally
                log(f"batch {b[0]}..{b[-1]}: {type(exc).__name__}; isolating locally")
                results.append(_isolate_batch(seed, b, modes, budget))
        n = sum(r["n"] for r in results)
        log(f"{n} programs, {n / (time.perf_counter() - t):.1f}/s, {sum(len(r['findings']) for r in results)} "
            f"findings, {len({r.get('node') for r in results} - {None})} nodes used")
    if shape is not None:
        shape.update(ray_shape(ray))
    return results


def campaign(programs: int = 1000, seed: int = 0, workers: int = 2, modes=("all",), budget: int = 20_000,
             out: str | None = None, ray_address: str | None = None, use_unicorn: bool = False,
             minimize_per_key: int = 2, batch: int = BATCH, log=print, max_seconds: float | None = None) -> dict:
    if isinstance(modes, str):
        modes = (modes,)
    modes = tuple(G.MODES) if "all" in modes else tuple(modes)
    batches = _batches(programs, batch)
    t = time.perf_counter()
    shape: dict = {}
    if ray_address:
        results = _run_ray(ray_address, seed, batches, modes, budget, use_unicorn, log, shape)
    elif workers <= 0:
        results = [run_batch(seed, b, modes, budget, use_unicorn) for b in batches]
    else:
        deadline = None if max_seconds is None else time.monotonic() + max_seconds
        results = _run_local(seed, batches, modes, budget, workers, use_unicorn, log, deadline)
    seconds = time.perf_counter() - t
    raw = [f for r in results for f in r["findings"]]
    keys: dict[tuple, int] = {}
    findings = []
    for item in raw:
        p, f = item["program"], item["finding"]
        key = finding_key(p, f)
        keys[key] = keys.get(key, 0) + 1
        entry = {"index": item["index"], "mode": p["mode"], "seed": p["seed"], "kind": f["kind"], "finding": f}
        if out and keys[key] <= minimize_per_key:
            q, g = minimize(p, f, budget)
            size = len(p["ops"]) if "ops" in p else len(p["code"]) // 2
            entry["reproducer"] = write_reproducer(out, q, g, budget, size)
            entry["finding"] = g
        findings.append(entry)
    n = sum(r["n"] for r in results)
    return {"programs": n, "seconds": round(seconds, 2), "programs_per_s": round(n / seconds, 2) if seconds else 0,
            "workers": 0 if ray_address else workers, "ray": ray_address, **shape, "modes": list(modes), "seed": seed,
            "budget": budget, "with_compiled_second_run": sum(r["compiled"] for r in results),
            "worker_processes": len({r["worker"] for r in results if "worker" in r}),
            **({"ray_nodes_used": len({r.get("node") for r in results} - {None})} if ray_address else {}),
            "compared_with_unicorn": sum(r.get("unicorn", 0) for r in results),
            "findings": findings, "finding_kinds": {"/".join(map(str, k)): v for k, v in keys.items()}}


def add_arguments(parser) -> None:
    parser.add_argument("--programs", type=int, default=1000, help="programs to run (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="campaign seed (default 0)")
    parser.add_argument("--workers", type=int, default=2, help="local worker processes (default 2; 0: in-process)")
    parser.add_argument("--mode", default="all", choices=(*G.MODES, D.MODE, "all"),
                        help="CPU mode of the programs (all: the five CPU modes), or devices: random port, MMIO, "
                             "timer and BIOS traffic against a whole PC's devices")
    parser.add_argument("--ray", metavar="ADDRESS", help="run the batches as Ray tasks (an address, auto or local)")
    parser.add_argument("--out", default="fuzz-out", help="directory for reproducers and summary.json")
    parser.add_argument("--unicorn", action="store_true", help="also compare flat 32-bit programs with unicorn")
    parser.add_argument("--budget", type=int, default=20_000, help="instructions per run (default 20000)")
    parser.add_argument("--batch", type=int, default=BATCH, help="programs per batch (task)")
    parser.add_argument("--max-seconds", type=float, help="stop starting batches after this long (local workers)")
    parser.add_argument("--boundscheck", action="store_true",
                        help="an engine built with numba's bounds checks (own cache; first run compiles it)")
    parser.add_argument("--matrix", metavar="SPEC", help="run an image-test matrix (JSON: images x options) instead")
    parser.add_argument("--tier1-codegen", type=int, choices=(0, 1, 2, 3), metavar="OPT",
                        help="LLVM's code generator level for tier 1 (default: the engine's, 2); 0 selects "
                             "instructions with FastISel from the same IR and passes, twice the programs/s")


def use_boundscheck() -> None:
    """Build the engine with numba's bounds checks (NUMBA_BOUNDSCHECK=1), in a cache of its own: an
    array index out of range then raises IndexError, which the campaign reports as a finding.
    Guest memory, the TLB and the state are reached through raw pointers (emu/rawptr.py), which
    this does not check: they are kept in range by the TLB and the physical map themselves."""
    import emu

    if "numba" in sys.modules:
        raise RuntimeError("--boundscheck must take effect before numba is imported")
    os.environ["NUMBA_BOUNDSCHECK"] = "1"
    os.environ.pop("NUMBA_CACHE_DIR", None)
    emu._select_numba_cache()


def cmd_fuzz(args) -> int:
    if args.tier1_codegen is not None:
        os.environ["PYEMU_T1_CG"] = str(args.tier1_codegen)  # (workers and Ray tasks started here inherit it)
    if args.boundscheck:
        use_boundscheck()
        if args.workers > 0 and not args.ray:  # compile it once here, not in every worker at once
            import tempfile

            with tempfile.TemporaryDirectory() as tmp:
                subprocess.run([sys.executable, "-m", "emu", "fuzz", "--boundscheck", "--programs", "1",
                                "--workers", "0", "--out", tmp], stdout=subprocess.DEVNULL, check=False)
    if args.matrix:
        from emu.fuzz.matrix import cmd_matrix

        return cmd_matrix(args)

    def log(msg):
        print(f"fuzz: {msg}", file=sys.stderr, flush=True)

    s = campaign(args.programs, args.seed, args.workers, (args.mode,), args.budget, args.out, args.ray,
                 args.unicorn, batch=args.batch, log=log, max_seconds=args.max_seconds)
    from emu.translate.tier1 import codegen_opt

    s["tier1_codegen"] = codegen_opt()
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "summary.json"), "w") as fh:
        json.dump(s, fh, indent=1)
        fh.write("\n")
    for f in s["findings"]:
        print(f"finding: {f['kind']} mode={f['mode']} seed={f['seed']} {json.dumps(f['finding'])[:300]}"
              + (f" -> {f['reproducer']}" if "reproducer" in f else ""))
    print(f"{s['programs']} programs in {s['seconds']} s: {s['programs_per_s']} programs/s, "
          f"{len(s['findings'])} findings ({s['with_compiled_second_run']} ran compiled blocks"
          + (f", {s['compared_with_unicorn']} compared with unicorn)" if args.unicorn else ")"))
    print(json.dumps({k: v for k, v in s.items() if k != "findings"}))
    return 1 if s["findings"] else 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--child"]:
        child_main()
    else:
        import argparse

        ap = argparse.ArgumentParser(prog="python -m emu.fuzz.campaign")
        add_arguments(ap)
        sys.exit(cmd_fuzz(ap.parse_args()))
