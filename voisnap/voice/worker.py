"""``python -m voisnap.voice.worker``: PocketSphinx decoders in a child process.

Why a process: ``Decoder.process_raw`` holds the GIL while it decodes, so a
decoder in a thread of the server would stall the trio loop for as long as a
decode takes (up to seconds for a final). The server talks to this process
over stdin/stdout with the length-prefixed MessagePack of ``wire.py``.

Theory of operation: one blocking loop reads messages and handles them in
order. Every "audio" message is answered by an "ack" once it has been decoded,
which is how the server bounds the audio in flight per stream (see
``pool.py``). Decoders are expensive to create (about 0.7 s: the model is
loaded each time), so a closed stream's decoder is kept for the next one.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import BinaryIO

from pocketsphinx import Decoder

from .base import Final, Interim
from .recognizer import SphinxRecognizer, new_decoder
from .wire import FrameReader, encode

log = logging.getLogger(__name__)


class Worker:
    def __init__(self, output: BinaryIO) -> None:
        self._output = output
        self._streams: dict[int, SphinxRecognizer] = {}
        self._decoders: dict[int, Decoder] = {}
        self._idle: list[Decoder] = []

    def send(self, *message: object) -> None:
        self._output.write(encode(*message))

    def handle(self, message: list) -> None:
        match message:
            case ["open", int(sid), bool(auto), float() | int() as pause, bool(full)]:
                self._open(sid, auto, float(pause), full)
            case ["audio", int(sid), bytes(pcm)]:
                self._results(sid, lambda stream: stream.feed(pcm))
                self.send("ack", sid)
            case ["finish", int(sid)]:
                self._results(sid, lambda stream: stream.finish())
                self.send("done", sid)
            case ["close", int(sid)]:
                stream = self._streams.pop(sid, None)
                decoder = self._decoders.pop(sid, None)
                if stream is not None and decoder is not None:
                    stream.close()  # the next stream's start_utt needs no utterance open
                    self._idle.append(decoder)
            case _:
                raise ValueError(f"unknown worker message {message[:2]!r}")

    def _open(self, sid: int, auto: bool, pause: float, full: bool) -> None:
        decoder = self._idle.pop() if self._idle else new_decoder()
        try:
            stream = SphinxRecognizer(decoder, auto=auto, pause=pause, full_final=full)
        except Exception as exc:  # e.g. a pause the endpointer cannot use: this stream only
            log.exception("stream %d could not open", sid)
            self.send("error", sid, f"cannot open the stream: {exc}")
            return
        self._decoders[sid] = decoder
        self._streams[sid] = stream

    def _results(self, sid: int, step) -> None:
        stream = self._streams.get(sid)
        if stream is None:
            return  # closed while its audio was in the pipe
        try:
            results = step(stream)
        except Exception as exc:  # a decoder failure ends this stream, not the worker
            log.exception("stream %d failed", sid)
            self._streams.pop(sid, None)
            self._decoders.pop(sid, None)
            self.send("error", sid, f"decoder failed: {exc}")
            return
        for result in results:
            match result:
                case Interim(text=text):
                    self.send("interim", sid, text)
                case Final(text=text, confidence=confidence):
                    self.send("final", sid, text, confidence)


def serve(source: BinaryIO, output: BinaryIO) -> None:
    """Handle messages from ``source`` until it is closed (the server went away)."""
    worker = Worker(output)
    reader = FrameReader()
    worker.send("ready", os.getpid())
    output.flush()
    while data := source.read1(65536):
        reader.receive_data(data)
        while (message := reader.next_message()) is not None:
            worker.handle(message)
            # Flushed per message: an "ack" held back in our buffer would
            # stall the server's feed() while we decode the next chunk.
            output.flush()


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="voice worker %(process)d: %(message)s")
    serve(sys.stdin.buffer, sys.stdout.buffer)


if __name__ == "__main__":
    main()
