"""PCM helpers: resampling (soxr), WAV in and out, chunking.

Resampling is done by soxr (a polyphase filter with proper anti-aliasing),
never by picking samples by hand: aliasing from a naive resampler measurably
hurts recognition.
"""

from __future__ import annotations

import io
import struct
import wave

import numpy as np
import soxr

from .base import SAMPLE_RATE, SAMPLE_WIDTH


def resample(pcm: bytes, from_rate: int, to_rate: int = SAMPLE_RATE) -> bytes:
    """Mono s16le ``pcm`` at ``from_rate`` Hz, returned at ``to_rate`` Hz."""
    if len(pcm) % SAMPLE_WIDTH:
        raise ValueError("PCM of s16le samples has an even length")
    if from_rate == to_rate:
        return pcm
    samples = np.frombuffer(pcm, dtype="<i2")
    return soxr.resample(samples, from_rate, to_rate).astype("<i2").tobytes()


def wav_bytes(pcm: bytes, rate: int = SAMPLE_RATE) -> bytes:
    """A RIFF/WAVE file holding mono s16le ``pcm`` (what transcription APIs accept)."""
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(SAMPLE_WIDTH)
        wav.setframerate(rate)
        wav.writeframes(pcm)
    return out.getvalue()


def read_wav(data: bytes) -> tuple[bytes, int]:
    """(mono s16le PCM, sample rate) of a WAV file.

    espeak-ng ``--stdout`` writes a streaming header whose sizes are 0x7FFFFFFF
    (it cannot seek back), so the ``data`` chunk is taken to run to the end of
    the file rather than trusting its size field.
    """
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError("not a RIFF/WAVE file")
    position, rate, channels, width = 12, 0, 0, 0
    while position + 8 <= len(data):
        kind, size = data[position : position + 4], struct.unpack_from("<I", data, position + 4)[0]
        body = position + 8
        if kind == b"fmt ":
            _, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", data, body)
            width = bits // 8
        elif kind == b"data":
            if (channels, width) != (1, SAMPLE_WIDTH):
                raise ValueError(f"expected mono 16-bit WAV, got {channels} ch, {width * 8} bit")
            pcm = data[body : min(body + size, len(data))]
            return pcm[: len(pcm) - len(pcm) % SAMPLE_WIDTH], rate
        position = body + size + (size & 1)
    raise ValueError("WAV file without a data chunk")


def chunks(pcm: bytes, size: int) -> list[bytes]:
    """``pcm`` cut into pieces of at most ``size`` bytes (``size`` even)."""
    return [pcm[start : start + size] for start in range(0, len(pcm), size)]
