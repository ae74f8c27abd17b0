"""One stream's recognizer: endpointing plus a PocketSphinx decoder (sans-IO).

Theory of operation: PCM goes in through ``feed`` and ``finish``; ``Interim``
and ``Final`` results come out as the return value. In Auto mode the
``UtteranceCutter`` decides where utterances start and end; in Manual mode the
whole stream is one utterance, ended by ``finish``.

Interims come from an incremental decode (``process_raw(full_utt=False)``) as
the audio arrives. The final can come from two places (``full_final``), measured
in docs/voice-pipeline.md ("Measurements"):

- ``full_final=False`` (the pool's default): the same incremental decoder's
  result at ``end_utt()``. It is ready about 0.1 s after the endpointer's
  decision, which meets issue 16's target of 300 ms;
- ``full_final=True``: the utterance decoded again in one call with
  ``full_utt=True``, which normalizes with the utterance's own (batch)
  cepstral mean instead of a running mean that starts from the model's
  defaults. It helps a decoder's very first utterance, but costs about half
  the utterance's duration at its end, and over our sentences its word error
  rate was no better on average (both within a few points of each other).

``bestpath`` is on so that the decoder computes posteriors over its lattice:
each word of ``seg()`` then has a posterior probability, and
``Final.confidence`` is their mean over the words (fillers and silences
left out). The whole hypothesis' posterior (``hyp().prob``) is a product, so
it shrinks with the length of the sentence and would not be comparable.
An utterance with no words gives no ``Final`` at all (silence and noise are
not transcripts).
"""

from __future__ import annotations

from pocketsphinx import Decoder

from .base import SAMPLE_RATE, SAMPLE_WIDTH, Final, Interim
from .endpointing import SpeechAudio, UtteranceCutter, UtteranceEnded, UtteranceStarted

#: Interims are computed at most once per this much audio (seconds).
INTERIM_INTERVAL = 0.25
#: An utterance is cut here even without a pause: it bounds the audio kept per stream.
MAX_UTTERANCE = 30.0


def new_decoder() -> Decoder:
    """The English model shipped in the ``pocketsphinx`` wheel; nothing is downloaded.

    ``fwdflat`` (a second, flat-lexicon search) is off: it costs a fifth of the
    decoding time and did not lower the word error rate on our measurements.
    """
    return Decoder(bestpath=True, fwdflat=False, loglevel="FATAL")


class SphinxRecognizer:
    def __init__(self, decoder: Decoder, *, auto: bool, pause: float, full_final: bool) -> None:
        self._decoder = decoder
        self._cutter = UtteranceCutter(pause) if auto else None
        self._full_final = full_final
        self._utterance = bytearray()
        self._utterance_bytes = 0
        self._in_utterance = False
        self._since_interim = 0
        self._last_interim = ""
        if self._cutter is None:
            self._start()

    def feed(self, pcm: bytes) -> list[Interim | Final]:
        if self._cutter is None:
            return self._speech(pcm)
        return self._follow(self._cutter.feed(pcm))

    def finish(self) -> list[Interim | Final]:
        if self._cutter is None:
            return self._end()
        return self._follow(self._cutter.finish())

    def close(self) -> None:
        """Abandon the utterance in progress, so the decoder can serve another stream."""
        if self._in_utterance:
            self._in_utterance = False
            self._decoder.end_utt()

    def _follow(self, cuts: list) -> list[Interim | Final]:
        results: list[Interim | Final] = []
        for cut in cuts:
            match cut:
                case UtteranceStarted():
                    self._start()
                case SpeechAudio(pcm=pcm):
                    results += self._speech(pcm)
                case UtteranceEnded():
                    results += self._end()
        return results

    def _start(self) -> None:
        self._decoder.start_utt()
        self._utterance.clear()
        self._utterance_bytes = 0
        self._in_utterance = True
        self._since_interim = 0
        self._last_interim = ""

    def _speech(self, pcm: bytes) -> list[Interim | Final]:
        self._decoder.process_raw(pcm, False, False)
        if self._full_final:
            self._utterance += pcm  # kept only for the second decode
        self._utterance_bytes += len(pcm)
        self._since_interim += len(pcm)
        if self._utterance_bytes >= MAX_UTTERANCE * SAMPLE_RATE * SAMPLE_WIDTH:
            results = self._end()
            self._start()
            return results
        if self._since_interim < INTERIM_INTERVAL * SAMPLE_RATE * SAMPLE_WIDTH:
            return []
        self._since_interim = 0
        hypothesis = self._decoder.hyp()
        text = hypothesis.hypstr if hypothesis else ""
        if not text or text == self._last_interim:
            return []
        self._last_interim = text
        return [Interim(text)]

    def _end(self) -> list[Interim | Final]:
        if not self._in_utterance:
            return []
        self._in_utterance = False
        self._decoder.end_utt()
        if self._full_final:
            self._decoder.start_utt()
            self._decoder.process_raw(bytes(self._utterance), False, True)
            self._decoder.end_utt()
        self._utterance.clear()
        hypothesis = self._decoder.hyp()
        if hypothesis is None or not hypothesis.hypstr:
            return []
        return [Final(hypothesis.hypstr, self._confidence())]

    def _confidence(self) -> float:
        posteriors = [
            segment.prob
            for segment in self._decoder.seg()
            if not segment.word.startswith(("<", "[", "+"))
        ]
        if not posteriors:
            return 0.0
        return min(1.0, max(0.0, sum(posteriors) / len(posteriors)))
