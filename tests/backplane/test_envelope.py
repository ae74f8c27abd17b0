"""The backplane envelope (``voisnap.backplane.envelope``): golden bytes, round trips, and a
decoder that is total: any bytes give an envelope or ``EnvelopeError``, nothing else."""

from __future__ import annotations

import math

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from voisnap.backplane.envelope import (
    EnvelopeError,
    ErrorReply,
    Message,
    Reply,
    Request,
    decode,
    encode,
)

GOLDEN = [
    ("message", Message("n1", b"hi"), "93 01 a2 6e 31 c4 02 68 69"),
    (
        "request",
        Request("n1", 7, 0.5, b"x"),
        "95 02 a2 6e 31 07 cb 3f e0 00 00 00 00 00 00 c4 01 78",
    ),
    ("reply", Reply(7, b"ok"), "93 03 07 c4 02 6f 6b"),
    ("error_reply", ErrorReply(7, "no"), "93 04 07 a2 6e 6f"),
]


@pytest.mark.parametrize(("name", "envelope", "hex_bytes"), GOLDEN, ids=[g[0] for g in GOLDEN])
def test_envelope_golden(name: str, envelope: object, hex_bytes: str) -> None:
    assert encode(envelope).hex(" ") == hex_bytes  # type: ignore[arg-type]
    assert decode(bytes.fromhex(hex_bytes)) == envelope


envelopes = st.one_of(
    st.builds(Message, st.text(), st.binary()),
    st.builds(
        Request,
        st.text(),
        st.integers(min_value=0, max_value=2**64 - 1),
        st.floats(min_value=0, allow_nan=False),
        st.binary(),
    ),
    st.builds(Reply, st.integers(min_value=0, max_value=2**64 - 1), st.binary()),
    st.builds(ErrorReply, st.integers(min_value=0, max_value=2**64 - 1), st.text()),
)


@given(envelopes)
def test_envelope_round_trip(envelope: Message | Request | Reply | ErrorReply) -> None:
    assert decode(encode(envelope)) == envelope


@given(st.binary())
def test_envelope_decode_is_total(data: bytes) -> None:
    try:
        decode(data)
    except EnvelopeError:
        pass


@given(
    st.lists(
        st.one_of(st.integers(0, 5), st.text(), st.binary(), st.floats(), st.booleans(), st.none()),
        max_size=7,
    )
)
def test_envelope_decode_is_total_on_arrays(items: list[object]) -> None:
    try:
        decode(msgpack.packb(items))
    except EnvelopeError:
        pass


def pack(*items: object) -> bytes:
    return msgpack.packb(list(items))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",  # never used in MessagePack
        pack(),
        msgpack.packb({"type": 1}),
        pack(9, "n1", b"x"),
        pack(1, "n1"),  # too short
        pack(1, b"n1", b"x"),  # origin must be text
        pack(1, "n1", "x"),  # payload must be bin
        pack(2, "n1", True, 1.0, b"x"),  # a boolean is not an id
        pack(2, "n1", 1, -1.0, b"x"),  # negative timeout
        pack(2, "n1", 1, math.nan, b"x"),
        pack(3, "1", b"x"),
        pack(4, 1, b"text"),
        pack(1, "n1", b"x") + b"\x00",  # trailing bytes
    ],
)
def test_envelope_malformed(data: bytes) -> None:
    with pytest.raises(EnvelopeError):
        decode(data)


def test_envelope_ignores_extra_items() -> None:
    assert decode(pack(1, "n1", b"x", "future")) == Message("n1", b"x")
    # a whole-number timeout may arrive as an integer
    assert decode(pack(2, "n1", 1, 5, b"x")) == Request("n1", 1, 5.0, b"x")
