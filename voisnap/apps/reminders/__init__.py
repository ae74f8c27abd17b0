"""Reminders and heartbeat runs (issue 14; docs/reminders.md)."""

from .heartbeat import HEARTBEAT_ACTIONED, Heartbeat
from .rest import RemindersRest

__all__ = ["HEARTBEAT_ACTIONED", "Heartbeat", "RemindersRest"]
