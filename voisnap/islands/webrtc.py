"""The WebRTC media worker, seen from trio: one child process per server process.

aiortc (asyncio) lives in ``webrtc_worker``, a child process; this module is
the server's narrow door to it. ``MediaWorker.run`` is a service: the worker
process is started at the first call (importing aiortc costs a second and
tens of MiB that a server without browser calls should not pay) and again
after it died. A call is a ``Peer``: the answer to the browser's offer, its
candidates, the caller's speech (``heard``), the agent's speech (``play``),
the peer connection's states, and ``close``, which returns once the worker
has released everything of the call.

Messages are ``voisnap.voice.wire`` frames (docs/webrtc-media-worker.md).
Requests carry an id and get one ``reply``; speech and states flow without
one. A worker that dies fails each of its calls (state ``failed``, speech
ended) and each request waiting for it (``MediaFailed``).
"""

from __future__ import annotations

import itertools
import json
import logging
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from typing import Any

import attrs
import trio

from ..voice.wire import FrameReader, encode

log = logging.getLogger(__name__)

WORKER_MODULE = "voisnap.islands.webrtc_worker"
STARTUP_TIMEOUT = 60.0
REQUEST_TIMEOUT = 15.0
HEARD_WAITING = 50  # 5 s of the caller's speech waiting for the speech pipeline
ENDED_STATES = frozenset({"closed", "failed"})


class MediaFailed(Exception):
    """The media worker could not do what was asked (its reason, client-safe)."""


class Refused(MediaFailed):
    """The worker refused what this call asked (a bad offer or candidate)."""


@attrs.frozen
class IceServer:
    """A STUN or TURN server, as ``RTCIceServer``."""

    urls: tuple[str, ...]
    username: str | None = None
    credential: str | None = None

    def as_json(self) -> dict[str, Any]:
        server: dict[str, Any] = {"urls": list(self.urls)}
        if self.username is not None:
            server["username"] = self.username
        if self.credential is not None:
            server["credential"] = self.credential
        return server


def parse_ice_server(text: str) -> IceServer:
    """``stun:host:port`` or ``turn:USER:CREDENTIAL@host:port?transport=udp``."""
    scheme, _, rest = text.strip().partition(":")
    if scheme not in ("stun", "stuns", "turn", "turns") or not rest:
        raise ValueError(f"not a STUN or TURN URL: {text!r}")
    if "@" not in rest:
        return IceServer((f"{scheme}:{rest}",))
    credentials, _, address = rest.rpartition("@")
    username, colon, credential = credentials.partition(":")
    if not username or not colon or not address:
        raise ValueError(f"credentials are USER:CREDENTIAL@host: {text!r}")
    return IceServer((f"{scheme}:{address}",), username, credential)


class Peer:
    """One call's peer connection in the worker."""

    def __init__(self, worker: MediaWorker, call: str) -> None:
        self._worker = worker
        self.call = call
        self.state = "new"
        self.lost = False  # the worker died under the call
        self.changed = trio.Event()
        self._heard_in, self._heard = trio.open_memory_channel[bytes](HEARD_WAITING)
        self._process: _Process | None = None

    async def answer(self, sdp: str) -> dict[str, Any]:
        """The worker's answer to ``sdp``: ``{sdp, candidates: [[candidate, mid, index]]}``."""
        self._process = await self._worker.process()
        self._process.peers[self.call] = self
        return await self._process.request("offer", self.call, sdp)

    async def add_candidate(self, candidate: str, mid: str | None, index: int | None) -> None:
        await self._live().request("candidate", self.call, candidate, mid, index)

    async def play(self, pcm: bytes) -> None:
        await self._live().tell("speak", self.call, pcm)

    async def flush(self) -> None:
        if self._process is not None and self._process.alive:
            await self._process.tell("flush", self.call)

    async def heard(self) -> AsyncIterator[bytes]:
        """The caller's speech (16 kHz PCM), until the call ends."""
        async for pcm in self._heard:
            yield pcm

    async def wait_for(self, states: frozenset[str]) -> str:
        while self.state not in states:
            await self.changed.wait()
        return self.state

    async def close(self) -> None:
        """Release the call in the worker (bounded: a worker that does not
        answer is killed), then here."""
        process, self._process = self._process, None
        if process is not None:
            process.peers.pop(self.call, None)
            if process.alive:
                with trio.CancelScope(shield=True), trio.move_on_after(REQUEST_TIMEOUT):
                    try:
                        await process.request("close", self.call)
                    except MediaFailed as error:
                        log.warning("a call was not closed in the media worker: %s", error)
        self._ended("closed")

    def _live(self) -> _Process:
        if self._process is None or not self._process.alive:
            raise MediaFailed("There is no peer connection for this call.")
        return self._process

    def _heard_speech(self, pcm: bytes) -> None:
        try:
            self._heard_in.send_nowait(pcm)
        except (trio.WouldBlock, trio.ClosedResourceError):
            pass  # the speech pipeline fell 5 s behind: drop, as a network would

    def _new_state(self, state: str) -> None:
        if self.state in ENDED_STATES:
            return
        self.state = state
        self.changed.set()
        self.changed = trio.Event()
        if state in ENDED_STATES:
            self._heard_in.close()

    def _ended(self, state: str) -> None:
        self._new_state(state)
        self._heard_in.close()


class _Process:
    """A live worker process: one writer at a time, one reader, requests by id."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.alive = True
        self.peers: dict[str, Peer] = {}
        self._lock = trio.StrictFIFOLock()
        self._frames = FrameReader()
        self._ids = itertools.count(1)
        self._replies: dict[int, trio.MemorySendChannel] = {}

    async def tell(self, *message: object) -> None:
        try:
            async with self._lock:
                await self.process.stdin.send_all(encode(*message))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise MediaFailed("The media worker is gone.") from None

    async def request(self, kind: str, *arguments: object) -> Any:
        rid = next(self._ids)
        send, receive = trio.open_memory_channel[tuple[bool, Any]](1)
        self._replies[rid] = send
        try:
            await self.tell(kind, rid, *arguments)
            with trio.fail_after(REQUEST_TIMEOUT):
                ok, value = await receive.receive()
        except trio.TooSlowError:
            raise MediaFailed("The media worker did not answer in time.") from None
        except trio.EndOfChannel:
            raise MediaFailed("The media worker is gone.") from None
        finally:
            self._replies.pop(rid, None)
        if not ok:
            raise Refused(value)
        return value

    async def receive(self) -> list | None:
        while (message := self._frames.next_message()) is None:
            data = await self.process.stdout.receive_some(65536)
            if not data:
                return None
            self._frames.receive_data(data)
        return message

    async def serve(self) -> None:
        """Route what the worker says until it goes away; then fail what waited."""
        try:
            while (message := await self.receive()) is not None:
                self._route(message)
        except ValueError as error:  # a broken frame: the worker cannot be trusted
            log.error("the media worker sent garbage (%s); it is stopped", error)
        finally:
            self.alive = False
            for send in self._replies.values():
                send.close()
            for peer in list(self.peers.values()):
                peer.lost = True
                peer._ended("failed")

    def _route(self, message: list) -> None:
        match message:
            case ["reply", int(rid), bool(ok), value]:
                send = self._replies.get(rid)
                if send is not None:
                    send.send_nowait((ok, value))
            case ["state", str(call), str(state)]:
                if (peer := self.peers.get(call)) is not None:
                    peer._new_state(state)
            case ["heard", str(call), bytes(pcm)]:
                if (peer := self.peers.get(call)) is not None:
                    peer._heard_speech(pcm)


class MediaWorker:
    """The server's media worker: started on demand, replaced when it dies."""

    def __init__(self, ice_servers: Sequence[IceServer] = (), host: str | None = None) -> None:
        self.ice_servers = tuple(ice_servers)
        self._config = json.dumps(
            {"iceServers": [server.as_json() for server in self.ice_servers], "host": host}
        )
        self._nursery: trio.Nursery | None = None
        self._current: _Process | None = None
        self._starting = trio.Lock()
        self._calls = itertools.count(1)
        self.restarts = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    def peer(self) -> Peer:
        return Peer(self, f"c{next(self._calls)}")

    async def process(self) -> _Process:
        """The live worker process, started if there is none."""
        async with self._starting:
            if self._current is None or not self._current.alive:
                assert self._nursery is not None, "run() the service first"
                try:
                    self._current = await self._nursery.start(self._keep_process)
                except (OSError, MediaFailed, trio.TooSlowError) as error:
                    raise MediaFailed(f"The media worker could not be started: {error}") from None
            return self._current

    @property
    def pid(self) -> int | None:
        current = self._current
        return current.process.pid if current is not None and current.alive else None

    async def _keep_process(self, *, task_status: trio.TaskStatus[_Process]) -> None:
        command = (sys.executable, "-m", WORKER_MODULE, self._config)
        process = await trio.lowlevel.open_process(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        worker = _Process(process)
        try:
            with trio.fail_after(STARTUP_TIMEOUT):
                ready = await worker.receive()
            if not ready or ready[0] != "ready":
                raise MediaFailed(f"it said {ready!r}")
            task_status.started(worker)
            await worker.serve()
            if self._current is worker:
                self.restarts += 1
                log.error("the media worker (pid %d) stopped; its calls failed", process.pid)
        finally:
            worker.alive = False
            process.kill()
            with trio.CancelScope(shield=True):
                await process.wait()
                await process.stdin.aclose()
                await process.stdout.aclose()
