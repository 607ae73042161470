"""Replay every reproducer in tests/fuzz/corpus/: the property the fuzzer checks must hold.

A reproducer (written by `pyemu fuzz --out DIR`, then copied here) holds the program (mode, seed,
code, initial registers and flags) and the finding it showed. The program must now pass: tier 0
and both tier-1 runs end in the same state, within the budget, without an exception; crashes and
hangs are replayed in a child process; a `unicorn` finding must also agree with unicorn. A
known-open finding carries `"xfail": "reason"` and is expected to fail (strict: when it starts
passing, drop the field).
"""

from __future__ import annotations

import json
import pathlib

import pytest

CORPUS = pathlib.Path(__file__).parent / "corpus"
FILES = sorted(CORPUS.glob("*.json"))


def _params():
    for f in FILES:
        data = json.loads(f.read_text())
        marks = [pytest.mark.xfail(strict=True, reason=data["xfail"])] if data.get("xfail") else []
        yield pytest.param(f, id=f.stem, marks=marks)


@pytest.mark.parametrize("path", list(_params()))
def test_reproducer(path):
    data = json.loads(path.read_text())
    p, budget = data["program"], data.get("budget", 20_000)
    if data["finding"]["kind"] in ("crash", "hang"):
        from emu.fuzz.campaign import isolate

        result = isolate([p], budget)[0]
    else:
        from emu.fuzz.campaign import check_program

        use_unicorn = data["finding"]["kind"] == "unicorn"
        if use_unicorn:
            pytest.importorskip("unicorn")
        result = check_program(p, budget, use_unicorn)
    assert result is None, json.dumps(result)[:2000]
