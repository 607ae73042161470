"""Device fuzzing (`pyemu fuzz --mode devices`): random port, MMIO, timer and BIOS traffic against
a whole PC's devices must never raise a Python exception, return a value wider than the access,
or stall; and a device bug is found and minimized to a short reproducer."""

from __future__ import annotations

import json

from emu.fuzz import campaign as C
from emu.fuzz import devfuzz as D


def test_a_device_program_is_a_function_of_its_seed():
    assert D.program(5) == D.program(5) != D.program(6)
    kinds = {op[0] for s in range(20) for op in D.program(s)["ops"]}
    assert kinds == {"o", "i", "w", "r", "t", "b"}  # every kind of traffic is drawn


def test_device_campaign_slice():
    """300 programs (90,000 operations) on two workers: no finding."""
    s = C.campaign(300, seed=2026, workers=2, modes=(D.MODE,), budget=2000, out=None, log=print)
    print(json.dumps({k: v for k, v in s.items() if k != "findings"}))
    assert s["programs"] == 300 and s["modes"] == [D.MODE]
    assert not s["findings"], json.dumps(s["findings"][:3])[:3000]


def test_a_planted_device_bug_is_found_and_minimized(monkeypatch, tmp_path):
    """The RTC made to fail when FFh is written to a CMOS byte: the campaign reports the exception,
    and the reproducer it writes is a few operations long and still shows it."""
    from emu.devices.rtc146818 import Rtc146818

    real = Rtc146818.write_register

    def broken(self, index, value):
        if value == 0xFF:
            raise ZeroDivisionError("planted")
        real(self, index, value)

    monkeypatch.setattr(Rtc146818, "write_register", broken)
    s = C.campaign(60, seed=3, workers=0, modes=(D.MODE,), budget=2000, out=str(tmp_path), log=print)
    found = [f for f in s["findings"] if "planted" in f["finding"]["detail"]]
    assert found, s["finding_kinds"]
    repro = json.loads(open(found[0]["reproducer"]).read())
    assert 1 <= len(repro["program"]["ops"]) <= 4, repro["program"]["ops"]
    assert C.check_program(repro["program"], 2000)["kind"] == "exception"
