"""The Voisnap hubs: ChatHub and VoiceHub, another face of the same runtime
(docs/hubs/voisnap.md)."""

from .calls import Calls, CallSettings
from .chat_hub import VoisnapChatHub
from .conversations import Conversations, is_voisnap_session
from .face import SophonOnly, VoisnapFace
from .lifecycle import VoisnapServices
from .voice_hub import VoisnapVoiceHub

__all__ = [
    "CallSettings",
    "Calls",
    "Conversations",
    "SophonOnly",
    "VoisnapChatHub",
    "VoisnapFace",
    "VoisnapServices",
    "VoisnapVoiceHub",
    "is_voisnap_session",
]
