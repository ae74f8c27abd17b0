"""Schedules: cron jobs whose prompts agents answer, as workflow runs (docs/schedules.md)."""

from .firing import Firing
from .notifier import WorkflowFace
from .rest import SchedulesRest
from .scheduler import Scheduler
from .schedules_file import load_schedules_file
from .service import Schedules

__all__ = [
    "Firing",
    "Scheduler",
    "Schedules",
    "SchedulesRest",
    "WorkflowFace",
    "load_schedules_file",
]
