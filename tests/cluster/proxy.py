"""A TCP proxy that sends new connections to the process the test chooses, and can cut them.

For stateful reconnect across processes: the client's first WebSocket goes to process A
(``steer(0)``); the test then steers new connections to process B (``steer(1)``), holds them
(``hold()``: accepted, not forwarded, their bytes wait in the kernel), resets every proxied
connection at once (``drop_all()``, SO_LINGER 0, as a network failure would), and lets the
held ones through to B (``release()``). ``connections_to[i]`` counts the connections given to
backend ``i``. Built on ``tests/support/tcp_proxy.TcpProxy`` (its own thread, a selector).
"""

from __future__ import annotations

import selectors
import socket
from collections.abc import Sequence

from tests.support.tcp_proxy import TcpProxy


class SteeringProxy(TcpProxy):
    def __init__(self, ports: Sequence[int]) -> None:
        self.ports = list(ports)
        self.connections_to = [0] * len(self.ports)
        self._route = 0
        self._holding = False
        self._held: list[socket.socket] = []
        super().__init__(self.ports[0])

    def steer(self, index: int) -> None:
        """New connections go to backend ``index`` from now on."""
        with self._lock:
            self._route = index

    def hold(self) -> None:
        with self._lock:
            self._holding = True

    def release(self) -> None:
        with self._lock:
            self._holding = False
            held, self._held = self._held, []
        for client in held:
            self._pair(client)

    def _accept(self) -> None:
        client, _ = self._listener.accept()
        with self._lock:
            if self._holding:
                self._held.append(client)
                return
        self._pair(client)

    def _pair(self, client: socket.socket) -> None:
        with self._lock:
            index = self._route
        server = socket.create_connection(("127.0.0.1", self.ports[index]))
        for sock in (client, server):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self._pairs.append((client, server))
            self.connections_made += 1
            self.connections_to[index] += 1
        self._selector.register(client, selectors.EVENT_READ, server)
        self._selector.register(server, selectors.EVENT_READ, client)
        self._waker_w.send(b"x")

    def close(self) -> None:
        with self._lock:
            held, self._held = self._held, []
        for client in held:
            client.close()
        super().close()
