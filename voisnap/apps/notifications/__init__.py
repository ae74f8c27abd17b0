"""``/hubs/notifications``: a user's live feed and its producers (docs/hubs/notifications.md)."""

from .hub import NotificationsHub
from .insights import Insights
from .license import LicenseWatch
from .publisher import Notifications
from .rest import NotificationsRest

__all__ = ["Insights", "LicenseWatch", "Notifications", "NotificationsHub", "NotificationsRest"]
