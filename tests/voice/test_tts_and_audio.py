"""EspeakSpeech (real espeak-ng), resampling and the worker wire format."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest

from voisnap.voice import EspeakSpeech, TtsError, resample
from voisnap.voice.audio import read_wav, wav_bytes
from voisnap.voice.wire import FrameReader, encode


async def test_tts_espeak_gives_16khz_pcm_of_plausible_length() -> None:
    pcm = await EspeakSpeech().synthesize("i would like to order a pizza")
    seconds = len(pcm) / 32000
    assert len(pcm) % 2 == 0
    # Seven words at 160 words per minute, plus espeak-ng's leading and trailing pauses.
    assert 1.5 < seconds < 4.0
    samples = np.frombuffer(pcm, "<i2")
    assert np.abs(samples).max() > 1000  # speech, not silence


async def test_tts_espeak_text_is_never_an_option() -> None:
    pcm = await EspeakSpeech().synthesize("--version")
    assert len(pcm) > 16000


async def test_tts_missing_espeak_is_a_clear_error() -> None:
    with pytest.raises(TtsError, match="not installed"):
        await EspeakSpeech(executable="espeak-ng-missing").synthesize("hello")


def test_resample_keeps_duration_and_frequency() -> None:
    time = np.arange(22050) / 22050
    tone = (8000 * np.sin(2 * np.pi * 440 * time)).astype("<i2").tobytes()
    out = np.frombuffer(resample(tone, 22050), "<i2")
    assert len(out) == 16000
    spectrum = np.abs(np.fft.rfft(out))
    assert abs(int(np.argmax(spectrum)) - 440) <= 1  # one-second signal: bins are 1 Hz


def test_wav_round_trip_and_streaming_header() -> None:
    pcm = bytes(range(256)) * 10
    assert read_wav(wav_bytes(pcm)) == (pcm, 16000)
    # espeak-ng --stdout cannot seek: its sizes are 0x7FFFFFFF.
    streaming = bytearray(wav_bytes(pcm))
    streaming[40:44] = (0x7FFFFFFF).to_bytes(4, "little")
    assert read_wav(bytes(streaming)) == (pcm, 16000)


def test_wire_messages_survive_any_split() -> None:
    data = encode("audio", 7, b"\x01\x02" * 100) + encode("final", 7, "open the door", 0.5)
    for split in range(len(data) + 1):
        reader = FrameReader()
        messages = []
        for piece in (data[:split], data[split:]):
            reader.receive_data(piece)
            while (message := reader.next_message()) is not None:
                messages.append(message)
        assert messages == [["audio", 7, b"\x01\x02" * 100], ["final", 7, "open the door", 0.5]]


def test_wire_refuses_oversized_and_malformed_messages() -> None:
    reader = FrameReader()
    reader.receive_data((1 << 30).to_bytes(4, "big"))
    with pytest.raises(ValueError, match="exceeds"):
        reader.next_message()
    body = msgpack.packb({"not": "an array"})
    reader = FrameReader()
    reader.receive_data(len(body).to_bytes(4, "big") + body)
    with pytest.raises(ValueError, match="array"):
        reader.next_message()


def test_recognizer_cuts_an_utterance_at_the_limit(monkeypatch) -> None:
    """Manual mode has no pauses: MAX_UTTERANCE bounds the audio held per stream."""
    from tests.voice.conftest import sox_raw
    from voisnap.voice import recognizer

    monkeypatch.setattr(recognizer, "MAX_UTTERANCE", 0.5)
    stream = recognizer.SphinxRecognizer(
        recognizer.new_decoder(), auto=False, pause=0.5, full_final=True
    )
    noise = sox_raw("synth", "1.2", "whitenoise", "vol", "0.3")
    stream.feed(noise)
    assert stream._utterance_bytes < 0.5 * 32000
    assert len(stream._utterance) < 0.5 * 32000
