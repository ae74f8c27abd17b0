"""Test speech: real espeak-ng through voisnap's own EspeakSpeech, silence and
noise from sox. Synthesized once per session (a plain ``trio.run`` before any
test's own run) because espeak-ng is the same every time."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator

import pytest
import trio

from voisnap.voice import EspeakSpeech, SphinxPool

# Sentences that PocketSphinx's default English model transcribes from espeak-ng
# en-us at 160 words per minute (most espeak sentences come out with errors;
# see docs/voice-pipeline.md, "Measurements").
PIZZA = "i would like to order a pizza"
HOME = "i want to go home"


def sox_raw(*effect: str) -> bytes:
    """16 kHz mono s16le audio from ``sox -n`` and the given effect."""
    command = ["sox", "-n", "-r", "16000", "-b", "16", "-c", "1", "-t", "raw", "-", *effect]
    return subprocess.run(command, check=True, capture_output=True).stdout


def silence(seconds: float) -> bytes:
    return sox_raw("trim", "0", str(seconds))


@pytest.fixture(scope="session")
def speech() -> dict[str, bytes]:
    tts = EspeakSpeech()

    async def synthesize_all() -> dict[str, bytes]:
        return {text: await tts.synthesize(text) for text in (PIZZA, HOME)}

    return trio.run(synthesize_all)


@pytest.fixture
async def pool(nursery: trio.Nursery) -> AsyncIterator[SphinxPool]:
    pool = SphinxPool(workers=1, streams_per_worker=2, buffer_chunks=8)
    with trio.fail_after(30):
        await nursery.start(pool.run)
    yield pool
    nursery.cancel_scope.cancel()


async def feed_all(stream, pcm: bytes, chunk: int = 3200) -> None:
    """Feed ``pcm`` in 0.1 s chunks, as a microphone would (but not in real time)."""
    for start in range(0, len(pcm), chunk):
        await stream.feed(pcm[start : start + chunk])


async def collect(stream, pcm: bytes) -> list:
    """Feed everything, finish, and return every event until the stream is done."""
    events: list = []

    async def read() -> None:
        async for event in stream.events():
            events.append(event)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read)
        await feed_all(stream, pcm)
        await stream.finish()
    return events
