"""``/hubs/discussion``: panels of agents with a judge (docs/hubs/discussion.md)."""

from .hub import DiscussionHub
from .notifier import DiscussionFace
from .rest import DiscussionRest
from .runs import Runs

__all__ = ["DiscussionFace", "DiscussionHub", "DiscussionRest", "Runs"]
