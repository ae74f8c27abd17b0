"""Hostile clients against Voisnap's WebRtcHub (docs/hubs/voisnap-webrtc.md) at
/voisnap/hubs/webrtc.

A real ``voisnap serve`` (the hostile suite's module ``server``, with this
module's ``SERVER_SETTINGS``: host candidates on 127.0.0.1 only, a 3 s connect
timeout, 2 browser calls at once), driven over raw WebSockets with the JSON hub
protocol. There is no browser: ``OFFER`` is a canned aiortc offer with an
audio section and no candidates of its own (so nothing is ever sent anywhere
but loopback, and an answered call never connects: it must fail with
``WEBRTC_FAILED`` after the connect timeout). Every case asserts what the
document promises (the ``Error`` code and ``recoverable`` flag, the
Completion's error, whether the connection stays), that the place in
``--max-webrtc-sessions`` is given back (``GET /stats`` -> ``webrtc.calls``),
and ends with the server healthy. Waits are bounded with ``trio.fail_after``;
``/stats`` is polled, never slept on.
"""

from __future__ import annotations

import os
import re
import signal
from typing import Any

import httpx
import pytest
import trio

from tests.hostile.helpers import TIMEOUT, assert_quiet_log, log_mark, make_token
from tests.hostile.voisnap_client import (
    VoisnapClient,
    assert_alive,
    assert_healthy,
    open_voisnap,
    unique,
)
from tests.support.server import ServerProcess

WEBRTC = "/voisnap/hubs/webrtc"
CONNECT_TIMEOUT = 3.0
MOST_CALLS = 2
SERVER_SETTINGS = {
    "agent_token_delay": "0.001",
    "webrtc_host": "127.0.0.1",
    "webrtc_connect_timeout": str(int(CONNECT_TIMEOUT)),
    "max_webrtc_sessions": str(MOST_CALLS),
    "max_sessions_per_tenant": "4",
}
MOST_SDP = 16 * 1024
UNEXPECTED = "An unexpected error occurred invoking '{}' on the server. HubException: {}: "
# Made once with aiortc (RTCPeerConnection().addTransceiver("audio"); createOffer;
# setLocalDescription); its candidates (and end-of-candidates) removed and its
# address made 127.0.0.1, so that ICE waits for candidates that never come.
OFFER = "\r\n".join([
    "v=0",
    "o=- 4005669679 4005669679 IN IP4 127.0.0.1",
    "s=-",
    "t=0 0",
    "a=group:BUNDLE 0",
    "a=msid-semantic:WMS *",
    "m=audio 9 UDP/TLS/RTP/SAVPF 96 9 0 8",
    "c=IN IP4 127.0.0.1",
    "a=sendrecv",
    "a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid",
    "a=extmap:2 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
    "a=mid:0",
    "a=msid:d0374646-c265-4ef5-944e-1b76c15bb7c1 76ce86e6-c431-4854-b8b3-41f734682d79",
    "a=rtcp:9 IN IP4 0.0.0.0",
    "a=rtcp-mux",
    "a=ssrc:1393887369 cname:a9744d8b-86d3-4e9d-a4ce-e9aa8ea81f2e",
    "a=rtpmap:96 opus/48000/2",
    "a=rtpmap:9 G722/8000",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000",
    "a=ice-ufrag:xn1O",
    "a=ice-pwd:7s5xkMR7jN2KiAb3NuCjhX",
    "a=fingerprint:sha-256 46:CF:D5:76:E5:A7:56:28:F8:92:6D:A5:C0:69:05:ED:35:56:67:DB:B9:1B:"
    "F0:45:2D:98:8F:33:3C:33:7B:C1",
    "a=setup:actpass",
    "",
])
HEAD, AUDIO = OFFER.split("m=audio", 1)
AUDIO = "m=audio" + AUDIO
DATA_ONLY = HEAD.replace("a=group:BUNDLE 0", "a=group:BUNDLE 0") + "\r\n".join([
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
    "c=IN IP4 127.0.0.1",
    "a=mid:0",
    "a=sctp-port:5000",
    "a=max-message-size:65536",
    "a=ice-ufrag:xn1O",
    "a=ice-pwd:7s5xkMR7jN2KiAb3NuCjhX",
    "a=fingerprint:sha-256 46:CF:D5:76:E5:A7:56:28:F8:92:6D:A5:C0:69:05:ED:35:56:67:DB:B9:1B:"
    "F0:45:2D:98:8F:33:3C:33:7B:C1",
    "a=setup:actpass",
    "",
])
LOOPBACK_CANDIDATE = "candidate:1 1 udp 2130706431 127.0.0.1 9 typ host"


def offer(sdp: str = OFFER) -> dict[str, str]:
    return {"type": "offer", "sdp": sdp}


def padded(size: int) -> str:
    """``OFFER`` with a harmless attribute that makes it ``size`` characters long."""
    pad = size - len(OFFER) - len("a=x-pad:\r\n")
    assert pad > 0
    return OFFER + "a=x-pad:" + "p" * pad + "\r\n"


# -- helpers ---------------------------------------------------------------------------------


async def webrtc_stats(server: ServerProcess) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=TIMEOUT, trust_env=False) as http:
        response = await http.get(f"{server.url}/stats")
    assert response.status_code == 200, response.text
    return response.json()["webrtc"]


async def wait_stats(server: ServerProcess, check: Any, timeout: float = TIMEOUT) -> dict[str, Any]:
    """Poll ``/stats`` until ``check(webrtc)`` holds (bounded)."""
    last: dict[str, Any] = {}
    try:
        with trio.fail_after(timeout):
            while True:
                last = await webrtc_stats(server)
                if check(last):
                    return last
                await trio.sleep(0.05)
    except trio.TooSlowError:
        raise AssertionError(f"/stats never got there: {last}") from None


async def calls_back_to(server: ServerProcess, count: int = 0,
                        timeout: float = TIMEOUT) -> dict[str, Any]:
    return await wait_stats(server, lambda s: s["calls"] == count, timeout)


async def started(client: VoisnapClient) -> None:
    with trio.fail_after(TIMEOUT):
        await client.event("SessionStarted")


async def answered(client: VoisnapClient, sdp: str = OFFER) -> dict[str, Any]:
    with trio.fail_after(TIMEOUT):
        completion = await client.invoke_voisnap("SendOffer", offer(sdp))
    assert "error" not in completion, completion
    answer = completion["result"]
    assert answer["type"] == "answer" and answer["sdp"].startswith("v=0"), answer
    return answer


async def assert_recoverable(client: VoisnapClient, invocation_id: str, code: str,
                             target: str) -> dict[str, Any]:
    """``Error{code, recoverable: true}``, the Completion's error the same text,
    the connection stays."""
    with trio.fail_after(TIMEOUT):
        error = await client.error()
        completion = await client.completion(invocation_id)
    assert error["code"] == code, error
    assert error["recoverable"] is True, error
    assert completion.get("error") == UNEXPECTED.format(target, code) + error["message"], (
        completion, error)
    assert client.close is None and not client.ended, client.close
    return error


async def assert_fatal(client: VoisnapClient, code: str,
                       timeout: float = TIMEOUT) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """``Error{code, recoverable: false}``, then a Close that says the same."""
    with trio.fail_after(timeout):
        error = await client.error()
        close = await client.wait_close()
    assert error["code"] == code, error
    assert error["recoverable"] is False, error
    assert close is not None, "the WebSocket ended without a Close"
    assert close.get("error") == f"{code}: {error['message']}", close
    return error, close


async def end_session(client: VoisnapClient) -> None:
    """``EndSessionAsync``: its Completion, ``SessionEnded``, ``ConversationEnded``, Close."""
    with trio.fail_after(TIMEOUT):
        completion = await client.invoke_voisnap("EndSessionAsync")
        assert "error" not in completion, completion
        ended = await client.event("SessionEnded")
        await client.event("ConversationEnded")
        await client.wait_close()
    assert ended["reason"] == "ended_by_user", ended


async def still_answers(server: ServerProcess) -> None:
    """A fresh connection's offer is answered; its session is then ended."""
    async with open_voisnap(server, WEBRTC) as client:
        await started(client)
        await answered(client)
        await end_session(client)
    await calls_back_to(server)


def worker_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[1])


# -- GetIceServers ---------------------------------------------------------------------------


async def test_get_ice_servers_is_empty_by_default(server):
    async with open_voisnap(server, WEBRTC) as client:
        await started(client)
        with trio.fail_after(TIMEOUT):
            completion = await client.invoke_voisnap("GetIceServers")
        assert completion.get("result") == [], completion
        assert client.named("Error") == []
    await assert_healthy(server)


# -- SendOffer: what is refused ---------------------------------------------------------------

BAD_OFFERS = {
    "a string": OFFER,
    "a number": 42,
    "null": None,
    "a list": [offer()],
    "no type": {"sdp": OFFER},
    "no sdp": {"type": "offer"},
    "type answer": {"type": "answer", "sdp": OFFER},
    "type pranswer": {"type": "pranswer", "sdp": OFFER},
    "type OFFER": {"type": "OFFER", "sdp": OFFER},
    "sdp a number": {"type": "offer", "sdp": 12345},
    "sdp null": {"type": "offer", "sdp": None},
    "sdp a list": {"type": "offer", "sdp": [OFFER]},
    "sdp an object": {"type": "offer", "sdp": {"v": 0}},
    "sdp over 16 KiB": offer(padded(MOST_SDP + 1)),
    "sdp of 30000 characters": offer(padded(30_000)),
    "empty sdp": offer(""),
    "garbage text": offer("hello, I am not an SDP at all"),
    "v=0 only": offer("v=0\r\n"),
    "v=0 then garbage": offer("v=0\r\nthis is not=a line\r\n\r\n???"),
    "no audio (data channel only)": offer(DATA_ONLY),
    "no m-lines": offer(HEAD),
    "binary junk": offer("v=0\r\n" + "".join(chr(c) for c in range(1, 256)) * 8),
    "negative port": offer(OFFER.replace("m=audio 9 ", "m=audio -5 ")),
    "rtpmap junk": offer(OFFER.replace("a=rtpmap:96 opus/48000/2", "a=rtpmap:96 //////")),
    "no formats": offer(OFFER.replace("m=audio 9 UDP/TLS/RTP/SAVPF 96 9 0 8",
                                      "m=audio 9 UDP/TLS/RTP/SAVPF")),
    "no ice credentials": offer(OFFER.replace("a=ice-ufrag:xn1O\r\n", "").replace(
        "a=ice-pwd:7s5xkMR7jN2KiAb3NuCjhX\r\n", "")),
    "bad setup": offer(OFFER.replace("a=setup:actpass", "a=setup:sideways")),
    "bad connection line": offer(OFFER.replace("c=IN IP4 127.0.0.1", "c=IN IP9 ::::")),
    "bogus ssrc-group": offer(OFFER.replace("a=rtcp-mux",
                                            "a=rtcp-mux\r\na=ssrc-group:FID x y z")),
}


@pytest.mark.parametrize("argument", list(BAD_OFFERS.values()), ids=list(BAD_OFFERS))
async def test_a_bad_offer_is_recoverable_invalid_request_and_nothing_is_kept(server, argument):
    mark = log_mark(server)
    async with open_voisnap(server, WEBRTC) as client:
        await started(client)
        invocation_id = await client.invoke_id("SendOffer", argument)
        await assert_recoverable(client, invocation_id, "INVALID_REQUEST", "SendOffer")
        await calls_back_to(server)
        # Nothing was kept: a good offer on the same connection is answered.
        await answered(client)
        await end_session(client)
    await calls_back_to(server)
    assert_quiet_log(server, mark)
    await assert_healthy(server)


# aiortc reads these (or most of them) and answers: an answered one cannot
# connect and its session is ended here; a refused one must be INVALID_REQUEST.
ODD_BUT_MAYBE_VALID = {
    "20 audio m-lines": HEAD.replace("a=group:BUNDLE 0", "a=group:BUNDLE " + " ".join(
        str(n) for n in range(20))) + "".join(
        AUDIO.replace("a=mid:0", f"a=mid:{n}").replace("a=ssrc:1393887369", f"a=ssrc:{n + 1}")
        for n in range(20)),
    "300 m-lines (audio and video)": HEAD.replace("a=group:BUNDLE 0\r\n", "") + "".join(
        f"m={'audio' if n % 2 else 'video'} 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:{n}\r\n"
        for n in range(300)),
    "700 m-lines of nothing": "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n" + "".join(
        "m=audio 9 RTP/AVP 0\r\n" for _ in range(700)),
    "extra unknown attributes": OFFER + "".join(f"a=x-{n}:{'q' * 40}\r\n" for n in range(100)),
    "NUL bytes": OFFER.replace("a=mid:0", "a=mid:\x00\x00\x00"),
    "huge port": OFFER.replace("m=audio 9 ", "m=audio 99999999999999999999999 "),
    "huge payload type": OFFER.replace("a=rtpmap:96 opus/48000/2",
                                       "a=rtpmap:999999999999999999999 opus/48000/2"),
    "clock rate zero": OFFER.replace("opus/48000/2", "opus/0/2"),
    "unknown codecs only": OFFER.replace("96 9 0 8", "120").replace(
        "a=rtpmap:96 opus/48000/2", "a=rtpmap:120 nonsense/1/1"),
    "no fingerprint": re.sub(r"a=fingerprint:[^\r]*\r\n", "", OFFER),
    "bad fingerprint": re.sub(r"a=fingerprint:[^\r]*", "a=fingerprint:sha-256 zz", OFFER),
    "bad direction": OFFER.replace("a=sendrecv", "a=sendrecv\r\na=inactive\r\na=recvonly"),
    "400 rtpmap lines": OFFER.replace(
        "a=rtpmap:96 opus/48000/2",
        "\r\n".join(f"a=rtpmap:{n} opus/48000/2" for n in range(96, 496))),
}


@pytest.mark.parametrize("sdp", list(ODD_BUT_MAYBE_VALID.values()), ids=list(ODD_BUT_MAYBE_VALID))
async def test_an_absurd_offer_is_answered_or_refused_and_its_place_comes_back(server, sdp):
    assert len(sdp) <= MOST_SDP, len(sdp)
    before = await webrtc_stats(server)
    async with open_voisnap(server, WEBRTC) as client:
        await started(client)
        with trio.fail_after(TIMEOUT * 2):
            invocation_id = await client.invoke_id("SendOffer", offer(sdp))
            completion = await client.completion(invocation_id)
        if "error" in completion:
            await assert_recoverable(client, invocation_id, "INVALID_REQUEST", "SendOffer")
            await calls_back_to(server)
            await answered(client)
        await end_session(client)
    after = await calls_back_to(server)
    if before["workerPid"] is not None:
        assert after["workerPid"] == before["workerPid"], (before, after)
        assert after["restarts"] == before["restarts"], (before, after)
    await assert_healthy(server)


async def test_an_offer_of_exactly_16_kib_is_taken(server):
    async with open_voisnap(server, WEBRTC) as client:
        await started(client)
        await answered(client, padded(MOST_SDP))
        await end_session(client)
    await calls_back_to(server)


# -- SendOffer: the answer and the call that never connects -----------------------------------


async def test_an_offer_is_answered_with_loopback_candidates_then_fails_after_the_timeout(server):
    async with open_voisnap(server, WEBRTC) as client:
        await started(client)
        answer = await answered(client)
        answered_at = trio.current_time()
        completed_at = len(client.events)
        lines = answer["sdp"].splitlines()
        candidates = [line for line in lines if line.startswith("a=candidate:")]
        assert candidates, answer["sdp"]
        for line in candidates:
            assert " 127.0.0.1 " in line, line
        assert (await webrtc_stats(server))["calls"] == 1
        with trio.fail_after(TIMEOUT):
            first = await client.event("IceCandidate")
        # The events come after the Completion.
        assert client.events.index(("IceCandidate", first)) >= completed_at
        assert set(first) == {"candidate", "sdpMid", "sdpMLineIndex"}, first
        assert first["candidate"].startswith("candidate:") and " 127.0.0.1 " in first[
            "candidate"], first
        assert "a=" + first["candidate"] in candidates, (first, candidates)
        assert first["sdpMid"] == "0" and first["sdpMLineIndex"] == 0, first
        error, _ = await assert_fatal(client, "WEBRTC_FAILED", CONNECT_TIMEOUT + TIMEOUT)
        waited = trio.current_time() - answered_at
        assert waited >= CONNECT_TIMEOUT - 0.5, (waited, error)
        told = client.named("IceCandidate")
        assert len(told) == len(candidates), (told, candidates)
        states = [state["state"] for state in client.named("CallState")]
        assert "connected" not in states, states
    await calls_back_to(server)
    await assert_healthy(server)


async def test_a_second_offer_on_the_same_connection_is_invalid_request(server):
    async with open_voisnap(server, WEBRTC) as client:
        await started(client)
        await answered(client)
        invocation_id = await client.invoke_id("SendOffer", offer())
        await assert_recoverable(client, invocation_id, "INVALID_REQUEST", "SendOffer")
        assert (await webrtc_stats(server))["calls"] == 1
        await end_session(client)
    await calls_back_to(server)
    await assert_healthy(server)


async def test_end_session_during_an_unconnected_call(server):
    async with open_voisnap(server, WEBRTC) as client:
        await started(client)
        await answered(client)
        await end_session(client)
        assert [e for e in client.named("Error")] == [], client.events
    await calls_back_to(server)
    await assert_healthy(server)


async def test_end_session_before_any_offer_and_then_an_offer_on_a_new_connection(server):
    async with open_voisnap(server, WEBRTC) as client:
        await started(client)
        await end_session(client)
    await still_answers(server)


async def test_offers_pipelined_on_one_connection_answer_one(server):
    async with open_voisnap(server, WEBRTC) as client:
        await started(client)
        ids = [await client.invoke_id("SendOffer", offer()) for _ in range(5)]
        with trio.fail_after(TIMEOUT):
            completions = [await client.completion(i) for i in ids]
        good_ones = [c for c in completions if "error" not in c]
        assert len(good_ones) == 1, completions
        refused = [c for c in completions if "error" in c]
        assert all("INVALID_REQUEST" in c["error"] for c in refused), completions
        errors = client.named("Error")
        assert [e["code"] for e in errors] == ["INVALID_REQUEST"] * 4, errors
        assert all(e["recoverable"] is True for e in errors), errors
        assert (await webrtc_stats(server))["calls"] == 1
        await end_session(client)
    await calls_back_to(server, timeout=CONNECT_TIMEOUT - 1)
    await assert_healthy(server)


async def test_end_session_pipelined_right_after_send_offer_gives_the_place_back(server):
    for _ in range(3):
        async with open_voisnap(server, WEBRTC) as client:
            await started(client)
            await client.invoke_id("SendOffer", offer())
            await client.invoke_id("EndSessionAsync")
            with trio.fail_after(TIMEOUT):
                await client.wait_close()
            assert "WEBRTC_FAILED" not in [e["code"] for e in client.named("Error")]
        # Given back at once, not by the connect timeout.
        await calls_back_to(server, timeout=CONNECT_TIMEOUT - 1)
    await still_answers(server)
    await assert_healthy(server)


async def test_a_candidate_pipelined_right_after_send_offer(server):
    async with open_voisnap(server, WEBRTC) as client:
        await started(client)
        offer_id = await client.invoke_id("SendOffer", offer())
        candidate_id = await client.invoke_id("AddIceCandidate", good())
        with trio.fail_after(TIMEOUT):
            answer = await client.completion(offer_id)
            added = await client.completion(candidate_id)
        assert "error" not in answer, answer
        if "error" in added:
            assert "INVALID_REQUEST" in added["error"], added
            assert [e["code"] for e in client.named("Error")] == ["INVALID_REQUEST"]
        await end_session(client)
    await calls_back_to(server, timeout=CONNECT_TIMEOUT - 1)
    await assert_healthy(server)


# -- AddIceCandidate --------------------------------------------------------------------------


async def test_a_candidate_before_any_offer_is_invalid_request(server):
    async with open_voisnap(server, WEBRTC) as client:
        await started(client)
        for candidate in ({"candidate": LOOPBACK_CANDIDATE, "sdpMid": "0", "sdpMLineIndex": 0},
                          {"candidate": "", "sdpMid": "0", "sdpMLineIndex": 0}):
            invocation_id = await client.invoke_id("AddIceCandidate", candidate)
            await assert_recoverable(client, invocation_id, "INVALID_REQUEST", "AddIceCandidate")
        await answered(client)
        await end_session(client)
    await calls_back_to(server)
    await assert_healthy(server)


def good(candidate: str = LOOPBACK_CANDIDATE, **more: Any) -> dict[str, Any]:
    return {"candidate": candidate, "sdpMid": "0", "sdpMLineIndex": 0, **more}


BAD_CANDIDATES = {
    "a string": LOOPBACK_CANDIDATE,
    "null": None,
    "a number": 7,
    "a list": [good()],
    "no candidate": {"sdpMid": "0", "sdpMLineIndex": 0},
    "candidate a number": good(5),
    "candidate null": good(None),
    "candidate an object": good({"candidate": LOOPBACK_CANDIDATE}),
    "sdpMid a number": good(sdpMid=0),
    "sdpMid a list": good(sdpMid=["0"]),
    "index negative": good(sdpMLineIndex=-1),
    "index huge": good(sdpMLineIndex=10**15),
    "index 2**63": good(sdpMLineIndex=2**63),
    "index a float": good(sdpMLineIndex=0.5),
    "index 0.0": good(sdpMLineIndex=0.0),
    "index a string": good(sdpMLineIndex="0"),
    "index true": good(sdpMLineIndex=True),
    "candidate over 1 KiB": good(LOOPBACK_CANDIDATE + " x" * 600),
    "garbage": good("this is not a candidate"),
    "only the prefix": good("candidate:"),
    "too few fields": good("candidate:1 1 udp"),
    "priority not a number": good("candidate:1 1 udp high 127.0.0.1 9 typ host"),
    "component not a number": good("candidate:1 x udp 1 127.0.0.1 9 typ host"),
    "port not a number": good("candidate:1 1 udp 1 127.0.0.1 nine typ host"),
}


@pytest.mark.parametrize("argument", list(BAD_CANDIDATES.values()), ids=list(BAD_CANDIDATES))
async def test_a_bad_candidate_is_recoverable_invalid_request(server, argument):
    mark = log_mark(server)
    async with open_voisnap(server, WEBRTC) as client:
        await started(client)
        await answered(client)
        invocation_id = await client.invoke_id("AddIceCandidate", argument)
        await assert_recoverable(client, invocation_id, "INVALID_REQUEST", "AddIceCandidate")
        # The call goes on: the end of candidates is still taken.
        with trio.fail_after(TIMEOUT):
            completion = await client.invoke_voisnap("AddIceCandidate", good(""))
        assert "error" not in completion, completion
        assert (await webrtc_stats(server))["calls"] == 1
        await end_session(client)
    await calls_back_to(server)
    assert_quiet_log(server, mark)
    await assert_healthy(server)


ODD_CANDIDATES = {
    "loopback host": good(),
    "without the prefix": good(LOOPBACK_CANDIDATE.removeprefix("candidate:")),
    "no sdpMid": {"candidate": LOOPBACK_CANDIDATE, "sdpMLineIndex": 0},
    "no index": {"candidate": LOOPBACK_CANDIDATE, "sdpMid": "0"},
    "mid and index null": {"candidate": LOOPBACK_CANDIDATE, "sdpMid": None, "sdpMLineIndex": None},
    "unknown mid": good(sdpMid="no-such-mid"),
    "index 63 (no such m-line)": good(sdpMLineIndex=63, sdpMid=None),
    "port 0": good("candidate:1 1 udp 2130706431 127.0.0.1 0 typ host"),
    "port 65536": good("candidate:1 1 udp 2130706431 127.0.0.1 65536 typ host"),
    "port 99999999": good("candidate:1 1 udp 2130706431 127.0.0.1 99999999 typ host"),
    "port -1": good("candidate:1 1 udp 2130706431 127.0.0.1 -1 typ host"),
    "huge priority": good("candidate:1 1 udp 99999999999999999999999 127.0.0.1 9 typ host"),
    "component 0": good("candidate:1 0 udp 2130706431 127.0.0.1 9 typ host"),
    "component 256": good("candidate:1 256 udp 2130706431 127.0.0.1 9 typ host"),
    "tcp active": good("candidate:1 1 tcp 2130706431 127.0.0.1 9 typ host tcptype active"),
    "unknown transport": good("candidate:1 1 sctp 2130706431 127.0.0.1 9 typ host"),
    "no typ": good("candidate:1 1 udp 1 127.0.0.1 9 kind host"),
    "unknown typ": good("candidate:1 1 udp 2130706431 127.0.0.1 9 typ wormhole"),
    "not an address": good("candidate:1 1 udp 2130706431 999.999.999.999 9 typ host"),
    "relay from loopback": good(
        "candidate:1 1 udp 1 127.0.0.1 9 typ relay raddr 127.0.0.1 rport 9"),
    "trailing junk": good(LOOPBACK_CANDIDATE + " generation 0 ufrag x network-id 1 " + "k v " * 50),
}


@pytest.mark.parametrize("argument", list(ODD_CANDIDATES.values()), ids=list(ODD_CANDIDATES))
async def test_an_odd_loopback_candidate_is_taken_or_refused_and_the_worker_lives(server,
                                                                                 argument):
    async with open_voisnap(server, WEBRTC) as client:
        await started(client)
        await answered(client)
        before = await webrtc_stats(server)
        with trio.fail_after(TIMEOUT):
            invocation_id = await client.invoke_id("AddIceCandidate", argument)
            completion = await client.completion(invocation_id)
        if "error" in completion:
            await assert_recoverable(client, invocation_id, "INVALID_REQUEST", "AddIceCandidate")
        with trio.fail_after(TIMEOUT):
            completion = await client.invoke_voisnap("AddIceCandidate", good(""))
        assert "error" not in completion, completion
        after = await webrtc_stats(server)
        assert after["workerPid"] == before["workerPid"], (before, after, server.log[-3000:])
        assert after["restarts"] == before["restarts"], (before, after)
        await end_session(client)
    await calls_back_to(server)
    await assert_healthy(server)


async def test_end_of_candidates_is_accepted_and_twice_too(server):
    async with open_voisnap(server, WEBRTC) as client:
        await started(client)
        await answered(client)
        for candidate in (good(""), {"candidate": ""}, good(""), good()):
            with trio.fail_after(TIMEOUT):
                completion = await client.invoke_voisnap("AddIceCandidate", candidate)
            assert "error" not in completion, (candidate, completion)
        assert client.named("Error") == []
        await end_session(client)
    await calls_back_to(server)


# -- the limit and the places -----------------------------------------------------------------


async def test_the_webrtc_session_limit_refuses_the_third_and_frees_places(server):
    await calls_back_to(server)
    async with open_voisnap(server, WEBRTC) as first, open_voisnap(server, WEBRTC) as second:
        await started(first)
        await started(second)
        await answered(first)
        await answered(second)
        assert (await webrtc_stats(server))["calls"] == MOST_CALLS
        async with open_voisnap(server, WEBRTC) as third:
            await started(third)
            invocation_id = await third.invoke_id("SendOffer", offer())
            error, _ = await assert_fatal(third, "SESSION_LIMIT_REACHED")
            completion = third.completions.get(invocation_id)
            if completion is not None:
                assert completion.get("error") == UNEXPECTED.format(
                    "SendOffer", "SESSION_LIMIT_REACHED") + error["message"], completion
        assert (await webrtc_stats(server))["calls"] == MOST_CALLS
        await end_session(first)
        await calls_back_to(server, 1)
        await end_session(second)
    await calls_back_to(server)
    await still_answers(server)
    await assert_healthy(server)


async def test_disconnecting_right_after_the_answer_gives_the_place_back(server):
    async with open_voisnap(server, WEBRTC) as client:
        await started(client)
        await answered(client)
        assert (await webrtc_stats(server))["calls"] == 1
    await calls_back_to(server, timeout=CONNECT_TIMEOUT - 1)
    await still_answers(server)


async def test_disconnecting_in_the_middle_of_send_offer_gives_the_place_back(server):
    for _ in range(5):
        async with open_voisnap(server, WEBRTC) as client:
            await started(client)
            await client.invoke_id("SendOffer", offer())
    # Given back by the disconnect, not by the connect timeout.
    await calls_back_to(server, timeout=CONNECT_TIMEOUT - 1)
    await still_answers(server)
    await assert_healthy(server)


async def test_dropping_the_tcp_connection_mid_offer_gives_the_place_back(server):
    for _ in range(5):
        async with open_voisnap(server, WEBRTC) as client:
            await started(client)
            await client.invoke_id("SendOffer", offer())
            # No WebSocket close: the TCP connection just goes.
            await client.websocket._stream.aclose()
    await calls_back_to(server, timeout=CONNECT_TIMEOUT - 1)
    await still_answers(server)
    await assert_healthy(server)


# -- the media worker -------------------------------------------------------------------------


async def test_a_killed_media_worker_fails_its_calls_and_a_new_one_is_started(server):
    async with open_voisnap(server, WEBRTC) as client:
        await started(client)
        await answered(client)
        before = await webrtc_stats(server)
        pid = before["workerPid"]
        assert isinstance(pid, int), before
        assert server.process is not None and parent_of(pid) == server.process.pid, before
        os.kill(pid, signal.SIGKILL)
        await assert_fatal(client, "WEBRTC_FAILED")
    await calls_back_to(server)
    await still_answers(server)
    after = await webrtc_stats(server)
    assert isinstance(after["workerPid"], int) and after["workerPid"] != pid, (before, after)
    assert after["restarts"] == before["restarts"] + 1, (before, after)
    await assert_healthy(server)


async def test_a_worker_killed_while_it_answers(server):
    await still_answers(server)  # the worker runs
    before = await webrtc_stats(server)
    pid = before["workerPid"]
    assert server.process is not None and parent_of(pid) == server.process.pid, before
    async with open_voisnap(server, WEBRTC) as client:
        await started(client)
        invocation_id = await client.invoke_id("SendOffer", offer())
        os.kill(pid, signal.SIGKILL)
        with trio.fail_after(TIMEOUT):
            error = await client.error()
        assert error["code"] == "WEBRTC_FAILED", error
        if invocation_id in client.completions and "error" not in client.completions[
                invocation_id]:
            assert error["recoverable"] is False, error  # answered, then the worker died
        with trio.fail_after(TIMEOUT):
            completion = await client.completion(invocation_id) if error[
                "recoverable"] else None
        if completion is not None:
            assert completion.get("error") == UNEXPECTED.format(
                "SendOffer", "WEBRTC_FAILED") + error["message"], completion
            await answered(client)  # a new worker
            await end_session(client)
    await calls_back_to(server)
    await still_answers(server)
    after = await webrtc_stats(server)
    assert after["workerPid"] != pid and after["restarts"] == before["restarts"] + 1, (
        before, after)
    await assert_healthy(server)


async def test_a_flood_of_offers_is_bounded_and_leaves_nothing_behind(server):
    await still_answers(server)  # the worker runs
    baseline = await calls_back_to(server)
    pid = baseline["workerPid"]
    assert isinstance(pid, int), baseline
    fds = worker_fds(pid)
    outcomes: list[str] = []
    most = 0

    async def watch(done: trio.Event) -> None:
        nonlocal most
        while not done.is_set():
            most = max(most, (await webrtc_stats(server))["calls"])
            await trio.sleep(0.02)

    async def one(index: int) -> None:
        token = make_token(unique("flood-user"), unique("flood-tenant"))
        async with open_voisnap(server, WEBRTC, token=token) as client:
            await started(client)
            invocation_id = await client.invoke_id("SendOffer", offer())
            name, payload = None, None
            with trio.fail_after(TIMEOUT * 3):
                while invocation_id not in client.completions and name != "Error":
                    try:
                        await client.pump()
                    except Exception:  # the Close after SESSION_LIMIT_REACHED
                        break
                    errors = client.named("Error")
                    if errors:
                        name, payload = "Error", errors[0]
            if payload is not None:
                assert payload["code"] == "SESSION_LIMIT_REACHED", payload
                assert payload["recoverable"] is False, payload
                outcomes.append("refused")
                return
            completion = client.completions[invocation_id]
            assert "error" not in completion, completion
            outcomes.append("answered")
            if index % 2:
                await end_session(client)
            # else: just disconnect

    done = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch, done)
        async with trio.open_nursery() as flood:
            for index in range(50):
                flood.start_soon(one, index)
        done.set()
    assert len(outcomes) == 50, outcomes
    assert "answered" in outcomes, outcomes
    assert most <= MOST_CALLS, most
    after = await calls_back_to(server)
    assert after["workerPid"] == pid, (baseline, after)

    def settled() -> bool:
        return worker_fds(pid) <= fds + 2

    with trio.fail_after(TIMEOUT):
        while not settled():
            await trio.sleep(0.05)
    assert_alive(server)
    await still_answers(server)
    await assert_healthy(server)


async def test_stats_count_the_workers_threads_and_open_files(server):
    """The document: ``GET /stats`` counts the calls and the worker's threads
    and open files (``webrtc``)."""
    await still_answers(server)
    stats = await webrtc_stats(server)
    assert "calls" in stats, stats
    names = " ".join(stats).lower()
    assert "thread" in names, stats
    assert "file" in names or "fd" in names, stats
