"""SphinxPool: PocketSphinx decoding in N worker processes, driven from trio.

Theory of operation: ``run()`` is a service (start it in the app nursery). It
keeps ``workers`` slots, each holding one child process running
``python -m voisnap.voice.worker``; a slot whose process exits fails that
process' streams with ``SttError`` and starts a new process. ``open_stream``
places a stream on the least loaded live worker, or raises ``SttBusy`` when
every worker already serves ``streams_per_worker`` streams.

Backpressure is by credit: a stream may have ``buffer_chunks`` chunks of audio
(``chunk_bytes`` each at most) sent but not yet decoded. The worker answers
every chunk with an "ack", which returns the credit; without a credit,
``feed`` waits. So a stream holds at most ``buffer_chunks * chunk_bytes``
bytes in the pipe and the worker, however fast the caller feeds, and the
caller's own buffers are where the rest waits.

Results flow the other way through one reader task per worker, which never
waits for a consumer: results go into each stream's bounded memory channel
with ``send_nowait``. An ``Interim`` that does not fit is dropped (a later one
supersedes it); a ``Final`` that does not fit fails the stream, like a slow
consumer's eviction, rather than stalling every other stream of the worker.
"""

from __future__ import annotations

import itertools
import logging
import subprocess
import sys
from collections.abc import AsyncIterator

import attrs
import trio

from .audio import chunks
from .base import Final, Interim, SttBusy, SttError
from .endpointing import check_pause
from .wire import FrameReader, encode

log = logging.getLogger(__name__)

WORKER_COMMAND = (sys.executable, "-m", "voisnap.voice.worker")
#: Loading the acoustic model takes about a second; a slow machine gets more.
STARTUP_TIMEOUT = 60.0
#: Results waiting in a stream for its reader (finals are one per utterance).
EVENTS_CAPACITY = 64
_DONE = object()


@attrs.frozen
class PoolStatistics:
    workers: int  # live worker processes
    streams: int  # open streams over all workers
    capacity: int  # workers * streams_per_worker
    buffer_chunks: int  # the bound on chunks in flight per stream
    chunks_in_flight: int  # now, over all streams
    max_chunks_in_flight: int  # the most any one stream ever had in flight
    restarts: int  # worker processes replaced after dying


class _WorkerProcess:
    """One child process: a single write point (a lock) and a single reader."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.streams: dict[int, SphinxStream] = {}
        self._lock = trio.StrictFIFOLock()
        self._reader = FrameReader()

    @property
    def pid(self) -> int:
        return self.process.pid

    async def send(self, *message: object) -> None:
        try:
            async with self._lock:
                await self.process.stdin.send_all(encode(*message))
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise SttError(f"speech worker {self.pid} is gone") from exc

    async def receive(self) -> list | None:
        """The next message, or None when the process closed its stdout."""
        while (message := self._reader.next_message()) is None:
            data = await self.process.stdout.receive_some(65536)
            if not data:
                return None
            self._reader.receive_data(data)
        return message

    async def serve(self) -> None:
        """Route results to streams until the process goes away."""
        while (message := await self.receive()) is not None:
            stream = self.streams.get(message[1]) if len(message) > 1 else None
            if stream is None:
                continue  # a closed stream's results still in the pipe
            match message:
                case ["ack", _]:
                    stream._on_ack()
                case ["interim", _, str(text)]:
                    stream._deliver(Interim(text))
                case ["final", _, str(text), float(confidence)]:
                    stream._deliver(Final(text, confidence))
                case ["done", _]:
                    stream._deliver(_DONE)
                case ["error", _, str(reason)]:
                    stream._fail(SttError(reason))

    def fail_streams(self, error: SttError) -> None:
        for stream in list(self.streams.values()):
            stream._fail(error)
        self.streams.clear()


class SphinxPool:
    """The offline default ``SpeechToText``: PocketSphinx in worker processes."""

    def __init__(
        self,
        workers: int = 1,
        streams_per_worker: int = 4,
        buffer_chunks: int = 32,
        *,
        chunk_bytes: int = 8000,
        full_final: bool = False,
    ) -> None:
        if workers < 1 or streams_per_worker < 1 or buffer_chunks < 1:
            raise ValueError("workers, streams_per_worker and buffer_chunks are at least 1")
        if chunk_bytes < 2 or chunk_bytes % 2:
            raise ValueError("chunk_bytes is a positive even number")
        self._slots: list[_WorkerProcess | None] = [None] * workers
        self._streams_per_worker = streams_per_worker
        self._buffer_chunks = buffer_chunks
        self._chunk_bytes = chunk_bytes
        self._full_final = full_final
        self._ids = itertools.count(1)
        self._restarts = 0
        self._max_in_flight = 0
        self._slots_changed = trio.Event()

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Start the workers (``started`` once all are ready); replace dead ones, forever."""
        async with trio.open_nursery() as nursery:
            for slot in range(len(self._slots)):
                await nursery.start(self._keep_slot, slot)
            task_status.started()

    async def _keep_slot(self, slot: int, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """One slot, forever. The first start's failure is the caller's (``run`` fails);
        a replacement's is logged and retried, since streams on other slots go on."""
        first = True
        while True:
            started_at = trio.current_time()
            try:
                await self._serve_one_worker(slot, task_status)
            except (SttError, OSError, trio.TooSlowError):
                if first:
                    raise
                log.exception("a replacement speech worker failed to start")
            first = False
            task_status = trio.TASK_STATUS_IGNORED
            self._restarts += 1
            if trio.current_time() - started_at < 1.0:
                await trio.sleep(1.0)  # a worker that cannot start must not spin the CPU

    async def _serve_one_worker(self, slot: int, task_status) -> None:
        async with _StartedWorker() as worker:
            self._set_slot(slot, worker)
            task_status.started()
            try:
                await worker.serve()
            finally:
                self._set_slot(slot, None)
                code = worker.process.poll()
                worker.fail_streams(SttError(f"speech worker {worker.pid} died (exit {code})"))
        log.warning("speech worker %d exited; starting another", worker.pid)

    def _set_slot(self, slot: int, worker: _WorkerProcess | None) -> None:
        self._slots[slot] = worker
        self._slots_changed.set()
        self._slots_changed = trio.Event()

    async def wait_all_workers(self) -> None:
        """Wait until every slot has a live worker (after a start or a replacement)."""
        while None in self._slots:
            await self._slots_changed.wait()

    async def open_stream(self, *, auto: bool, pause: float = 0.5) -> SphinxStream:
        if auto:
            check_pause(pause)  # here, not in the worker: its error would cost a round trip
        live = [worker for worker in self._slots if worker is not None]
        if not live:
            raise SttError("no speech worker is running (is SphinxPool.run started?)")
        worker = min(live, key=lambda candidate: len(candidate.streams))
        if len(worker.streams) >= self._streams_per_worker:
            raise SttBusy(
                f"all {len(live)} speech workers serve {self._streams_per_worker} streams each"
            )
        stream = SphinxStream(self, worker, next(self._ids))
        worker.streams[stream.sid] = stream  # reserved before the await below
        try:
            await worker.send("open", stream.sid, auto, float(pause), self._full_final)
        except SttError:
            worker.streams.pop(stream.sid, None)
            raise
        return stream

    def worker_pids(self) -> list[int]:
        return [worker.pid for worker in self._slots if worker is not None]

    def statistics(self) -> PoolStatistics:
        live = [worker for worker in self._slots if worker is not None]
        streams = [stream for worker in live for stream in worker.streams.values()]
        return PoolStatistics(
            workers=len(live),
            streams=len(streams),
            capacity=len(self._slots) * self._streams_per_worker,
            buffer_chunks=self._buffer_chunks,
            chunks_in_flight=sum(stream.chunks_in_flight for stream in streams),
            max_chunks_in_flight=self._max_in_flight,
            restarts=self._restarts,
        )

    def _note_in_flight(self, count: int) -> None:
        self._max_in_flight = max(self._max_in_flight, count)


class _StartedWorker:
    """``async with``: a worker process that has said "ready"; killed on exit."""

    async def __aenter__(self) -> _WorkerProcess:
        process = await trio.lowlevel.open_process(
            WORKER_COMMAND, stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        self.worker = _WorkerProcess(process)
        try:
            with trio.fail_after(STARTUP_TIMEOUT):
                ready = await self.worker.receive()
        except BaseException:
            await self.__aexit__()
            raise
        if not ready or ready[0] != "ready":
            await self.__aexit__()
            raise SttError(f"speech worker {process.pid} did not start: {ready!r}")
        return self.worker

    async def __aexit__(self, *exc_info: object) -> None:
        process = self.worker.process
        process.kill()
        # Bounded: a killed process is reaped at once.
        with trio.CancelScope(shield=True):
            await process.wait()
            await process.stdin.aclose()
            await process.stdout.aclose()


class SphinxStream:
    """A ``SpeechStream`` decoded by one worker of a ``SphinxPool``."""

    def __init__(self, pool: SphinxPool, worker: _WorkerProcess, sid: int) -> None:
        self.sid = sid
        self._pool = pool
        self._worker = worker
        self._credits = trio.Semaphore(pool._buffer_chunks)
        self._send, self._receive = trio.open_memory_channel(EVENTS_CAPACITY)
        self._failure: SttError | None = None
        self._finished = False
        self._closed = False
        self.chunks_in_flight = 0

    async def feed(self, pcm: bytes) -> None:
        if len(pcm) % 2:
            raise ValueError("16-bit PCM has an even number of bytes")
        self._check_open("feed")
        for piece in chunks(pcm, self._pool._chunk_bytes):
            await self._credits.acquire()  # waits while the worker is behind
            self._check_open("feed")
            self.chunks_in_flight += 1
            self._pool._note_in_flight(self.chunks_in_flight)
            await self._worker.send("audio", self.sid, piece)

    async def finish(self) -> None:
        self._check_open("finish")
        self._finished = True
        await self._worker.send("finish", self.sid)

    async def events(self) -> AsyncIterator[Interim | Final]:
        async for item in self._receive:
            if item is _DONE:
                return
            yield item
        if self._failure is not None:
            raise self._failure

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._send.close()
        self._wake_feeders()
        if self._worker.streams.pop(self.sid, None) is not None:
            try:
                await self._worker.send("close", self.sid)
            except SttError:
                pass  # the worker is gone, and the stream with it

    def _check_open(self, operation: str) -> None:
        if self._failure is not None:
            raise self._failure
        if self._closed or self._finished:
            state = "closed" if self._closed else "finished"
            raise SttError(f"cannot {operation}: the stream is {state}")

    def _wake_feeders(self) -> None:
        """Every feed() waiting for a credit wakes up and raises (no ack will come)."""
        for _ in range(self._pool._buffer_chunks):
            self._credits.release()

    def _on_ack(self) -> None:
        self.chunks_in_flight -= 1
        self._credits.release()

    def _deliver(self, item: object) -> None:
        try:
            self._send.send_nowait(item)
        except trio.WouldBlock:
            if not isinstance(item, Interim):
                self._fail(SttError("results were not read: the stream fell too far behind"))
        except trio.ClosedResourceError:
            pass

    def _fail(self, error: SttError) -> None:
        if self._failure is not None:
            return
        self._failure = error
        self._worker.streams.pop(self.sid, None)
        self._wake_feeders()
        # events() drains what arrived before the failure, then raises it.
        self._send.close()
