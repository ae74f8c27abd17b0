"""The speech-to-text providers a server offers, by the names users choose them by.

``sphinx`` (the default, offline) is a ``SphinxPool`` of PocketSphinx worker
processes, started on demand (``OnDemandPool``): loading the model takes a
second and memory, which a server that never hears audio should not pay, at
every start. ``openai`` exists when ``--stt-openai-url`` names an endpoint.
"""

from __future__ import annotations

import attrs
import trio

from ...config import Settings
from ...voice import OpenAITranscription, SpeechStream, SpeechToText, SphinxPool


class OnDemandPool:
    """A ``SpeechToText`` whose pool starts with the first stream (then stays)."""

    def __init__(self, pool: SphinxPool) -> None:
        self.pool = pool
        self._nursery: trio.Nursery | None = None
        self._started = False
        self._lock = trio.Lock()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The service where the pool runs once started."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    def statistics(self) -> dict[str, int]:
        """For ``GET /stats``: the pool's counters (all 0 until the first stream)."""
        return attrs.asdict(self.pool.statistics())

    async def open_stream(self, *, auto: bool, pause: float) -> SpeechStream:
        async with self._lock:  # the first caller starts the pool; the others wait for it
            if not self._started:
                assert self._nursery is not None, "run() the service first"
                await self._nursery.start(self.pool.run)
                self._started = True
        return await self.pool.open_stream(auto=auto, pause=pause)


def providers_of(settings: Settings) -> tuple[OnDemandPool, dict[str, SpeechToText]]:
    """The providers, by name; ValueError for a default provider that cannot be used."""
    if settings.stt_provider == "openai" and not settings.stt_openai_url:
        raise ValueError("--stt-provider openai needs --stt-openai-url")
    sphinx = OnDemandPool(SphinxPool(settings.stt_workers, settings.stt_streams_per_worker))
    providers: dict[str, SpeechToText] = {"sphinx": sphinx}
    if settings.stt_openai_url:
        providers["openai"] = OpenAITranscription(
            settings.stt_openai_url,
            settings.stt_openai_model,
            settings.stt_openai_key,
            max_utterance=settings.voice_max_utterance,
        )
    return sphinx, providers
