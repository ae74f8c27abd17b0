"""Measurements for docs/voice-pipeline.md: ``.venv/bin/python -m tests.voice.measure``.

Not a test (no assertions): it prints, for both final strategies
(``full_final=True``: re-decode the utterance with ``full_utt=True``;
``False``: the incremental decoder's result),

- the word error rate over SENTENCES (espeak-ng en-us, 160 wpm);
- the real-time factor of one recognizer (decoding time / audio time);
- the latency as the issue defines it: from the last voiced sample plus the
  pause (the endpointer's decision) to the Final arriving from a SphinxPool
  worker, with the audio fed in real time, p50 and max.
"""

from __future__ import annotations

import statistics
import sys
import time

import jiwer
import numpy as np
import trio

from voisnap.voice import EspeakSpeech, Final, SphinxPool
from voisnap.voice.recognizer import SphinxRecognizer, new_decoder

SENTENCES = [
    "i would like to order a pizza",
    "i want to go home",
    "what is the weather like today",
    "open the door",
    "how far is it to the station",
    "call my mother tomorrow",
    "please turn off the lights in the kitchen",
    "where is the nearest hospital",
    "turn on the radio",
    "the meeting starts at ten in the morning",
]
PAUSE = 0.5
CHUNK = 3200  # 0.1 s


def last_voiced_second(pcm: bytes) -> float:
    samples = np.abs(np.frombuffer(pcm, "<i2"))
    return (int(np.nonzero(samples > 500)[0][-1]) + 1) / 16000


def accuracy_and_speed(audio: dict[str, bytes], full_final: bool) -> tuple[float, float]:
    hypotheses, busy, total = [], 0.0, 0.0
    recognizer = SphinxRecognizer(new_decoder(), auto=True, pause=PAUSE, full_final=full_final)
    for sentence in SENTENCES:
        pcm = bytes(16000) + audio[sentence] + bytes(32000)
        started = time.perf_counter()
        results = recognizer.feed(pcm) + recognizer.finish()
        busy += time.perf_counter() - started
        total += len(pcm) / 32000
        hypotheses.append(" ".join(r.text for r in results if isinstance(r, Final)))
        recognizer = SphinxRecognizer(new_decoder(), auto=True, pause=PAUSE, full_final=full_final)
    return jiwer.wer(SENTENCES, hypotheses), busy / total


async def latencies(audio: dict[str, bytes], full_final: bool) -> list[float]:
    pool = SphinxPool(workers=1, full_final=full_final)
    found: list[float] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(pool.run)
        for sentence in SENTENCES:
            stream = await pool.open_stream(auto=True, pause=PAUSE)
            pcm = bytes(16000) + audio[sentence] + bytes(32000)
            decided = 0.5 + last_voiced_second(audio[sentence]) + PAUSE
            started = trio.current_time()
            arrivals: list[float] = []

            async def read(stream=stream, arrivals=arrivals) -> None:
                async for event in stream.events():
                    if isinstance(event, Final):
                        arrivals.append(trio.current_time())

            async with trio.open_nursery() as inner:
                inner.start_soon(read)
                for start in range(0, len(pcm), CHUNK):
                    await trio.sleep_until(started + start / 32000)  # a real-time microphone
                    await stream.feed(pcm[start : start + CHUNK])
                await stream.finish()
            await stream.aclose()
            if arrivals:
                found.append(arrivals[0] - (started + decided))
        nursery.cancel_scope.cancel()
    return found


async def main() -> None:
    tts = EspeakSpeech()
    audio = {sentence: await tts.synthesize(sentence) for sentence in SENTENCES}
    for full_final in (True, False):
        wer, rtf = accuracy_and_speed(audio, full_final)
        found = await latencies(audio, full_final)
        print(
            f"full_final={full_final}: WER {wer:.3f}, real-time factor {rtf:.2f}, "
            f"latency p50 {statistics.median(found) * 1000:.0f} ms, "
            f"max {max(found) * 1000:.0f} ms over {len(found)} utterances"
        )
        sys.stdout.flush()


if __name__ == "__main__":
    trio.run(main)
