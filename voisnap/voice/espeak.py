"""EspeakSpeech: text-to-speech with espeak-ng, run as a subprocess.

espeak-ng writes a WAV file at 22,050 Hz to stdout (``--stdout``); it is
resampled with soxr to the 16 kHz mono s16le PCM that the rest of
voisnap.voice speaks. The text goes in on stdin, never on the command line,
so a text starting with "-" cannot be taken for an option. The default voice
``en-us`` is the one PocketSphinx's US English model transcribes best.
"""

from __future__ import annotations

import shutil

import trio

from .audio import read_wav, resample
from .base import TtsError

#: Bounds a synthesis: espeak-ng produces speech many times faster than real time.
TIMEOUT = 30.0


class EspeakSpeech:
    """A ``TextToSpeech`` provider; ``rate`` is in words per minute (espeak's ``-s``)."""

    def __init__(self, voice: str = "en-us", rate: int = 160, executable: str = "espeak-ng"):
        self.voice = voice
        self.rate = rate
        self.executable = executable

    async def synthesize(self, text: str) -> bytes:
        path = shutil.which(self.executable)
        if path is None:
            raise TtsError(f"{self.executable} is not installed (apt-get install espeak-ng)")
        command = [path, "-v", self.voice, "-s", str(self.rate), "--stdout"]
        with trio.fail_after(TIMEOUT):
            result = await trio.run_process(
                command, stdin=text.encode(), capture_stdout=True, capture_stderr=True, check=False
            )
        if result.returncode != 0:
            reason = result.stderr.decode(errors="replace").strip()
            raise TtsError(f"espeak-ng exited with {result.returncode}: {reason}")
        pcm, rate = read_wav(result.stdout)
        return resample(pcm, rate)
