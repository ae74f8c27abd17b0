"""SphinxPool with real worker processes and real speech (espeak-ng -> PocketSphinx)."""

from __future__ import annotations

import os
import signal

import jiwer
import pytest
import trio
import trio.testing

from voisnap.voice import Final, Interim, SphinxPool, SttBusy, SttError

from .conftest import HOME, PIZZA, collect, feed_all, silence, sox_raw


async def test_sphinx_auto_two_sentences_give_two_finals(pool, speech) -> None:
    await check_two_sentences(pool, speech)


async def test_sphinx_auto_full_final_two_sentences_give_two_finals(nursery, speech) -> None:
    """The other final strategy: each utterance decoded again with full_utt=True."""
    pool = SphinxPool(workers=1, full_final=True)
    with trio.fail_after(30):
        await nursery.start(pool.run)
    await check_two_sentences(pool, speech)
    nursery.cancel_scope.cancel()


async def check_two_sentences(pool: SphinxPool, speech: dict[str, bytes]) -> None:
    stream = await pool.open_stream(auto=True, pause=0.5)
    audio = silence(0.5) + speech[PIZZA] + silence(1) + speech[HOME] + silence(1)
    with trio.fail_after(30):
        events = await collect(stream, audio)
    finals = [event for event in events if isinstance(event, Final)]
    assert len(finals) == 2, events
    assert jiwer.wer([PIZZA, HOME], [final.text for final in finals]) <= 0.2, finals
    assert all(0.0 <= final.confidence <= 1.0 for final in finals)
    first_final = events.index(finals[0])
    assert any(isinstance(event, Interim) for event in events[:first_final]), events
    await stream.aclose()


async def test_sphinx_manual_gives_one_final_at_finish(pool, speech) -> None:
    stream = await pool.open_stream(auto=False, pause=0.5)
    events: list = []
    finished = False

    async def read() -> None:
        async for event in stream.events():
            if isinstance(event, Final):
                assert finished, "a Final before finish() in Manual mode"
            events.append(event)

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read)
            # One second of silence after the words would end an utterance in Auto mode.
            await feed_all(stream, silence(0.3) + speech[PIZZA] + silence(1))
            finished = True
            await stream.finish()
    finals = [event for event in events if isinstance(event, Final)]
    assert len(finals) == 1, events
    assert jiwer.wer(PIZZA, finals[0].text) <= 0.2, finals


@pytest.mark.parametrize(
    "audio",
    [silence(3), sox_raw("synth", "2", "whitenoise", "vol", "0.1")],
    ids=["silence", "whitenoise"],
)
async def test_sphinx_auto_without_speech_gives_no_final(pool, audio) -> None:
    """Documented choice: no words, no Final (never an empty one)."""
    stream = await pool.open_stream(auto=True, pause=0.5)
    with trio.fail_after(30):
        events = await collect(stream, audio)
    assert [event for event in events if isinstance(event, Final)] == []


async def test_sphinx_killed_worker_fails_its_streams_and_is_replaced(pool, speech) -> None:
    stream = await pool.open_stream(auto=True, pause=0.5)
    await stream.feed(speech[PIZZA][:16000])
    (pid,) = pool.worker_pids()
    os.kill(pid, signal.SIGKILL)
    with trio.fail_after(30), pytest.raises(SttError, match="died"):
        async for _ in stream.events():
            pass
    with pytest.raises(SttError):
        await stream.feed(bytes(3200))
    await stream.aclose()

    with trio.fail_after(30):
        await pool.wait_all_workers()
    assert pool.worker_pids() != [pid]
    assert pool.statistics().restarts == 1
    replacement = await pool.open_stream(auto=True, pause=0.5)
    with trio.fail_after(30):
        events = await collect(replacement, silence(0.3) + speech[PIZZA] + silence(1))
    assert [event.text for event in events if isinstance(event, Final)] == [PIZZA]


async def test_sphinx_pool_refuses_streams_beyond_capacity(pool) -> None:
    first = await pool.open_stream(auto=True, pause=0.5)
    await pool.open_stream(auto=False, pause=0.5)
    with pytest.raises(SttBusy) as refused:
        await pool.open_stream(auto=True, pause=0.5)
    assert refused.value.code == "STT_BUSY"
    assert pool.statistics().streams == pool.statistics().capacity == 2
    await first.aclose()
    third = await pool.open_stream(auto=True, pause=0.5)
    await third.aclose()


async def test_sphinx_feed_blocks_while_the_worker_is_behind(nursery, speech) -> None:
    """9 s of audio fed in one call (far faster than real time): the chunks in
    flight reach the bound and never pass it; the rest waits in feed()."""
    pool = SphinxPool(workers=1, buffer_chunks=4, chunk_bytes=3200)
    with trio.fail_after(30):
        await nursery.start(pool.run)
    stream = await pool.open_stream(auto=True, pause=0.5)
    audio = (speech[PIZZA] + silence(1)) * 3
    seen: list[int] = []

    async def watch() -> None:
        while True:
            seen.append(pool.statistics().chunks_in_flight)
            await trio.sleep(0.01)

    nursery.start_soon(watch)
    events: list = []

    async def read() -> None:
        async for event in stream.events():
            events.append(event)

    with trio.fail_after(45):
        async with trio.open_nursery() as inner:
            inner.start_soon(read)
            await stream.feed(audio)
            await stream.finish()
    statistics = pool.statistics()
    assert statistics.max_chunks_in_flight == statistics.buffer_chunks == 4
    assert max(seen) <= 4
    assert sum(isinstance(event, Final) for event in events) == 3
    nursery.cancel_scope.cancel()


async def test_sphinx_a_stream_closed_mid_utterance_leaves_a_usable_decoder(pool, speech) -> None:
    """The worker reuses a closed stream's decoder; the abandoned utterance must not leak."""
    first = await pool.open_stream(auto=False, pause=0.5)
    await feed_all(first, speech[PIZZA][:16000])
    await first.aclose()
    second = await pool.open_stream(auto=False, pause=0.5)
    with trio.fail_after(30):
        events = await collect(second, silence(0.3) + speech[PIZZA] + silence(0.5))
    assert [event.text for event in events if isinstance(event, Final)] == [PIZZA]
    assert pool.statistics().restarts == 0


@pytest.mark.parametrize("pause", [0.1, 11.0])
async def test_sphinx_pool_refuses_a_pause_the_endpointer_cannot_use(pool, pause) -> None:
    with pytest.raises(ValueError, match="pause"):
        await pool.open_stream(auto=True, pause=pause)
    assert pool.statistics().streams == 0


async def test_sphinx_feed_refuses_odd_lengths(pool) -> None:
    stream = await pool.open_stream(auto=True, pause=0.5)
    with pytest.raises(ValueError):
        await stream.feed(b"\x00")
    await stream.aclose()


async def test_sphinx_aclose_wakes_a_blocked_feed(nursery) -> None:
    pool = SphinxPool(workers=1, buffer_chunks=1, chunk_bytes=320)
    with trio.fail_after(30):
        await nursery.start(pool.run)
    stream = await pool.open_stream(auto=False, pause=0.5)
    failed = trio.Event()

    async def feed_forever() -> None:
        with pytest.raises(SttError, match="closed"):
            while True:
                await stream.feed(silence(1))
        failed.set()

    nursery.start_soon(feed_forever)
    await trio.testing.wait_all_tasks_blocked()
    await stream.aclose()
    with trio.fail_after(10):
        await failed.wait()
    nursery.cancel_scope.cancel()
