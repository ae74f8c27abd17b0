"""Voisnap's WebRtcHub (seed 002: browser voice calls; docs/hubs/voisnap-webrtc.md).

``/voisnap/hubs/webrtc?agentId=...``: the hub carries the signaling (the
browser's offer, voisnap's answer, candidates both ways); voisnap's side of
the peer connection lives in the media worker (``voisnap.islands.webrtc``).
The call itself is VoiceHub's ``calls.Call`` at 16 kHz: the browser's
microphone, decoded by the worker, is its upload; its speech goes to the
worker's outgoing track; barge-in also drops what the worker still holds.

A call's media runs beside the calls (``Calls.start_soon``), in its own error
boundary, as long as the peer connection and the hub connection both live. The browser
closing its peer connection is a hang-up (the session ends, as with
``EndSessionAsync``); a peer connection that does not connect in time, or a
worker that dies, is ``WEBRTC_FAILED``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

import trio

from ...failures import error_boundary
from ...islands.webrtc import ENDED_STATES, MediaFailed, MediaWorker, Peer, Refused
from . import errors
from .call_hub import CALL, VoisnapCallHub
from .calls import Call
from .errors import VoisnapFault
from .events import CallState, IceCandidate
from .lifecycle import ENDED_BY_USER

log = logging.getLogger(__name__)

MOST_SDP = 16 * 1024
MOST_CANDIDATE = 1024
RETRY_LISTENING = 1.0
"""Seconds before the microphone is transcribed again after the speech pipeline failed."""
WEBRTC_FAILED = "WEBRTC_FAILED"


class WebRtcMedia:
    """This process's browser calls: the media worker and the places."""

    def __init__(self, worker: MediaWorker, most: int, connect_timeout: float) -> None:
        self.worker = worker
        self.most = most
        self.connect_timeout = connect_timeout
        self.calls = 0

    def take_place(self) -> None:
        if self.calls >= self.most:
            raise VoisnapFault(
                errors.SESSION_LIMIT_REACHED,
                f"This server has {self.most} browser calls already.",
            )
        self.calls += 1

    def give_place(self) -> None:
        self.calls -= 1

    def statistics(self) -> dict[str, Any]:
        pid = self.worker.pid
        return {
            "calls": self.calls,
            "workerPid": pid,
            "restarts": self.worker.restarts,
            "workerThreads": _count(f"/proc/{pid}/task") if pid else None,
            "workerOpenFiles": _count(f"/proc/{pid}/fd") if pid else None,
        }


class WebRtcCall(Call):
    """A VoiceHub call whose audio travels over a peer connection."""

    peer: Peer | None = None
    scope: trio.CancelScope | None = None

    async def _interrupt(self, message_id: str) -> None:
        if self.peer is not None:
            await self.peer.flush()  # what the worker still holds of the reply
        await super()._interrupt(message_id)


class VoisnapWebRtcHub(VoisnapCallHub):
    call_class = WebRtcCall

    async def _leave(self) -> None:
        call = self.context.items.get(CALL)
        if call is not None and call.scope is not None:
            call.scope.cancel()  # its media ends; the peer connection closes
        await super()._leave()

    # -- methods ---------------------------------------------------------------------------

    async def get_ice_servers(self) -> list[dict[str, Any]]:
        """The STUN/TURN servers voisnap uses, for the browser's RTCPeerConnection."""
        return [server.as_json() for server in self._media.worker.ice_servers]

    async def send_offer(self, offer: Any) -> dict[str, str]:
        """The browser's offer in, voisnap's answer out (its candidates also as events)."""
        await self._check_not_ended()
        try:
            return await self._answer(self._offered_sdp(offer))
        except VoisnapFault as fault:
            await self._refuse(fault)
            raise  # not reached: _refuse raises

    async def _answer(self, sdp: str) -> dict[str, str]:
        call = self._call
        if call.peer is not None:
            raise _invalid("This session already has a peer connection.")
        media = self._media
        media.take_place()
        peer = call.peer = media.worker.peer()
        try:
            answer = await peer.answer(sdp)
        except BaseException as error:
            call.peer = None
            with trio.CancelScope(shield=True):
                await peer.close()
            media.give_place()
            if isinstance(error, Refused):
                raise _invalid(f"The offer was refused: {error}") from None
            if isinstance(error, MediaFailed):
                raise VoisnapFault(WEBRTC_FAILED, str(error), recoverable=True) from None
            raise
        call.scope = trio.CancelScope()
        self.services.calls.start_soon(lambda: self._run_media(call, peer))
        # After the Completion: a browser adds candidates only once it has the answer.
        candidates = [IceCandidate(*found) for found in answer["candidates"]]
        self.context.after_reply(lambda: self._tell_candidates(candidates))
        return {"type": "answer", "sdp": answer["sdp"]}

    async def _tell_candidates(self, candidates: list[IceCandidate]) -> None:
        for candidate in candidates:
            await self.clients.caller.send("IceCandidate", candidate)

    async def add_ice_candidate(self, candidate: Any) -> None:
        """One of the browser's candidates (``RTCIceCandidate.toJSON()``)."""
        await self._check_not_ended()
        try:
            text, mid, index = self._candidate_of(candidate)
            peer = self._call.peer
            if peer is None:
                raise _invalid("There is no peer connection yet: send the offer first.")
            try:
                await peer.add_candidate(text, mid, index)
            except MediaFailed as error:
                raise _invalid(f"The candidate was refused: {error}") from None
        except VoisnapFault as fault:
            await self._refuse(fault)

    # -- the call's media ------------------------------------------------------------------

    async def _run_media(self, call: WebRtcCall, peer: Peer) -> None:
        """As long as the call lives: the microphone to the speech pipeline, the
        agent's speech to the peer, the peer's states to the browser."""
        media = self._media
        assert call.scope is not None
        try:
            with call.scope, error_boundary(log, "a browser call's media"):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._listen, call, peer)
                    nursery.start_soon(self._speak, call, peer)
                    ending = await self._watch(peer, media.connect_timeout)
                    nursery.cancel_scope.cancel()
                await ending()
        finally:
            call.peer = None
            with trio.CancelScope(shield=True):
                await peer.close()
            media.give_place()

    async def _watch(self, peer: Peer, connect_timeout: float) -> Callable[[], Any]:
        """Tell the browser each state until the call ends; what to do then."""
        states = _StateTeller(peer, self.clients.caller)
        connected = False
        with trio.move_on_after(connect_timeout) as connecting:
            while not connected and states.seen not in ENDED_STATES:
                connected = await states.next() == "connected"
        if not connected:
            why = "The media worker stopped." if peer.lost else (
                "The peer connection did not connect"
                + (f" within {connect_timeout:g} seconds." if connecting.cancelled_caught else ".")
            )
            return lambda: self._fail(VoisnapFault(WEBRTC_FAILED, why, recoverable=False))
        while states.seen not in ENDED_STATES:
            await states.next()
        if peer.lost:
            fault = VoisnapFault(WEBRTC_FAILED, "The media worker stopped.", recoverable=False)
            return lambda: self._fail(fault)
        return self._hang_up

    async def _hang_up(self) -> None:
        """The browser closed its peer connection: the session ends, as by ``EndSessionAsync``."""
        session_id = self.conversation.session_id
        ended = await self.services.conversations.end(self.owner, session_id, ENDED_BY_USER)
        if ended:
            await self._cancel_reply()
        await self._goodbye(session_id, ended)

    async def _listen(self, call: WebRtcCall, peer: Peer) -> None:
        while peer.state not in ENDED_STATES:
            try:
                await call.listen_audio(peer.heard())
            except VoisnapFault as fault:
                await self.clients.caller.send("Error", fault.event())
                await trio.sleep(RETRY_LISTENING)

    async def _speak(self, call: WebRtcCall, peer: Peer) -> None:
        try:
            async for chunk in call.speak_audio():
                await peer.play(chunk)
        except MediaFailed:
            return  # the peer is gone; _watch ends the call

    # -- checks ----------------------------------------------------------------------------

    def _offered_sdp(self, offer: Any) -> str:
        match offer:
            case {"type": "offer", "sdp": str(sdp)} if len(sdp) <= MOST_SDP:
                return sdp
            case {"type": "offer", "sdp": str()}:
                raise _invalid(f"An offer's SDP may have {MOST_SDP} characters.")
        raise _invalid('The offer must be {"type": "offer", "sdp": "..."}.')

    def _candidate_of(self, candidate: Any) -> tuple[str, str | None, int | None]:
        match candidate:
            case {"candidate": str(text)} if len(text) <= MOST_CANDIDATE:
                mid, index = candidate.get("sdpMid"), candidate.get("sdpMLineIndex")
                if (mid is None or isinstance(mid, str)) and (
                    index is None or (type(index) is int and 0 <= index < 64)
                ):
                    return text, mid, index
        raise _invalid(
            "A candidate is {candidate, sdpMid, sdpMLineIndex}, "
            "as RTCIceCandidate.toJSON() gives it."
        )

    @property
    def _media(self) -> WebRtcMedia:
        return self.services.webrtc


class _StateTeller:
    """The peer connection's states as they change, each told to the browser once."""

    def __init__(self, peer: Peer, caller: Any) -> None:
        self._peer = peer
        self._caller = caller
        self.seen = "new"

    async def next(self) -> str:
        while self._peer.state == self.seen:
            await self._peer.changed.wait()
        self.seen = self._peer.state
        await self._caller.send("CallState", CallState(self.seen))
        return self.seen


def _count(folder: str) -> int | None:
    """Entries of a /proc folder (Linux); None where there is none."""
    try:
        return len(os.listdir(folder))
    except OSError:
        return None


def _invalid(message: str) -> VoisnapFault:
    return VoisnapFault(errors.INVALID_REQUEST, message, recoverable=True)
