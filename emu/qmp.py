"""QMP, QEMU's JSON machine protocol: `-qmp unix:PATH,server[,nowait]` and `-qmp tcp:HOST:PORT,server[,nowait]`.

The QEMU Machine Protocol specification (docs/interop/qmp-spec): the server greets with
`{"QMP": {"version": ..., "capabilities": []}}`; the client must send `qmp_capabilities` before
anything else; each command `{"execute": NAME, "arguments": {...}, "id": ID}` is answered with
`{"return": ..., "id": ID}` or `{"error": {"class": ..., "desc": ...}, "id": ID}`; asynchronous events
`{"event": NAME, "data": {...}, "timestamp": {"seconds": S, "microseconds": US}}` go to every client
that has left capabilities negotiation. Messages are JSON objects, each sent followed by CR LF.

Commands: qmp_capabilities, query-status, stop, cont, system_reset, system_powerdown, quit,
query-cpus-fast, human-monitor-command (the HMP command's text, emu/monitor.py), screendump,
query-version, query-commands, query-name, query-target, query-kvm, x-query-jit (QEMU's: the
statistics as text) and x-query-jit-stats (pyemu's: the same counters as a JSON object).
Events: STOP, RESUME, RESET, SHUTDOWN, POWERDOWN.
"""

from __future__ import annotations

import json
import os
import time

from emu.monitor import MonitorError, jit_text, write_screen

MAX_MESSAGE = 1 << 20


class QmpError(Exception):
    def __init__(self, desc: str, cls: str = "GenericError"):
        super().__init__(desc)
        self.cls = cls
        self.desc = desc


def _version() -> dict:
    from emu import __version__

    nums = [int(p) if p.isdigit() else 0 for p in __version__.split(".")[:3]] + [0, 0, 0]
    return {"qemu": {"major": nums[0], "minor": nums[1], "micro": nums[2]}, "package": f"pyemu {__version__}"}


def timestamp() -> dict:
    now = time.time()
    sec = int(now)
    return {"seconds": sec, "microseconds": int((now - sec) * 1e6)}


class QmpServer:
    def __init__(self, control, server):
        self.control = control
        self.server = server
        self.decoder = json.JSONDecoder()
        self.commands = {
            "qmp_capabilities": self.cmd_capabilities, "query-status": self.cmd_query_status,
            "stop": self.cmd_stop, "cont": self.cmd_cont, "system_reset": self.cmd_system_reset,
            "system_powerdown": self.cmd_system_powerdown, "quit": self.cmd_quit,
            "query-cpus-fast": self.cmd_query_cpus_fast, "human-monitor-command": self.cmd_hmp,
            "screendump": self.cmd_screendump, "query-version": lambda args: _version(),
            "query-commands": self.cmd_query_commands, "query-name": lambda args: {},
            "query-target": lambda args: {"arch": "i386"},
            "query-kvm": lambda args: {"enabled": False, "present": False},
            "x-query-jit": lambda args: {"human-readable-text": jit_text(self.control.loop.stats())},
            "x-query-jit-stats": lambda args: self.control.loop.stats(),
        }

    # -- the main loop's side ---------------------------------------------------------------------
    def fds(self) -> list:
        return self.server.fds()

    def poll(self) -> None:
        while True:
            client = self.server.accept()
            if client is None:
                break
            client.state["negotiated"] = False
            self._send(client, {"QMP": {"version": _version(), "capabilities": []}})
        for client in self.server.clients:
            if client.read() or client.inbuf:
                self._serve(client)
        self.server.reap()

    def event(self, name: str, data: dict | None) -> None:
        msg = {"event": name}
        if data is not None:
            msg["data"] = data
        msg["timestamp"] = timestamp()
        for client in self.server.clients:
            if client.state.get("negotiated"):
                self._send(client, msg)

    def finish(self) -> None:
        self.server.close()

    # -- messages ---------------------------------------------------------------------------------------
    @staticmethod
    def _send(client, msg: dict) -> None:
        client.write(json.dumps(msg).encode() + b"\r\n")

    def _serve(self, client) -> None:
        text = client.inbuf.decode("utf-8", "replace")
        pos = 0
        while not client.closed:
            while pos < len(text) and text[pos] in " \t\r\n":
                pos += 1
            if pos >= len(text):
                break
            try:
                msg, end = self.decoder.raw_decode(text, pos)
            except json.JSONDecodeError as exc:
                if exc.pos >= len(text.rstrip()) and len(text) - pos < MAX_MESSAGE:
                    break  # incomplete: wait for the rest
                self._send(client, {"error": {"class": "GenericError", "desc": f"JSON parse error, {exc.msg}"}})
                nl = text.find("\n", exc.pos)  # go on after the line where the error is
                pos = len(text) if nl < 0 else nl + 1
                continue
            pos = end
            self._send(client, self.dispatch(client, msg))
        client.inbuf[:] = text[pos:].encode("utf-8")

    def dispatch(self, client, msg) -> dict:
        if not isinstance(msg, dict):
            return {"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}
        reply: dict
        mid = msg.get("id")
        try:
            name = msg.get("execute")
            if not isinstance(name, str):
                raise QmpError("QMP input lacks member 'execute'")
            extra = set(msg) - {"execute", "arguments", "id"}
            if extra:
                raise QmpError(f"QMP input member '{sorted(extra)[0]}' is unexpected")
            args = msg.get("arguments", {})
            if not isinstance(args, dict):
                raise QmpError("QMP input member 'arguments' must be an object")
            if not client.state.get("negotiated") and name != "qmp_capabilities":
                raise QmpError("Expecting capabilities negotiation with 'qmp_capabilities'", "CommandNotFound")
            fn = self.commands.get(name)
            if fn is None:
                raise QmpError(f"The command {name} has not been found", "CommandNotFound")
            if name == "qmp_capabilities":
                if client.state.get("negotiated"):
                    raise QmpError("Capabilities negotiation is already complete, command ignored",
                                   "CommandNotFound")
                client.state["negotiated"] = True
            reply = {"return": fn(args)}
        except QmpError as exc:
            reply = {"error": {"class": exc.cls, "desc": exc.desc}}
        except MonitorError as exc:
            reply = {"error": {"class": "GenericError", "desc": str(exc)}}
        except Exception as exc:  # noqa: BLE001 - a pyemu bug: an error reply, the machine goes on
            if os.environ.get("PYEMU_DEBUG"):
                raise
            reply = {"error": {"class": "GenericError", "desc": f"internal error: {type(exc).__name__}: {exc}"}}
        if "id" in msg:
            reply["id"] = mid
        return reply

    # -- commands ------------------------------------------------------------------------------------------
    @staticmethod
    def _no_args(args: dict) -> None:
        if args:
            raise QmpError(f"Parameter '{sorted(args)[0]}' is unexpected")

    def cmd_capabilities(self, args: dict) -> dict:
        enable = args.get("enable", [])
        if enable:
            raise QmpError(f"Capability '{enable[0]}' not available")
        return {}

    def cmd_query_status(self, args: dict) -> dict:
        self._no_args(args)
        status = self.control.run_status()
        return {"status": status, "singlestep": False, "running": status == "running"}

    def cmd_stop(self, args: dict) -> dict:
        self._no_args(args)
        self.control.hmp.stop()
        return {}

    def cmd_cont(self, args: dict) -> dict:
        self._no_args(args)
        self.control.hmp.cont()
        return {}

    def cmd_system_reset(self, args: dict) -> dict:
        self._no_args(args)
        self.control.hmp.system_reset()
        return {}

    def cmd_system_powerdown(self, args: dict) -> dict:
        self._no_args(args)
        self.control.hmp.system_powerdown()
        return {}

    def cmd_quit(self, args: dict) -> dict:
        self._no_args(args)
        self.control.hmp.quit()
        return {}

    def cmd_query_cpus_fast(self, args: dict) -> list:
        self._no_args(args)
        return [{"cpu-index": 0, "qom-path": "/machine/unattached/device[0]", "thread-id": os.getpid(),
                 "props": {"core-id": 0, "thread-id": 0, "socket-id": 0}, "target": "i386"}]

    def cmd_hmp(self, args: dict) -> str:
        line = args.get("command-line")
        if not isinstance(line, str):
            raise QmpError("Parameter 'command-line' is missing")
        text = self.control.hmp.execute(line)
        return text.replace("\r\n", "\n").replace("\n", "\r\n")

    def cmd_screendump(self, args: dict) -> dict:
        filename = args.get("filename")
        if not isinstance(filename, str):
            raise QmpError("Parameter 'filename' is missing")
        fmt = args.get("format")  # QEMU: ppm; pyemu: by the extension when not given
        write_screen(self.control.loop.m.vga, filename, fmt)
        return {}

    def cmd_query_commands(self, args: dict) -> list:
        self._no_args(args)
        return [{"name": name} for name in self.commands]
