"""Speech in and out (issue 16): speech-to-text streams and text-to-speech.

See docs/voice-pipeline.md. Offline by default: ``SphinxPool`` (PocketSphinx
in worker processes) and ``EspeakSpeech`` (espeak-ng); ``OpenAITranscription``
uses an OpenAI-compatible endpoint instead.
"""

from .audio import resample
from .base import (
    Final,
    Interim,
    SpeechStream,
    SpeechToText,
    SttBusy,
    SttError,
    TextToSpeech,
    TtsError,
)
from .espeak import EspeakSpeech
from .openai import OpenAITranscription
from .pool import PoolStatistics, SphinxPool

__all__ = [
    "EspeakSpeech",
    "Final",
    "Interim",
    "OpenAITranscription",
    "PoolStatistics",
    "SpeechStream",
    "SpeechToText",
    "SphinxPool",
    "SttBusy",
    "SttError",
    "TextToSpeech",
    "TtsError",
    "resample",
]
