"""A TCP proxy on 127.0.0.1 that can drop every connection through it at once.

For stateful-reconnect tests: the client talks to the server through the proxy;
``drop_all()`` resets both sides of every proxied connection (SO_LINGER 0), as a
network failure would, without the client or the server closing anything.
Runs in a thread of its own, so that tests driving other processes can use it.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import struct
import threading

LINGER_ABORT = struct.pack("ii", 1, 0)


class TcpProxy:
    def __init__(self, target_port: int) -> None:
        self._target = ("127.0.0.1", target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self.connections_made = 0
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._waker_r, self._waker_w = socket.socketpair()
        self._selector.register(self._waker_r, selectors.EVENT_READ)
        self._running = True
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def drop_all(self) -> int:
        """Reset every connection through the proxy; how many were dropped."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for client, server in pairs:
            for sock in (client, server):
                with contextlib.suppress(OSError, KeyError, ValueError):
                    self._selector.unregister(sock)
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_ABORT)
                    sock.close()
        self._waker_w.send(b"x")
        return len(pairs)

    def close(self) -> None:
        self._running = False
        self.drop_all()
        self._thread.join(5)
        self._listener.close()

    def _run(self) -> None:
        while self._running:
            for key, _ in self._selector.select(timeout=0.5):
                sock = key.fileobj
                if sock is self._listener:
                    self._accept()
                elif sock is self._waker_r:
                    self._waker_r.recv(4096)
                else:
                    self._forward(sock, key.data)

    def _accept(self) -> None:
        client, _ = self._listener.accept()
        server = socket.create_connection(self._target)
        for sock in (client, server):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self._pairs.append((client, server))
            self.connections_made += 1
        self._selector.register(client, selectors.EVENT_READ, server)
        self._selector.register(server, selectors.EVENT_READ, client)

    def _forward(self, source: socket.socket, destination: socket.socket) -> None:
        try:
            data = source.recv(65536)
            if data:
                destination.sendall(data)
                return
        except OSError:
            pass
        self._close_pair(source, destination)

    def _close_pair(self, one: socket.socket, other: socket.socket) -> None:
        with self._lock:
            self._pairs = [p for p in self._pairs if one not in p]
        for sock in (one, other):
            with contextlib.suppress(OSError, KeyError, ValueError):
                self._selector.unregister(sock)
            with contextlib.suppress(OSError):
                sock.close()
