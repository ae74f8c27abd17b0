"""``/hubs/approvals``: a person in the loop (docs/hubs/approvals.md)."""

from .hub import ApprovalsHub
from .notifier import ApprovalsEvents
from .rest import ApprovalsRest

__all__ = ["ApprovalsEvents", "ApprovalsHub", "ApprovalsRest"]
