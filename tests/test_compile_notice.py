"""A cold start says what it is doing: one line while numba compiles the engine (issue 10/14)."""

from __future__ import annotations

import io
import time

from emu.mainloop import CompileNotice


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_slow_engine_load_prints_one_line_with_progress(monkeypatch):
    monkeypatch.setattr(CompileNotice, "QUIET_SECONDS", 0.05)
    out = _Tty()
    with CompileNotice(out):
        time.sleep(1.3)  # stands for numba compiling
    text = out.getvalue()
    assert text.startswith(CompileNotice.TEXT)
    assert "\r" in text and " s" in text  # the elapsed seconds, rewritten in place
    assert text.endswith("\n") and "done in" in text
    assert text.count("\n") == 1  # one line on a terminal


def test_the_line_counts_compiled_functions_against_the_engine(monkeypatch):
    """The progress is numba's compiles so far out of the engine's (non-inlined) jitted functions."""
    from numba import njit

    import emu.cpu.interp  # noqa: F401 - the engine's modules, whose functions make the total
    from emu import enginebuild

    monkeypatch.setattr(enginebuild, "_helper_started", False)  # no helper process in this test

    @njit
    def stands_for_an_engine_function(x):
        return x + 1

    with CompileNotice(io.StringIO()) as notice:
        assert stands_for_an_engine_function(41) == 42
    assert notice.compiled == 1
    assert notice.total > 150  # the engine has about 190 such functions
    assert notice.progress().endswith(f"1 of ~{notice.total} functions")


def test_a_warm_start_prints_nothing():
    out = io.StringIO()
    with CompileNotice(out):
        pass
    assert out.getvalue() == ""


def test_not_a_terminal_gets_the_line_and_the_end(monkeypatch):
    monkeypatch.setattr(CompileNotice, "QUIET_SECONDS", 0.05)
    out = io.StringIO()
    with CompileNotice(out):
        time.sleep(0.3)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith(CompileNotice.TEXT) and "done in" in lines[1]
