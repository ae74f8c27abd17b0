"""The replay buffer of stateful reconnect (HubProtocol.md, "Stateful Reconnect"),
as plain bookkeeping: numbering, acknowledgements, resending, duplicates, gaps."""

from __future__ import annotations

from voisnap.hubs.replay import Gap, ReplayBuffer, is_tracked
from voisnap.protocol import (
    AckMessage,
    CloseMessage,
    CompletionMessage,
    InvocationMessage,
    PingMessage,
    SequenceMessage,
    StreamItemMessage,
)
from voisnap.transports.frames import Frame


def frame(text: str) -> Frame:
    return Frame(text.encode())


def test_replay_tracks_only_the_numbered_message_types() -> None:
    assert is_tracked(InvocationMessage(target="T"))
    assert is_tracked(StreamItemMessage(invocation_id="1"))
    assert is_tracked(CompletionMessage.empty("1"))
    for message in (PingMessage(), CloseMessage(), AckMessage(sequence_id=1),
                    SequenceMessage(sequence_id=1)):
        assert not is_tracked(message)


def test_replay_resends_what_the_client_has_not_acknowledged() -> None:
    buffer = ReplayBuffer(max_bytes=1000)
    for text in ("one", "two", "three"):
        buffer.sent(frame(text))
    assert buffer.first_unacknowledged() == 1
    buffer.client_acknowledged(2)
    assert buffer.first_unacknowledged() == 3
    assert [f.data for _, f in buffer.frames_from(3)] == [b"three"]
    assert buffer.held_bytes == len("three")


def test_replay_with_everything_acknowledged_resends_nothing() -> None:
    buffer = ReplayBuffer(max_bytes=1000)
    buffer.sent(frame("one"))
    buffer.client_acknowledged(1)
    assert buffer.first_unacknowledged() == 2  # our Sequence names the next number
    assert buffer.frames_from(2) == []


def test_replay_keeps_the_most_recent_messages_up_to_its_cap() -> None:
    buffer = ReplayBuffer(max_bytes=10)
    for number in range(1, 6):
        buffer.sent(frame(f"m{number}xx"))  # 4 bytes each: at most two fit
    assert buffer.held_bytes <= 10
    assert [n for n, _ in buffer.frames_from(4)] == [4, 5]
    # The client acknowledged nothing, so messages 1-3 are lost: a gap, not a silent skip.
    assert buffer.first_unacknowledged() == Gap(acknowledged=0, oldest_held=4)
    buffer.client_acknowledged(3)
    assert buffer.first_unacknowledged() == 4


def test_replay_acknowledgement_beyond_what_was_sent_is_clamped() -> None:
    buffer = ReplayBuffer(max_bytes=100)
    buffer.sent(frame("one"))
    buffer.client_acknowledged(99)
    assert buffer.acknowledged == 1
    buffer.sent(frame("two"))
    assert buffer.first_unacknowledged() == 2


def test_replay_drops_the_copies_a_resuming_client_sends_again() -> None:
    buffer = ReplayBuffer(max_bytes=100)
    assert [buffer.accept() for _ in range(5)] == [True] * 5  # received 1..5
    assert buffer.client_resends_from(4)  # it resends 4, 5, then new ones
    assert [buffer.accept() for _ in range(4)] == [False, False, True, True]
    assert buffer.received == 7


def test_replay_sequence_past_what_was_received_is_refused() -> None:
    buffer = ReplayBuffer(max_bytes=100)
    buffer.accept()
    assert not buffer.client_resends_from(3)  # message 2 would be missing
    assert buffer.client_resends_from(2)


def test_replay_acks_only_when_something_new_arrived() -> None:
    buffer = ReplayBuffer(max_bytes=100)
    assert buffer.ack_due() is None
    buffer.accept()
    buffer.accept()
    assert buffer.ack_due() == 2
    assert buffer.ack_due() is None
