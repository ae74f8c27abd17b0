"""Liveness bookkeeping (HubProtocol.md, "Ping (aka Keep Alive)"; ASP.NET's
KeepAliveTick / CheckClientTimeout), driven tick by tick with made-up times."""

from __future__ import annotations

from voisnap.hubs.liveness import Liveness, Verdict


def make(expires_at: float = float("inf")) -> Liveness:
    return Liveness(0.0, keep_alive_interval=15, client_timeout=30, expires_at=expires_at)


def test_liveness_pings_after_the_interval_without_sending() -> None:
    liveness = make()
    assert liveness.check(14.0, sent=0, received=0) is Verdict.FINE
    assert liveness.check(15.0, sent=0, received=0) is Verdict.PING
    # The Ping counts as sending: the next one is a full interval later.
    assert liveness.check(16.0, sent=1, received=0) is Verdict.FINE
    assert liveness.check(29.0, sent=1, received=0) is Verdict.FINE
    assert liveness.check(30.0, sent=1, received=0) is Verdict.PING


def test_liveness_traffic_postpones_the_ping() -> None:
    liveness = make()
    for second in range(1, 60):
        assert liveness.check(float(second), sent=second, received=0) is Verdict.FINE
    assert liveness.check(74.0, sent=59, received=0) is Verdict.PING


def test_liveness_client_timeout_starts_with_the_first_ping() -> None:
    liveness = make()
    sent = 0
    for second in range(1, 200):  # a client that never pings is never timed out
        verdict = liveness.check(float(second), sent=sent, received=0)
        assert verdict is not Verdict.CLIENT_TIMED_OUT
        sent += verdict is Verdict.PING
    liveness.client_pinged(200.0)
    assert liveness.check(229.0, sent=sent, received=0) is not Verdict.CLIENT_TIMED_OUT
    assert liveness.check(230.0, sent=sent, received=0) is Verdict.CLIENT_TIMED_OUT


def test_liveness_received_frames_reset_the_client_timeout() -> None:
    liveness = make()
    liveness.client_pinged(0.0)
    assert liveness.check(20.0, sent=1, received=1) is Verdict.FINE
    assert liveness.check(49.0, sent=2, received=1) is Verdict.FINE
    assert liveness.check(50.0, sent=3, received=1) is Verdict.CLIENT_TIMED_OUT


def test_liveness_token_expiry() -> None:
    liveness = make(expires_at=10.0)
    assert liveness.check(9.9, sent=1, received=1) is Verdict.FINE
    assert liveness.check(10.0, sent=2, received=2) is Verdict.TOKEN_EXPIRED
