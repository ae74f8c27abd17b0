"""``/hubs/chat``: messages in, the agent's stream out (docs/hubs/chat.md)."""

from .hub import ChatHub, ChatServices
from .notifier import ChatEvents
from .rest import ChatRest

__all__ = ["ChatEvents", "ChatHub", "ChatRest", "ChatServices"]
