"""The agent stream without SignalR (seed 004): ``/v1/stream`` (docs/v1-stream.md),
and its REST twin ``POST /v1/tasks`` and ``GET /v1/tasks/{id}`` (docs/v1.md), on
the same intake and runtime as the hubs: another face of the one runtime."""

from .connection import PATH, StreamServices, serve
from .face import StreamFace
from .rest import V1TasksRest
from .sessions import StreamSessions
from .submission import Refused, Submission, submit
from .turns import TurnLogs

__all__ = [
    "PATH",
    "Refused",
    "StreamFace",
    "StreamServices",
    "StreamSessions",
    "Submission",
    "TurnLogs",
    "V1TasksRest",
    "serve",
    "submit",
]
