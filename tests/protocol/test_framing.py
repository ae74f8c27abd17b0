"""Record framing: TextFraming (0x1E separator) and BinaryFraming (VarInt length prefix).

HubProtocol.md, "Transport Requirements", "JSON Encoding" and "MessagePack (MsgPack)
encoding" ("Binary encoding" of the VarInt). Covered: a stream of several records fed
in two pieces at every byte boundary gives the same records; the per-message size
limit applies per record, not per feed; VarInt vectors; ``take_buffered``.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voisnap.protocol import RemoteProtocolError
from voisnap.protocol.framing import BinaryFraming, TextFraming, encode_varint

Framing = TextFraming | BinaryFraming

TEXT_RECORDS = [
    b'{"protocol":"json","version":1}',
    b'{"type":6}',
    b"",
    b'{"type":1,"target":"Send","arguments":["' + "é".encode() * 40 + b'"]}',
    b"x",
]
# One record needs a two-byte VarInt (> 127 bytes), one is empty.
BINARY_RECORDS = [b"\x91\x06", b"", b"\x1e" * 200, bytes(range(128)), b"\xff"]


def drain(framing: Framing) -> list[bytes]:
    records = []
    while (record := framing.next_record()) is not None:
        records.append(record)
    return records


def stream_of(framing_class: type[Framing], records: list[bytes]) -> bytes:
    return b"".join(framing_class.frame(record) for record in records)


# -- splitting at every byte boundary -----------------------------------------------------------


@pytest.mark.parametrize(
    ("framing_class", "records"),
    [(TextFraming, TEXT_RECORDS), (BinaryFraming, BINARY_RECORDS)],
    ids=["text", "binary"],
)
def test_framing_split_at_every_byte_boundary(
    framing_class: type[Framing], records: list[bytes]
) -> None:
    stream = stream_of(framing_class, records)
    for split in range(len(stream) + 1):
        framing = framing_class(max_message_size=1000)
        framing.feed(stream[:split])
        received = drain(framing)
        framing.feed(stream[split:])
        received += drain(framing)
        assert received == records, f"split at {split}"
        assert framing.buffered == 0


@pytest.mark.parametrize(
    ("framing_class", "records"),
    [(TextFraming, TEXT_RECORDS), (BinaryFraming, BINARY_RECORDS)],
    ids=["text", "binary"],
)
def test_framing_byte_at_a_time(framing_class: type[Framing], records: list[bytes]) -> None:
    stream = stream_of(framing_class, records)
    framing = framing_class(max_message_size=1000)
    received = []
    for index in range(len(stream)):
        framing.feed(stream[index : index + 1])
        received += drain(framing)
    assert received == records


@given(
    records=st.lists(st.binary(max_size=300).map(lambda b: b.replace(b"\x1e", b"")), max_size=8),
    cuts=st.lists(st.integers(min_value=0, max_value=3000), max_size=6),
)
def test_framing_text_any_records_any_cuts(records: list[bytes], cuts: list[int]) -> None:
    assert_any_cuts(TextFraming, records, cuts)


@given(
    records=st.lists(st.binary(max_size=300), max_size=8),
    cuts=st.lists(st.integers(min_value=0, max_value=3000), max_size=6),
)
def test_framing_binary_any_records_any_cuts(records: list[bytes], cuts: list[int]) -> None:
    assert_any_cuts(BinaryFraming, records, cuts)


def assert_any_cuts(framing_class: type[Framing], records: list[bytes], cuts: list[int]) -> None:
    stream = stream_of(framing_class, records)
    points = sorted({min(cut, len(stream)) for cut in cuts} | {0, len(stream)})
    framing = framing_class(max_message_size=300)
    received = []
    for start, end in itertools.pairwise(points):
        framing.feed(stream[start:end])
        received += drain(framing)
    assert received == records
    assert framing.buffered == 0


def test_framing_text_partial_record_waits_for_separator() -> None:
    framing = TextFraming(max_message_size=100)
    framing.feed(b'{"type":6}\x1e{"ty')
    assert framing.next_record() == b'{"type":6}'
    assert framing.next_record() is None
    assert framing.buffered == len(b'{"ty')
    framing.feed(b'pe":6}\x1e')
    assert framing.next_record() == b'{"type":6}'
    assert framing.next_record() is None


# -- the per-message size limit -----------------------------------------------------------------


def test_framing_text_record_at_limit_is_accepted() -> None:
    framing = TextFraming(max_message_size=10)
    framing.feed(b"x" * 10 + b"\x1e")
    assert framing.next_record() == b"x" * 10


def test_framing_text_record_over_limit_raises() -> None:
    framing = TextFraming(max_message_size=10)
    framing.feed(b"x" * 11 + b"\x1e")
    with pytest.raises(RemoteProtocolError) as caught:
        framing.next_record()
    assert str(caught.value) == "The maximum message size of 10B was exceeded."


def test_framing_text_many_small_records_in_one_feed_are_accepted() -> None:
    framing = TextFraming(max_message_size=10)
    framing.feed(b"x" * 8 + b"\x1e" + b"y" * 10 + b"\x1e" + b"z" * 9 + b"\x1e")
    assert drain(framing) == [b"x" * 8, b"y" * 10, b"z" * 9]


def test_framing_text_record_without_separator_growing_past_limit_raises() -> None:
    framing = TextFraming(max_message_size=10)
    framing.feed(b"x" * 6)
    assert framing.next_record() is None
    framing.feed(b"x" * 4)
    assert framing.next_record() is None  # exactly the limit, still fine
    framing.feed(b"x")
    with pytest.raises(RemoteProtocolError) as caught:
        framing.next_record()
    assert str(caught.value) == "The maximum message size of 10B was exceeded."


def test_framing_text_oversize_tail_after_whole_records_raises_only_at_the_tail() -> None:
    framing = TextFraming(max_message_size=10)
    framing.feed(b"a\x1eb\x1e" + b"x" * 11)
    assert framing.next_record() == b"a"
    assert framing.next_record() == b"b"
    with pytest.raises(RemoteProtocolError):
        framing.next_record()


def test_framing_binary_record_at_limit_is_accepted() -> None:
    framing = BinaryFraming(max_message_size=10)
    framing.feed(BinaryFraming.frame(b"x" * 10))
    assert framing.next_record() == b"x" * 10


def test_framing_binary_length_over_limit_raises_before_the_payload_arrives() -> None:
    framing = BinaryFraming(max_message_size=10)
    framing.feed(encode_varint(11))
    with pytest.raises(RemoteProtocolError) as caught:
        framing.next_record()
    assert str(caught.value) == "The maximum message size of 10B was exceeded."


def test_framing_binary_many_small_records_in_one_feed_are_accepted() -> None:
    framing = BinaryFraming(max_message_size=10)
    framing.feed(b"".join(BinaryFraming.frame(bytes([n]) * 10) for n in range(5)))
    assert drain(framing) == [bytes([n]) * 10 for n in range(5)]


def test_framing_binary_varint_longer_than_five_bytes_raises() -> None:
    framing = BinaryFraming(max_message_size=10)
    framing.feed(b"\x80\x80\x80\x80\x80")
    with pytest.raises(RemoteProtocolError) as caught:
        framing.next_record()
    assert str(caught.value) == "Messages over 2GB in size are not supported."


def test_framing_binary_incomplete_varint_needs_more_data() -> None:
    framing = BinaryFraming(max_message_size=10_000)
    framing.feed(b"\x80")
    assert framing.next_record() is None
    framing.feed(b"\x01")  # 128: the prefix is complete, the payload is not
    assert framing.next_record() is None
    framing.feed(b"z" * 128)
    assert framing.next_record() == b"z" * 128


# -- VarInt ------------------------------------------------------------------------------------

VARINTS = [
    (0, b"\x00"),
    (1, b"\x01"),
    (0x7F, b"\x7f"),
    (0x80, b"\x80\x01"),
    (5248, b"\x80\x29"),  # HubProtocol.md's example: 0x80 0x29
    (0x3FFF, b"\xff\x7f"),
    (0x4000, b"\x80\x80\x01"),
    (2**31 - 1, b"\xff\xff\xff\xff\x07"),
]


@pytest.mark.parametrize(("value", "encoded"), VARINTS, ids=[hex(v) for v, _ in VARINTS])
def test_framing_varint_encodes_vector(value: int, encoded: bytes) -> None:
    assert encode_varint(value) == encoded


@pytest.mark.parametrize(("value", "encoded"), VARINTS[:7], ids=[hex(v) for v, _ in VARINTS[:7]])
def test_framing_varint_decodes_vector(value: int, encoded: bytes) -> None:
    framing = BinaryFraming(max_message_size=2**20)
    framing.feed(encoded + b"\xaa" * value + b"tail")
    assert framing.next_record() == b"\xaa" * value
    assert framing.buffered == len(b"tail")


@given(st.integers(min_value=0, max_value=2**31 - 1))
def test_framing_varint_length_prefix_round_trips(value: int) -> None:
    framing = BinaryFraming(max_message_size=2**31)
    framing.feed(encode_varint(value))
    # Only the prefix was fed: the record is incomplete unless it is empty.
    assert framing.next_record() == (b"" if value == 0 else None)
    assert len(encode_varint(value)) <= BinaryFraming.MAX_LENGTH_PREFIX


def test_framing_frame_adds_separator_or_prefix() -> None:
    assert TextFraming.frame(b'{"type":6}') == b'{"type":6}\x1e'
    assert BinaryFraming.frame(b"\x91\x06") == b"\x02\x91\x06"
    assert BinaryFraming.frame(b"y" * 200) == b"\xc8\x01" + b"y" * 200


# -- take_buffered -----------------------------------------------------------------------------


def test_framing_take_buffered_hands_over_the_rest() -> None:
    framing = TextFraming(max_message_size=100)
    framing.feed(b'{"protocol":"messagepack","version":1}\x1e\x02\x91\x06\x01')
    assert framing.next_record() == b'{"protocol":"messagepack","version":1}'
    assert framing.take_buffered() == b"\x02\x91\x06\x01"
    assert framing.buffered == 0
    assert framing.next_record() is None
    assert framing.take_buffered() == b""


def test_framing_take_buffered_forgets_scanned_bytes() -> None:
    framing = TextFraming(max_message_size=100)
    framing.feed(b"abcdef")
    assert framing.next_record() is None  # scanned six bytes for a separator
    assert framing.take_buffered() == b"abcdef"
    framing.feed(b"g\x1e")
    assert framing.next_record() == b"g"
