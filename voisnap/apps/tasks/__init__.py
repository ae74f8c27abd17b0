"""``/hubs/tasks``: a user's task ledger (docs/hubs/tasks.md)."""

from .hub import TasksHub
from .notifier import TasksEvents

__all__ = ["TasksEvents", "TasksHub"]
