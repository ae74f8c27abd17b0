"""Cutting off a client under hypercorn.

hypercorn shields its socket writes, so a write stuck on a client that stopped
reading never returns and cannot be cancelled. A transport that must evict such
a client (ASGI WebSocket, Server-Sent Events, long polling) shuts the socket
down: the stuck write then fails, and hypercorn closes the socket. SO_LINGER 0
first, so that the close resets the connection and the kernel frees the
buffers it holds for the client at once.
"""

from __future__ import annotations

import contextlib
import socket
import struct

LINGER_ABORT = struct.pack("ii", 1, 0)


def cut_off(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_ABORT)
        sock.shutdown(socket.SHUT_RDWR)
