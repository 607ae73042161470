"""Server sockets for the monitor and QMP: `unix:PATH,server[,nowait]` and `tcp:HOST:PORT,server[,nowait]`.

QEMU's character-device spec, reduced to what a monitor needs: a listening socket (bound and
listening as soon as pyemu starts, so a bad path or a port in use is a command-line error), polled
without blocking from the main loop, with any number of clients, each a non-blocking socket with
an input buffer. Without `nowait` (QEMU's `wait=on`, the default) pyemu waits for the first client
before the guest starts.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import stat


class ChardevError(ValueError):
    """A bad spec, or a socket that cannot be made; reported as one line by the CLI."""


class ServerSpec:
    def __init__(self, kind: str, address, wait: bool, text: str):
        self.kind = kind  # "unix" or "tcp"
        self.address = address  # path, or (host, port)
        self.wait = wait
        self.text = text


def parse_server(spec: str, option: str) -> ServerSpec:
    """`unix:PATH,server[,nowait]` or `tcp:[HOST]:PORT,server[,nowait]` (also `server=on`, `wait=off`)."""
    main, *opts = spec.split(",")
    server, wait = False, True
    for opt in opts:
        if opt in ("server", "server=on"):
            server = True
        elif opt in ("nowait", "wait=off"):
            wait = False
        elif opt in ("wait", "wait=on"):
            wait = True
        elif opt in ("nodelay", "ipv4", "ipv4=on", "reconnect=0"):
            pass
        else:
            raise ChardevError(f"{option} {spec}: unsupported option {opt!r}")
    kind, sep, rest = main.partition(":")
    if not sep or kind not in ("unix", "tcp") or not rest:
        kinds = "stdio, " if option == "-monitor" else ""
        raise ChardevError(f"{option} {spec}: expected {kinds}unix:PATH,server or tcp:HOST:PORT,server")
    if not server:
        raise ChardevError(f"{option} {spec}: pyemu only listens: add ',server'")
    if kind == "unix":
        return ServerSpec("unix", rest, wait, spec)
    host, colon, port_text = rest.rpartition(":")
    if not colon:
        raise ChardevError(f"{option} {spec}: expected tcp:HOST:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        port = int(port_text, 10)
    except ValueError:
        raise ChardevError(f"{option} {spec}: bad port {port_text!r}") from None
    if not 0 < port < 65536:
        raise ChardevError(f"{option} {spec}: port {port} out of range")
    return ServerSpec("tcp", (host, port), wait, spec)


class Client:
    """One connection: bytes in (buffered until the owner takes them), bytes out (best effort)."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        sock.setblocking(False)
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self.closed = False
        self.state: dict = {}  # the protocol's per-client state

    def fileno(self) -> int:
        return self.sock.fileno()

    def read(self) -> bool:
        """Take what has arrived; False when nothing did."""
        got = False
        while not self.closed:
            try:
                data = self.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                data = b""
            if not data:
                self.closed = True
                break
            self.inbuf += data
            got = True
        return got

    def write(self, data: bytes) -> None:
        if self.closed:
            return
        self.outbuf += data
        self.flush()

    def flush(self, timeout: float = 0.0) -> None:
        """Send what is queued; waits up to `timeout` seconds for a slow reader."""
        while self.outbuf and not self.closed:
            try:
                n = self.sock.send(self.outbuf)
                del self.outbuf[:n]
            except (BlockingIOError, InterruptedError):
                if timeout <= 0:
                    return
                _, ready, _ = select.select([], [self.sock], [], timeout)
                if not ready:
                    return
            except OSError:
                self.closed = True

    def close(self) -> None:
        if not self.closed:
            self.flush(0.5)
        self.closed = True
        try:
            self.sock.close()
        except OSError:
            pass


class Server:
    """A listening socket and its clients."""

    def __init__(self, spec: ServerSpec, option: str):
        self.spec = spec
        self.option = option
        self.clients: list[Client] = []
        self.path: str | None = None
        if spec.kind == "unix":
            self.sock = self._unix(spec.address)
        else:
            self.sock = self._tcp(*spec.address)
        self.sock.setblocking(False)

    def _unix(self, path: str) -> socket.socket:
        try:
            if stat.S_ISSOCK(os.stat(path).st_mode):
                os.unlink(path)  # a stale socket of an earlier run, as QEMU
        except OSError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(path)
            sock.listen(4)
        except OSError as exc:
            sock.close()
            raise ChardevError(f"{self.option} {self.spec.text}: {path}: {exc.strerror or exc}") from None
        self.path = path
        return sock

    def _tcp(self, host: str, port: int) -> socket.socket:
        try:
            infos = socket.getaddrinfo(host or None, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0,
                                       socket.AI_PASSIVE)
        except socket.gaierror as exc:
            raise ChardevError(f"{self.option} {self.spec.text}: {exc.strerror or exc}") from None
        infos.sort(key=lambda i: i[0] != socket.AF_INET)
        family, kind, proto, _, addr = infos[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(addr)
            sock.listen(4)
        except OSError as exc:
            sock.close()
            what = "port in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
            raise ChardevError(f"{self.option} {self.spec.text}: cannot listen on port {port}: {what}") from None
        return sock

    def fileno(self) -> int:
        return self.sock.fileno()

    def accept(self) -> Client | None:
        try:
            conn, _ = self.sock.accept()
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:
            return None
        if conn.family != socket.AF_UNIX:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client = Client(conn)
        self.clients.append(client)
        return client

    def fds(self) -> list:
        return [self.sock, *(c for c in self.clients if not c.closed)]

    def reap(self) -> None:
        self.clients = [c for c in self.clients if not c.closed]

    def close(self) -> None:
        for c in self.clients:
            c.close()
        self.clients = []
        try:
            self.sock.close()
        except OSError:
            pass
        if self.path is not None:
            try:
                os.unlink(self.path)
            except OSError:
                pass
            self.path = None
