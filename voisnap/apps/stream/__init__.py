"""The agent stream without SignalR (seed 004; docs/v1-stream.md): ``POST /v1/tasks``
and ``GET /v1/tasks/{id}`` so far, on the same intake and runtime as the hubs."""

from .rest import V1TasksRest
from .submission import Refused, Submission, submit

__all__ = ["Refused", "Submission", "V1TasksRest", "submit"]
