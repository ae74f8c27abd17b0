"""Voice on the chat hub: ``StreamAudio`` and each user's listening preferences (docs/voice.md)."""

from .listening import Listening, VoiceLimits
from .providers import OnDemandPool, providers_of
from .rest import VoiceRest

__all__ = ["Listening", "OnDemandPool", "VoiceLimits", "VoiceRest", "providers_of"]
