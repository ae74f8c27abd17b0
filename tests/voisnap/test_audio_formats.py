"""The VoiceHub's audio formats: mu-law at 8 kHz decodes to the pipeline's
16 kHz linear16 and back, chunk by chunk, without loss beyond the codec's."""

from __future__ import annotations

import numpy as np
import pytest

from voisnap.apps.voisnap.audio_formats import FORMATS, LINEAR16, MULAW

RATE = 16000


def tone(seconds: float, hertz: float = 440.0) -> bytes:
    t = np.arange(int(RATE * seconds)) / RATE
    return (np.sin(2 * np.pi * hertz * t) * 12000).astype("<i2").tobytes()


def samples(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2").astype(float)


def test_the_formats_are_the_two_of_the_contract() -> None:
    assert set(FORMATS) == {"linear16", "mulaw"}
    assert (MULAW.rate, MULAW.bytes_per_second) == (8000, 8000)
    assert (LINEAR16.rate, LINEAR16.bytes_per_second) == (16000, 32000)


def test_mulaw_goes_down_at_8_khz_one_byte_a_sample() -> None:
    encoded = MULAW.from_pipeline(tone(1.0))
    assert len(encoded) == 8000


@pytest.mark.parametrize("chunk", [80, 800, 1601])
def test_mulaw_chunks_come_up_as_the_same_signal(chunk: int) -> None:
    original = tone(1.0)
    encoded = MULAW.from_pipeline(original)
    decode = MULAW.decoder()
    decoded = b"".join(decode(encoded[i : i + chunk]) for i in range(0, len(encoded), chunk))
    got, want = samples(decoded), samples(original)
    assert 0 <= len(want) - len(got) < RATE // 10  # the resampler holds back a tail (< 0.1 s)
    n = min(len(got), len(want)) - 200
    correlation = np.corrcoef(got[100:n], want[100:n])[0, 1]
    assert correlation > 0.99


def test_linear16_passes_through_and_refuses_half_a_sample() -> None:
    decode = LINEAR16.decoder()
    assert decode(b"\x01\x02\x03\x04") == b"\x01\x02\x03\x04"
    with pytest.raises(ValueError, match="whole 16-bit samples"):
        decode(b"\x01\x02\x03")
    assert LINEAR16.from_pipeline(b"\x01\x02") == b"\x01\x02"
