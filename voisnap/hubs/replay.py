"""Stateful reconnect: sequence numbers, acknowledgements and the replay buffer.

HubProtocol.md, "Stateful Reconnect" (ASP.NET Core 8; ASP.NET's and the JS
client's ``MessageBuffer``): both sides number the messages they send that
matter to the other side (Invocation, StreamItem, Completion,
StreamInvocation, CancelInvocation), from 1, never resetting. Each side keeps
what it sent until the other acknowledges it (Ack n: "I have processed up to
n"). When the WebSocket drops, the client opens a new one to the same
connection and sends Sequence s (the number of its oldest unacknowledged
message) followed by those messages again; the server answers with its own
Sequence and resends what the client has not acknowledged. Each side drops the
copies of messages it had already processed.

One difference from ASP.NET, which makes a sender wait once 100,000 bytes are
unacknowledged: here the buffer keeps the *most recent* unacknowledged messages
up to its cap, dropping the oldest, because a fan-out must never wait for a
client, and a healthy client acknowledges only about once a second. A reconnect
that needs a dropped message cannot be made whole; ``replay`` says so, and the
connection then ends as a normal disconnect instead of with a silent gap.

Nothing here does I/O: frames go in as they are sent, and come out to be sent again.
"""

from __future__ import annotations

from collections import deque

import attrs

from ..protocol import (
    CancelInvocationMessage,
    CompletionMessage,
    HubMessage,
    InvocationMessage,
    StreamInvocationMessage,
    StreamItemMessage,
)
from ..transports.frames import Frame

TRACKED = (
    InvocationMessage,
    StreamItemMessage,
    CompletionMessage,
    StreamInvocationMessage,
    CancelInvocationMessage,
)


def is_tracked(message: HubMessage) -> bool:
    """Only these count: Ping, Close, Ack and Sequence are not numbered."""
    return isinstance(message, TRACKED)


@attrs.frozen
class Gap:
    """A reconnect cannot be made whole: messages after ``acknowledged`` were
    dropped from the buffer before the client acknowledged them."""

    acknowledged: int
    oldest_held: int


class ReplayBuffer:
    """The server's side of one stateful connection."""

    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._sent: deque[tuple[int, Frame]] = deque()
        self._bytes = 0
        self.next_sequence = 1  # the number the next tracked message sent gets
        self.acknowledged = 0  # the client has processed everything up to here
        self.received = 0  # tracked messages received from the client
        self.acknowledged_to_client = 0  # the last Ack we sent
        self._duplicates = 0  # resent messages still to drop after a reconnect

    # -- what we send -------------------------------------------------------------------------

    def sent(self, frame: Frame) -> None:
        """A tracked message went to the client (or would have, while it is away)."""
        self._sent.append((self.next_sequence, frame))
        self._bytes += frame.size
        self.next_sequence += 1
        while self._bytes > self._max_bytes and len(self._sent) > 1:
            _, dropped = self._sent.popleft()
            self._bytes -= dropped.size

    def client_acknowledged(self, sequence_id: int) -> None:
        """The client's Ack: forget what it has processed."""
        self.acknowledged = max(self.acknowledged, min(sequence_id, self.next_sequence - 1))
        while self._sent and self._sent[0][0] <= self.acknowledged:
            _, frame = self._sent.popleft()
            self._bytes -= frame.size

    def first_unacknowledged(self) -> int | Gap:
        """For a reconnect: the number of the first message to resend (our
        Sequence message says it), or the Gap that makes resending impossible."""
        first = self._sent[0][0] if self._sent else self.next_sequence
        if first > self.acknowledged + 1:
            return Gap(acknowledged=self.acknowledged, oldest_held=first)
        return first

    def frames_from(self, sequence_id: int) -> list[tuple[int, Frame]] | Gap:
        """The held messages numbered ``sequence_id`` and later, to resend;
        a Gap if some of them were dropped meanwhile."""
        if self._sent and self._sent[0][0] > sequence_id:
            return Gap(acknowledged=self.acknowledged, oldest_held=self._sent[0][0])
        return [(number, frame) for number, frame in self._sent if number >= sequence_id]

    # -- what we receive ----------------------------------------------------------------------

    def client_resends_from(self, sequence_id: int) -> bool:
        """The client's Sequence after a reconnect: it resends from
        ``sequence_id``. Returns False if that is past what we received
        (a protocol error: messages would be missing)."""
        if sequence_id > self.received + 1:
            return False
        self._duplicates = self.received - sequence_id + 1
        return True

    def accept(self) -> bool:
        """Count a tracked message from the client; False if it is a copy of
        one already processed (it is then dropped)."""
        if self._duplicates:
            self._duplicates -= 1
            return False
        self.received += 1
        return True

    def ack_due(self) -> int | None:
        """The Ack to send now, if the client sent anything since the last one."""
        if self.received > self.acknowledged_to_client:
            self.acknowledged_to_client = self.received
            return self.received
        return None

    @property
    def held_bytes(self) -> int:
        return self._bytes
