"""The Voisnap hubs: ChatHub, VoiceHub and WebRtcHub, another face of the same runtime
(docs/hubs/voisnap.md)."""

from .calls import Calls, CallSettings
from .chat_hub import VoisnapChatHub
from .conversations import Conversations, is_voisnap_session
from .face import SophonOnly, VoisnapFace
from .lifecycle import VoisnapServices
from .voice_hub import VoisnapVoiceHub
from .webrtc_hub import VoisnapWebRtcHub, WebRtcMedia

__all__ = [
    "CallSettings",
    "Calls",
    "Conversations",
    "SophonOnly",
    "VoisnapChatHub",
    "VoisnapFace",
    "VoisnapServices",
    "VoisnapVoiceHub",
    "VoisnapWebRtcHub",
    "WebRtcMedia",
    "is_voisnap_session",
]
