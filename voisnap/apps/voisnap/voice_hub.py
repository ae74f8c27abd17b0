"""Voisnap's VoiceHub (seed 002: raw PCM for phone calls, SIP, custom audio
pipelines; docs/hubs/voisnap.md, "VoiceHub").

``/voisnap/hubs/voice?agentId=...&encoding=linear16|mulaw``. The documents give
its purpose, URL, lifecycle and errors, not its methods; these are in
SignalR's own idiom:

- ``SendAudio(stream)``: the caller's audio, a client-to-server stream of
  base64 chunks; the call's transcripts arrive as ``Transcript`` events;
- ``ReceiveAudio()``: the agent's speech, a server-to-client stream of base64
  chunks, for as long as the client reads it;
- ``EndSessionAsync()``, as on ChatHub.

The call itself is ``calls.Call``; the lifecycle is ``lifecycle.VoisnapHub``'s.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from . import errors
from .audio_formats import FORMATS, LINEAR16, AudioFormat
from .call_hub import VoisnapCallHub
from .errors import VoisnapFault


class VoisnapVoiceHub(VoisnapCallHub):

    async def on_connected(self) -> None:
        encoding = self.context.query.get("encoding", LINEAR16.name)
        if encoding not in FORMATS:
            names = " or ".join(FORMATS)
            fault = VoisnapFault(
                errors.INVALID_REQUEST,
                f"'encoding' must be {names}, not {encoding!r}.",
                recoverable=False,
            )
            return await self._fail(fault)
        await super().on_connected()

    def _audio_format(self) -> AudioFormat:
        return FORMATS[self.context.query.get("encoding", LINEAR16.name)]

    async def send_audio(self, audio_chunks: AsyncIterator[Any]) -> None:
        """The caller's speech, until the client completes the stream."""
        await self._check_not_ended()
        try:
            await self._call.listen(audio_chunks)
        except VoisnapFault as fault:
            await self._refuse(fault)

    async def receive_audio(self) -> AsyncIterator[str]:
        """The agent's speech, reply after reply, until the client cancels the stream."""
        await self._check_not_ended()
        try:
            async for chunk in self._call.speak():
                yield chunk
        except VoisnapFault as fault:
            await self._refuse(fault)
