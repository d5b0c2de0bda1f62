"""A TCP proxy a test can cut, standing between the bot and its PostgreSQL server.

`cut("refuse")` is the server going away (a restart, a failover): every open connection is
closed and new ones are closed as soon as they are accepted. `cut("blackhole")` is the network
going away: connections stay open but no byte passes either way (a query waits with no answer,
as behind a partition), and new connections get no answer either. `heal()` lets bytes through
again: held connections carry on where they were, new ones reach the server.
"""

from __future__ import annotations

import socket
import threading
from contextlib import suppress
from typing import Literal

Mode = Literal["refuse", "blackhole"]


class TcpProxy:
    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._refusing = False
        self._open = threading.Event()  # set: bytes pass
        self._open.set()
        self._closed = False
        self.refused = 0  # connections closed on arrival while cut (refuse)
        threading.Thread(target=self._accept, name="tcp-proxy", daemon=True).start()

    def cut(self, mode: Mode) -> None:
        with self._lock:
            if mode == "refuse":
                self._refusing = True
                for s in self._sockets:
                    with suppress(OSError):
                        s.shutdown(socket.SHUT_RDWR)
                    with suppress(OSError):
                        s.close()
                self._sockets.clear()
            else:
                self._open.clear()

    def heal(self) -> None:
        with self._lock:
            self._refusing = False
            self._open.set()

    def close(self) -> None:
        self._closed = True
        self.heal()
        with suppress(OSError):
            self._listener.close()
        self.cut("refuse")

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                refusing = self._refusing
            if refusing:
                self.refused += 1
                client.close()
                continue
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        self._open.wait()  # a blackhole: the connection is accepted, and nothing answers
        try:
            server = socket.create_connection(self.upstream, timeout=5)
            server.settimeout(None)
        except OSError:
            client.close()
            return
        with self._lock:
            if self._refusing:
                client.close()
                server.close()
                return
            self._sockets.update((client, server))
        for src, dst in ((client, server), (server, client)):
            threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                self._open.wait()  # a blackhole holds what arrived until heal()
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._sockets.discard(src)
                self._sockets.discard(dst)
            for s in (src, dst):
                with suppress(OSError):
                    s.close()

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
