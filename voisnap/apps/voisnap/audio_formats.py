"""The VoiceHub's audio formats (docs/hubs/voisnap.md, "VoiceHub"): chosen at
connect with ``?encoding=``, the same both ways.

- ``linear16`` (the default): 16 kHz mono signed 16-bit little-endian PCM, what
  the speech pipeline (``voisnap.voice``) speaks;
- ``mulaw``: 8 kHz G.711 mu-law, one byte a sample, what telephony carries.

Mu-law is coded by the standard library's ``audioop`` (``audioop-lts`` on
Python 3.13 and later, where it left the standard library); the rate is
changed by soxr (``voice.audio.resample``).
"""

from __future__ import annotations

import warnings

import attrs
import numpy as np
import soxr

from ...voice.audio import resample
from ...voice.base import SAMPLE_RATE

with warnings.catch_warnings():  # deprecated in 3.11 and 3.12, and kept by audioop-lts
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop


@attrs.frozen
class AudioFormat:
    name: str
    rate: int
    bytes_per_sample: int

    @property
    def bytes_per_second(self) -> int:
        return self.rate * self.bytes_per_sample

    def decoder(self) -> Decoder:
        return Decoder(self)

    def from_pipeline(self, pcm: bytes) -> bytes:
        """The pipeline's 16 kHz linear16 PCM (a whole reply), in this format."""
        if self.name == "mulaw":
            return audioop.lin2ulaw(resample(pcm, SAMPLE_RATE, self.rate), 2)
        return pcm


class Decoder:
    """One call's upload, chunk by chunk, as the pipeline's 16 kHz linear16 PCM.
    The resampler keeps its state between chunks, so their edges leave no clicks."""

    def __init__(self, format: AudioFormat) -> None:
        self._format = format
        self._resampler = (
            None
            if format.rate == SAMPLE_RATE
            else soxr.ResampleStream(format.rate, SAMPLE_RATE, 1, dtype="int16")
        )

    def __call__(self, data: bytes) -> bytes:
        """ValueError for a linear16 chunk holding half a sample."""
        if self._format.name == "mulaw":
            data = audioop.ulaw2lin(data, 2)
        elif len(data) % 2:
            raise ValueError("linear16 audio holds whole 16-bit samples (an even number of bytes)")
        if self._resampler is None:
            return data
        samples = np.frombuffer(data, dtype="<i2")
        return self._resampler.resample_chunk(samples).astype("<i2").tobytes()


LINEAR16 = AudioFormat("linear16", SAMPLE_RATE, 2)
MULAW = AudioFormat("mulaw", 8000, 1)
FORMATS = {format.name: format for format in (LINEAR16, MULAW)}
