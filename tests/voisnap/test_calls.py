"""A call's speech out, without a server: pieces of a reply in order, barge-in
while a piece plays and between two pieces, and what an interrupted reply no
longer says (docs/hubs/voisnap-voice.md, "AudioInterrupted"). Each piece is
"synthesized" as a second of tone per word, so that trio's autojump clock can
play the audio's real-time pacing instantly (espeak-ng, a subprocess, is used
by the tests with a server)."""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import trio
import trio.testing

from voisnap.apps.voisnap.audio_formats import LINEAR16
from voisnap.apps.voisnap.calls import Call, Spoken
from voisnap.storage.base import Conversation, Owner

OWNER = Owner("acme", "alice")
X, Y = "msg_x", "msg_y"


class Caller:
    """A SingleClientProxy that keeps what was sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Any]] = []

    async def send(self, method: str, *args: Any) -> None:
        self.sent.append((method, args[0] if args else None))

    def events(self, method: str) -> list[Any]:
        return [payload for name, payload in self.sent if name == method]


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


class Tone:
    """A TextToSpeech: a second of 16 kHz tone per word."""

    voice = "en-us"

    async def synthesize(self, text: str) -> bytes:
        await trio.sleep(0)
        return b"\x10\x20" * 16000 * len(text.split())


def new_call(caller: Caller) -> Call:
    conversation = Conversation("vcall_1", OWNER, "sophon", "voice",
                                datetime.datetime(2026, 12, 7, tzinfo=datetime.UTC))
    call = Call(None, caller, OWNER, conversation, LINEAR16)  # type: ignore[arg-type]
    call._speech_out = Tone()  # type: ignore[assignment]
    return call


@contextlib.asynccontextmanager
async def on_the_line(
    call: Call, on_chunk: Callable[[list[str]], Awaitable[None]] | None = None,
) -> AsyncIterator[list[str]]:
    """The call's relay and a client reading ``ReceiveAudio`` (``on_chunk``
    after each chunk); the chunks it got."""
    chunks: list[str] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(call.relay_replies)

        async def listen() -> None:
            async for chunk in call.speak():
                chunks.append(chunk)
                if on_chunk is not None:
                    await on_chunk(chunks)

        nursery.start_soon(listen)
        await settle()
        yield chunks
        nursery.cancel_scope.cancel()


async def settle() -> None:
    """Until everything waits (the player, perhaps, for its next chunk's time)."""
    await trio.testing.wait_all_tasks_blocked()


async def play_out() -> None:
    """A minute on the autojump clock: whatever was queued is played out."""
    await trio.sleep(60)


async def test_pieces_are_transcribed_and_spoken_in_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    caller = Caller()
    call = new_call(caller)
    async with on_the_line(call) as chunks:
        call.hear(Spoken(X, "Hello there.", "Hello there.", False))
        call.hear(Spoken(X, " Goodbye.", "Hello there. Goodbye.", True))
        await play_out()
    transcripts = caller.events("Transcript")
    assert [(t.text, t.is_final) for t in transcripts] == [
        ("Hello there.", False), ("Hello there. Goodbye.", True)]
    assert len(chunks) == 30 and caller.events("AudioInterrupted") == []  # 3 words: 3 s


async def test_barge_in_while_playing_and_the_rest_is_neither_said_nor_shown(
    autojump_clock: trio.testing.MockClock,
) -> None:
    caller = Caller()
    call = new_call(caller)

    async def talk_over_the_third(chunks: list[str]) -> None:
        if len(chunks) == 3:
            await call.barge_in()

    async with on_the_line(call, talk_over_the_third) as chunks:
        call.hear(Spoken(X, "This is a long first sentence of the reply.", "...", False))
        await settle()
        call.hear(Spoken(X, " And a second one.", "... And a second one.", True))
        await settle()
        assert [i.message_id for i in caller.events("AudioInterrupted")] == [X]
        heard = len(chunks)
        call.hear(Spoken(Y, "A new reply.", "A new reply.", True))
        await play_out()
    assert heard == 3  # nothing of X after the barge-in
    assert len(chunks) == heard + 30  # Y is spoken, whole
    texts = [t.text for t in caller.events("Transcript")]
    assert texts == ["...", "A new reply."]  # X's second piece is not shown


async def test_barge_in_between_two_sentences_of_a_reply(
    autojump_clock: trio.testing.MockClock,
) -> None:
    caller = Caller()
    call = new_call(caller)
    async with on_the_line(call) as chunks:
        call.hear(Spoken(X, "First.", "First.", False))
        await play_out()  # the agent is still writing the next sentence
        played = len(chunks)
        await call.barge_in()
        call.hear(Spoken(X, " Second.", "First. Second.", True))
        await settle()
    assert [i.message_id for i in caller.events("AudioInterrupted")] == [X]
    assert len(chunks) == played == 10
    assert [t.text for t in caller.events("Transcript")] == ["First."]


async def test_a_new_receive_audio_starts_afresh(autojump_clock: trio.testing.MockClock) -> None:
    caller = Caller()
    call = new_call(caller)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(call.relay_replies)
        first = call.speak()
        got: list[str] = []

        async def one_chunk() -> None:
            got.append(await first.__anext__())

        nursery.start_soon(one_chunk)
        await settle()  # the stream is open
        call.hear(Spoken(X, "One.", "One.", False))
        call.hear(Spoken(X, " Two.", "One. Two.", False))
        await settle()
        assert len(got) == 1  # a chunk of "One.", then the client cancels the stream
        await first.aclose()
        call.hear(Spoken(Y, "Three.", "Three.", True))
        await settle()
        second = call.speak()
        with trio.move_on_after(5):
            await second.__anext__()
            pytest.fail("the queue of the closed stream was played")
        await second.aclose()
        nursery.cancel_scope.cancel()
