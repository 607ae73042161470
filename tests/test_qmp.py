"""QMP (emu/qmp.py): `pyemu boot -qmp ...` driven by QEMU's own Python client library (`qemu.qmp`, skipped
when it is not installed) and, for the greeting and the negotiation rules, by a plain socket."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time

import pytest

from tests.cpu.guestasm import needs_nasm
from tests.test_monitor import HELLO_SPIN, START_TIMEOUT, STEP_TIMEOUT, connect, finish, free_port, start

try:
    from qemu.qmp import ExecuteError, QMPClient
except ImportError:  # pragma: no cover - the test extra installs it
    QMPClient = None

needs_qmp = pytest.mark.skipif(QMPClient is None, reason="qemu.qmp is not installed (pip install qemu.qmp)")


class Lines:
    """JSON messages, one per line, from a plain socket."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = b""

    def read(self, timeout: float = STEP_TIMEOUT) -> dict:
        self.sock.settimeout(timeout)
        while b"\n" not in self.buf:
            data = self.sock.recv(65536)
            assert data, f"QMP closed after {self.buf!r}"
            self.buf += data
        line, _, self.buf = self.buf.partition(b"\n")
        assert line.endswith(b"\r")  # CR LF, as QEMU
        return json.loads(line)

    def send(self, msg) -> None:
        self.sock.sendall((msg if isinstance(msg, bytes) else json.dumps(msg).encode()) + b"\n")


@needs_nasm
def test_greeting_negotiation_and_quit_on_a_plain_socket(tmp_path):
    port = free_port()
    proc = start(tmp_path, HELLO_SPIN, "-qmp", f"tcp:127.0.0.1:{port},server")  # waits for its client
    try:
        q = Lines(connect(socket.AF_INET, ("127.0.0.1", port)))
        greeting = q.read(START_TIMEOUT)
        assert set(greeting) == {"QMP"}
        assert greeting["QMP"]["capabilities"] == []
        assert set(greeting["QMP"]["version"]["qemu"]) == {"major", "minor", "micro"}
        q.send({"execute": "query-status", "id": 1})
        assert q.read() == {"error": {"class": "CommandNotFound", "desc": "Expecting capabilities negotiation "
                                      "with 'qmp_capabilities'"}, "id": 1}
        q.send({"execute": "qmp_capabilities"})
        assert q.read() == {"return": {}}
        q.send(b'{"execute": "query-status", "id": "a"}{"execute": "frob", "id": "b"}')  # two in one line
        assert q.read() == {"return": {"status": "running", "singlestep": False, "running": True}, "id": "a"}
        assert q.read()["error"]["class"] == "CommandNotFound"
        q.send(b'{"execute": ')
        q.send(b"}")
        assert q.read()["error"]["class"] == "GenericError"  # JSON parse error, and the server goes on
        q.send({"execute": "quit", "id": 7})
        assert q.read() == {"return": {}, "id": 7}
        event = q.read()
        assert event["event"] == "SHUTDOWN" and event["data"] == {"guest": False, "reason": "host-qmp-quit"}
        assert set(event["timestamp"]) == {"seconds", "microseconds"}
        status, err = finish(proc)
    finally:
        proc.kill()
    assert status == 0
    assert f"pyemu: waiting for a connection on tcp:127.0.0.1:{port},server" in err


async def _events_until(client, names: list[str], timeout: float = STEP_TIMEOUT) -> list:
    got = []
    async with asyncio.timeout(timeout) if hasattr(asyncio, "timeout") else _Deadline(timeout):
        while len(got) < len(names):
            got.append(await client.events.get())
    return got


class _Deadline:  # asyncio.timeout is Python 3.11+
    def __init__(self, seconds):
        self.seconds = seconds

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        return False


async def _session(path: str, body) -> None:
    client = QMPClient("pyemu-test")
    deadline = time.monotonic() + START_TIMEOUT
    while not os.path.exists(path):  # pyemu makes the socket once it has loaded the engine
        assert time.monotonic() < deadline, "no QMP socket"
        await asyncio.sleep(0.05)
    await asyncio.wait_for(client.connect(path), STEP_TIMEOUT)
    try:
        await body(client)
    finally:
        try:
            await client.disconnect()
        except (EOFError, ConnectionError):
            pass  # pyemu closed the socket when it quit, as QEMU does


def run_session(proc, path: str, body) -> int:
    """Run `body` over a QMP connection to pyemu `proc` (listening on `path`); its exit status."""
    try:
        asyncio.run(_session(path, body))
        status, _ = finish(proc)
    finally:
        proc.kill()
    return status


@needs_qmp
@needs_nasm
def test_stop_cont_reset_quit_with_events(tmp_path):
    path = str(tmp_path / "qmp.sock")
    proc = start(tmp_path, HELLO_SPIN, "-S", "-qmp", f"unix:{path},server,nowait")

    async def body(qmp):
        assert await qmp.execute("query-status") == {"status": "prelaunch", "singlestep": False, "running": False}
        await qmp.execute("cont")
        resume, = await _events_until(qmp, ["RESUME"])
        assert resume["event"] == "RESUME"
        assert (await qmp.execute("query-status"))["running"] is True
        await asyncio.sleep(0.5)
        await qmp.execute("stop")
        stop, = await _events_until(qmp, ["STOP"])
        assert stop["event"] == "STOP" and set(stop["timestamp"]) == {"seconds", "microseconds"}
        assert (await qmp.execute("query-status"))["status"] == "paused"
        text = await qmp.execute("human-monitor-command", {"command-line": "info registers"})
        first = text.splitlines()[0].split()
        assert [w.split("=")[0] for w in first] == ["EAX", "EBX", "ECX", "EDX"]
        assert int(first[2].split("=")[1], 16) > 0  # the guest counted in ECX before it was stopped
        assert "\nCS =0000 00000000 0000ffff 00009b00\r\n" in text
        await qmp.execute("system_reset")
        reset, = await _events_until(qmp, ["RESET"])
        assert reset["event"] == "RESET"
        assert reset["data"] == {"guest": False, "reason": "host-qmp-system-reset"}
        assert (await qmp.execute("query-status"))["status"] == "paused"  # a reset does not resume
        regs = await qmp.execute("human-monitor-command", {"command-line": "info registers"})
        assert "EIP=0000fff0" in regs
        cpus = await qmp.execute("query-cpus-fast")
        assert cpus[0]["cpu-index"] == 0 and cpus[0]["target"] == "i386"
        await qmp.execute("quit")
        shutdown, = await _events_until(qmp, ["SHUTDOWN"])
        assert shutdown["event"] == "SHUTDOWN"
        assert shutdown["data"] == {"guest": False, "reason": "host-qmp-quit"}

    assert run_session(proc, path, body) == 0


@needs_qmp
@needs_nasm
def test_jit_statistics_screendump_and_errors(tmp_path):
    path = str(tmp_path / "qmp.sock")
    shot = tmp_path / "screen.ppm"
    proc = start(tmp_path, HELLO_SPIN, "-qmp", f"unix:{path},server,nowait")

    async def body(qmp):
        await asyncio.sleep(0.5)
        stats = await qmp.execute("x-query-jit-stats")
        assert stats["guest_instructions"] > 0 and stats["lookups"] > 0
        text = (await qmp.execute("x-query-jit"))["human-readable-text"]
        assert "Translation buffer state:" in text and "tb_translated" in text
        await qmp.execute("screendump", {"filename": str(shot)})
        assert shot.read_bytes().startswith(b"P6\n720 400\n255\n")  # QEMU's default format: PPM
        names = {c["name"] for c in await qmp.execute("query-commands")}
        assert {"qmp_capabilities", "query-status", "stop", "cont", "human-monitor-command", "quit"} <= names
        with pytest.raises(ExecuteError) as err:
            await qmp.execute("frob")
        assert err.value.error.error.class_ == "CommandNotFound"
        with pytest.raises(ExecuteError):
            await qmp.execute("screendump", {"filename": str(tmp_path / "no" / "such" / "dir.ppm")})
        version = await qmp.execute("query-version")
        assert version["package"].startswith("pyemu")
        await qmp.execute("quit")

    assert run_session(proc, path, body) == 0
