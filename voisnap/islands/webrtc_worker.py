"""The WebRTC media worker: aiortc peer connections in a child process.

aiortc runs on asyncio, which does not run under trio, and its media work
(Opus, SRTP) holds the GIL; so it runs here, in a process of its own, started
by ``voisnap.islands.webrtc.MediaWorker`` as ``python -m
voisnap.islands.webrtc_worker CONFIG``. It speaks ``voisnap.voice.wire``'s
framing (length-prefixed msgpack) on its standard input and output; the
messages are in docs/webrtc-media-worker.md:

server -> worker                             worker -> server
  ["offer", rid, call, sdp]                    ["ready", pid]
  ["candidate", rid, call, cand, mid, index]   ["reply", rid, ok, value]
  ["close", rid, call]                         ["state", call, state]
  ["speak", call, pcm]   (no reply)            ["heard", call, pcm]
  ["flush", call]        (no reply)

``pcm`` is 16 kHz mono signed 16-bit little-endian, both ways: the speech
pipeline's format. A failure of one call is that call's (a ``reply`` with
``ok`` false); nothing one peer sends can stop the worker.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import fractions
import gc
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import aioice.ice
import av
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError
from aiortc.sdp import SessionDescription, candidate_from_sdp

from ..voice.wire import FrameReader, encode

log = logging.getLogger("voisnap.webrtc.worker")

RATE = 16_000
FRAME_SAMPLES = 320  # 20 ms: what WebRTC carries per packet
HEARD_BYTES = 3_200  # 100 ms of the caller's speech per message to the server
MOST_BUFFERED = RATE * 2 * 10  # bytes of the agent's speech waiting: 10 s
TIME_BASE = fractions.Fraction(1, RATE)
ENCODERS = 2


class AgentVoice(MediaStreamTrack):
    """The outgoing track: the agent's speech as it is given, silence between."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._waiting = bytearray()
        self._started: float | None = None
        self._pts = 0

    def play(self, pcm: bytes) -> None:
        room = MOST_BUFFERED - len(self._waiting)
        self._waiting += pcm[: max(room, 0)]

    def flush(self) -> None:
        self._waiting.clear()

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._started is None:
            self._started = now
        else:  # real time: one frame every 20 ms
            await asyncio.sleep(max(0.0, self._started + self._pts / RATE - now))
        size = FRAME_SAMPLES * 2
        data = bytes(self._waiting[:size]).ljust(size, b"\0")
        del self._waiting[:size]
        frame = av.AudioFrame(format="s16", layout="mono", samples=FRAME_SAMPLES)
        frame.planes[0].update(data)
        frame.sample_rate, frame.pts, frame.time_base = RATE, self._pts, TIME_BASE
        self._pts += FRAME_SAMPLES
        return frame


class PeerCall:
    """One browser's peer connection."""

    def __init__(self, call: str, configuration: RTCConfiguration, worker: Worker) -> None:
        self.call = call
        self._worker = worker
        self.pc = RTCPeerConnection(configuration)
        self.voice = AgentVoice()
        self._listening: asyncio.Task | None = None
        self.pc.on("track", self._on_track)
        self.pc.on("connectionstatechange", self._on_state)

    async def answer(self, sdp: str) -> dict[str, Any]:
        if not sdp.startswith("v=0"):
            raise ValueError("The offer is not SDP: SDP begins with v=0.")
        if any(ord(character) < 32 and character not in "\r\n\t" for character in sdp):
            raise ValueError("The offer has control characters.")
        parsed = SessionDescription.parse(sdp)  # raises on what it cannot read
        audio = [media for media in parsed.media if media.kind == "audio"]
        if not audio:
            raise ValueError("The offer has no audio section.")
        if not all(media.dtls and media.dtls.fingerprints for media in audio):
            # Without one DTLS cannot be checked: the call could never connect.
            raise ValueError("The offer's audio has no DTLS fingerprint.")
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        self.pc.addTrack(self.voice)
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        answer = self.pc.localDescription.sdp
        return {"sdp": answer, "candidates": candidates_of(answer)}

    async def add_candidate(self, candidate: str, mid: str | None, index: int | None) -> None:
        if not candidate:
            return  # the end of the browser's candidates
        try:
            parsed = candidate_from_sdp(candidate.removeprefix("candidate:"))
        except Exception:  # aiortc's parser fails in several ways on garbage
            raise ValueError(f"Not an ICE candidate: {candidate[:80]!r}") from None
        parsed.sdpMid, parsed.sdpMLineIndex = mid, index
        await self.pc.addIceCandidate(parsed)

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio" and self._listening is None:
            self._listening = asyncio.ensure_future(self._listen(track))

    def _on_state(self) -> None:
        self._worker.send("state", self.call, self.pc.connectionState)

    async def _listen(self, track: MediaStreamTrack) -> None:
        """The caller's speech: Opus decoded by aiortc, resampled to 16 kHz mono."""
        resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
        heard = bytearray()
        try:
            while True:
                frame = await track.recv()
                for piece in resampler.resample(frame):
                    heard += bytes(piece.planes[0])[: piece.samples * 2]
                while len(heard) >= HEARD_BYTES:
                    self._worker.send("heard", self.call, bytes(heard[:HEARD_BYTES]))
                    del heard[:HEARD_BYTES]
        except MediaStreamError:
            return  # the track ended

    async def close(self) -> None:
        if self._listening is not None:
            self._listening.cancel()
        self.voice.stop()
        await self.pc.close()


def candidates_of(sdp: str) -> list[list[Any]]:
    """``[candidate, mid, index]`` for each candidate in ``sdp``."""
    found: list[list[Any]] = []
    index, mid = -1, None
    for line in sdp.splitlines():
        if line.startswith("m="):
            index, mid = index + 1, None
        elif line.startswith("a=mid:"):
            mid = line.removeprefix("a=mid:")
        elif line.startswith("a=candidate:") and index >= 0:
            found.append([line.removeprefix("a="), mid, index])
    return found


class Worker:
    def __init__(self, configuration: RTCConfiguration, write: Callable[[bytes], None]) -> None:
        self._configuration = configuration
        self._write = write
        self.calls: dict[str, PeerCall] = {}
        self._answering: set[asyncio.Future] = set()

    def send(self, *message: object) -> None:
        self._write(encode(*message))

    async def handle(self, message: list) -> None:
        match message:
            case ["speak", str(call), bytes(pcm)]:
                if call in self.calls:
                    self.calls[call].voice.play(pcm)
            case ["flush", str(call)]:
                if call in self.calls:
                    self.calls[call].voice.flush()
            case [str(kind), int(rid), *arguments]:
                answering = asyncio.ensure_future(self._answer(rid, kind, arguments))
                self._answering.add(answering)  # the loop keeps only a weak reference
                answering.add_done_callback(self._answering.discard)

    async def _answer(self, rid: int, kind: str, arguments: list) -> None:
        try:
            value = await self._request(kind, arguments)
        except Exception as error:  # this call's failure: said, and the worker goes on
            self.send("reply", rid, False, str(error) or type(error).__name__)
        else:
            self.send("reply", rid, True, value)

    async def _request(self, kind: str, arguments: list) -> Any:
        match kind, arguments:
            case "offer", [str(call), str(sdp)]:
                if call in self.calls:
                    raise ValueError("This call already has a peer connection.")
                peer = self.calls[call] = PeerCall(call, self._configuration, self)
                try:
                    return await peer.answer(sdp)
                except BaseException:
                    del self.calls[call]
                    await peer.close()
                    raise
            case "candidate", [str(call), str(candidate), mid, index]:
                peer = self.calls.get(call)
                if peer is None:
                    raise ValueError("There is no peer connection for this call.")
                await peer.add_candidate(candidate, mid, index)
                return None
            case "close", [str(call)]:
                peer = self.calls.pop(call, None)
                if peer is not None:
                    await peer.close()
                    # aiortc's objects hold each other in cycles: collected only
                    # now, the call's codecs (and their threads) go at once.
                    del peer
                    gc.collect()
                return None
        raise ValueError(f"Not a request: {kind}")


def configuration_of(config: dict[str, Any]) -> RTCConfiguration:
    servers = [
        RTCIceServer(urls=server["urls"], username=server.get("username"),
                     credential=server.get("credential"))
        for server in config.get("iceServers", [])
    ]
    return RTCConfiguration(iceServers=servers)


def limit_host_candidates(host: str | None) -> None:
    """``--webrtc-host``: offer only this address. aioice gathers every
    interface's addresses and skips loopback; tests need exactly 127.0.0.1."""
    if host:
        aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: [host]


def start_encoders(loop: asyncio.AbstractEventLoop) -> None:
    """aiortc encodes outgoing audio in the loop's default executor. A pool of
    ``ENCODERS`` threads, all started now: otherwise asyncio's grows a thread
    at a time under load (up to six), and the worker's threads would not say
    whether a call left one behind."""
    pool = concurrent.futures.ThreadPoolExecutor(ENCODERS, thread_name_prefix="encoder")
    everyone = threading.Barrier(ENCODERS)
    for _ in range(ENCODERS):  # each waits for the others: every thread exists
        pool.submit(everyone.wait)
    loop.set_default_executor(pool)


async def serve(config: dict[str, Any]) -> None:
    loop = asyncio.get_running_loop()
    start_encoders(loop)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
    output = sys.stdout.buffer
    worker = Worker(configuration_of(config), lambda data: (output.write(data), output.flush()))
    limit_host_candidates(config.get("host"))
    worker.send("ready", os.getpid())
    frames = FrameReader()
    while data := await reader.read(65536):
        frames.receive_data(data)
        while (message := frames.next_message()) is not None:
            await worker.handle(message)
    for peer in list(worker.calls.values()):  # the server is gone
        await peer.close()


def main() -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(serve(json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}))


if __name__ == "__main__":
    main()
