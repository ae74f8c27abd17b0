"""Peer: python-socketio (ASGI) under uvicorn, broadcasting to a room.

Every client joins the room ``bench`` on connect; a ``publish`` event is emitted
to the room as ``message``.

    python -m bench.peers.socketio_server --port 8766
"""

from __future__ import annotations

import argparse
import socket

import socketio
import uvicorn

sio = socketio.AsyncServer(async_mode="asgi", cors_allowed_origins="*")
app = socketio.ASGIApp(sio)


@sio.event
async def connect(sid: str, environ: dict) -> None:
    await sio.enter_room(sid, "bench")


@sio.event
async def publish(sid: str, data: object) -> None:
    await sio.emit("message", data, room="bench")


def main(host: str, port: int) -> None:
    listener = socket.create_server((host, port), backlog=4096)
    bound = listener.getsockname()
    print(f"listening on http://{bound[0]}:{bound[1]}", flush=True)
    config = uvicorn.Config(app, log_level="warning", ws_per_message_deflate=False, backlog=4096)
    uvicorn.Server(config).run(sockets=[listener])


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    arguments = parser.parse_args()
    main(arguments.host, arguments.port)
