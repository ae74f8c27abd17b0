"""The two ways a protocol exchange can go wrong, as in h11 and wsproto.

``RemoteProtocolError``: the peer broke the protocol (bad JSON, oversize message,
bad handshake). The connection is closed with a message that names the problem.

``LocalProtocolError``: we tried to do something the protocol forbids in the
current state. That is a bug in voisnap, never the peer's fault.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """Base class of both protocol errors."""


class LocalProtocolError(ProtocolError):
    """We misused the protocol."""


class RemoteProtocolError(ProtocolError):
    """The peer misused the protocol. ``str(error)`` is safe to show the peer:
    it describes their bytes, not our internals."""


class EncodeError(ProtocolError):
    """A message holds a value its hub protocol cannot carry (NaN in JSON, an
    integer beyond 64 bits in MessagePack, a set, nesting too deep to write).
    ``str(error)`` describes the value, never our internals."""


# What the standard encoders raise for a value they cannot write.
ENCODER_FAILURES = (TypeError, ValueError, OverflowError, RecursionError)
