"""What the Voisnap hubs of calls share: VoiceHub and WebRtcHub (docs/hubs/voisnap.md).

Each connection of a call hub holds a ``calls.Call`` for its conversation
from ``SessionStarted`` to the disconnect: the agent's replies reach it
through ``Calls``, in this process or from another one.
"""

from __future__ import annotations

from ...errors import HubError
from ...storage.base import Conversation
from .audio_formats import LINEAR16, AudioFormat
from .calls import Call
from .lifecycle import VoisnapHub

CALL = "voisnap.call"  # connection item: the connection's Call


class VoisnapCallHub(VoisnapHub):
    kind = "voice"
    call_class: type[Call] = Call

    def _audio_format(self) -> AudioFormat:
        return LINEAR16

    async def _join(self, conversation: Conversation) -> None:
        await super()._join(conversation)
        call = self.call_class(
            self.services.calls, self.clients.caller, self.owner, conversation,
            self._audio_format(),
        )  # fmt: skip
        self.context.items[CALL] = call
        await self.services.calls.join(call)

    async def _leave(self) -> None:
        call = self.context.items.pop(CALL, None)
        if call is not None:
            self.services.calls.leave(call)
        await super()._leave()

    @property
    def _call(self) -> Call:
        call = self.context.items.get(CALL)
        if call is None:
            raise HubError("The call has not started.")
        return call
