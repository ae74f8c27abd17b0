"""Tokens from an identity provider (--jwt-jwks-url; docs/auth.md): a JWKS
served by the test over real HTTP, tokens it signs with RSA and EC keys."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import httpx
import jwt
import pytest
import trio
import trio_websocket

from tests.support.jwks_endpoint import AUDIENCE, ISSUER, JwksEndpoint, SigningKey
from tests.support.server import ServerProcess
from tests.support.ws_client import open_hub_client
from voisnap.config import Settings
from voisnap.errors import AuthenticationError
from voisnap.server.auth import Claims, JwksAuthority, TokenAuthority
from voisnap.server.factory import token_authority

CLAIMS = Claims(issuer=ISSUER, audience=AUDIENCE)


@pytest.fixture(scope="module")
def rsa_key() -> SigningKey:
    return SigningKey("rsa-1")


@pytest.fixture(scope="module")
def ec_key() -> SigningKey:
    return SigningKey("ec-1", "EC")


@pytest.fixture
def endpoint(rsa_key: SigningKey, ec_key: SigningKey) -> Iterator[JwksEndpoint]:
    served = JwksEndpoint(rsa_key, ec_key)
    yield served
    served.stop()


def authority(endpoint: JwksEndpoint, claims: Claims = CLAIMS, **options: float) -> JwksAuthority:
    return JwksAuthority(endpoint.url, claims, **options)


async def refused(authority: JwksAuthority, token: str) -> str:
    with pytest.raises(AuthenticationError) as refusal:
        await authority.verify_async(token)
    return str(refusal.value)


# -- the authority ---------------------------------------------------------------------------------


async def test_rs256_and_es256_tokens_are_accepted(
    endpoint: JwksEndpoint, rsa_key: SigningKey, ec_key: SigningKey
) -> None:
    checker = authority(endpoint)
    principal = await checker.verify_async(rsa_key.sign())
    assert (principal.user_id, principal.tenant_id, principal.roles) == (
        "alice", "acme", frozenset({"admin"})
    )
    assert (await checker.verify_async(ec_key.sign(sub="bob"))).user_id == "bob"
    assert endpoint.requests == 1  # fetched once, then cached
    assert checker.verify(rsa_key.sign()).user_id == "alice"  # cached keys verify synchronously


async def test_an_unknown_key_id_refetches_once_and_finds_a_rotated_key(
    endpoint: JwksEndpoint, rsa_key: SigningKey
) -> None:
    checker = authority(endpoint, refetch_interval=0)  # no wait between refetches
    await checker.verify_async(rsa_key.sign())
    rotated = SigningKey("rsa-2")
    endpoint.keys = [rotated]  # the provider rotates: the old key is gone
    assert (await checker.verify_async(rotated.sign(sub="carol"))).user_id == "carol"
    assert endpoint.requests == 2
    assert (await checker.verify_async(rotated.sign())).user_id == "alice"
    assert endpoint.requests == 2  # known now: no more fetches
    assert "no key for key id 'rsa-1'" in await refused(checker, rsa_key.sign())


async def test_forged_key_ids_do_not_hammer_the_provider(
    endpoint: JwksEndpoint, rsa_key: SigningKey
) -> None:
    checker = authority(endpoint, refetch_interval=60)
    await checker.verify_async(rsa_key.sign())
    forger = SigningKey("forged")
    for _ in range(5):
        reason = await refused(checker, forger.sign())
        assert "no key for key id 'forged'" in reason
    assert endpoint.requests == 1  # the first fetch was just now: no refetch yet


async def test_a_token_signed_by_another_key_is_refused(
    endpoint: JwksEndpoint, rsa_key: SigningKey
) -> None:
    impostor = SigningKey(rsa_key.kid)  # same key id, another key
    reason = await refused(authority(endpoint), impostor.sign())
    assert reason == "The access token is invalid: Signature verification failed"


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"iss": "https://evil.example.test/"}, "Invalid issuer"),
        ({"aud": "another-api"}, "Audience doesn't match"),
        ({"iss": None}, 'Token is missing the "iss" claim'),
        ({"aud": None}, 'Token is missing the "aud" claim'),
        ({"tid": None}, 'Token is missing the "tid" claim'),
        ({"sub": None}, 'Token is missing the "sub" claim'),
        ({"exp": None}, 'Token is missing the "exp" claim'),
    ],
)
async def test_wrong_issuer_audience_or_missing_claims_are_refused(
    endpoint: JwksEndpoint, rsa_key: SigningKey, claims: dict, reason: str
) -> None:
    assert reason in await refused(authority(endpoint), rsa_key.sign(**claims))


async def test_an_expired_token_is_refused(endpoint: JwksEndpoint, rsa_key: SigningKey) -> None:
    reason = await refused(authority(endpoint), rsa_key.sign(ttl=-10))
    assert reason == "The access token has expired."


async def test_hs256_with_the_public_key_as_secret_is_refused(
    endpoint: JwksEndpoint, rsa_key: SigningKey
) -> None:
    """The algorithm-confusion attack: the key decides the algorithm, not the token."""
    checker = authority(endpoint)
    await checker.verify_async(rsa_key.sign())
    claims = {"sub": "mallory", "tid": "acme", "iss": ISSUER, "aud": AUDIENCE,
              "exp": int(time.time() + 300)}
    header = {"alg": "HS256", "typ": "JWT", "kid": rsa_key.kid}
    signed = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    # Signed by hand: PyJWT itself refuses a PEM as an HMAC key.
    signature = hmac.new(rsa_key.public_pem, signed.encode(), hashlib.sha256).digest()
    reason = await refused(checker, f"{signed}.{b64(signature)}")
    assert reason == "The access token is invalid: The specified alg value is not allowed"
    unsigned = jwt.encode(claims, None, "none", headers={"kid": rsa_key.kid})
    assert "not allowed" in await refused(checker, unsigned)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def test_configured_claim_names_and_space_separated_roles(
    endpoint: JwksEndpoint, rsa_key: SigningKey
) -> None:
    names = Claims(user="email", tenant="org", roles="scope", issuer=ISSUER, audience=AUDIENCE)
    checker = authority(endpoint, names)
    token = rsa_key.sign(sub="ignored", email="ann@example.test", org="globex",
                         scope="read write", tid=None)
    principal = await checker.verify_async(token)
    assert (principal.user_id, principal.tenant_id, principal.roles) == (
        "ann@example.test", "globex", frozenset({"read", "write"})
    )
    assert "'org' claim must be a non-empty string" in await refused(
        checker, rsa_key.sign(email="ann@example.test", org=7)
    )


async def test_issuer_and_audience_are_checked_with_hs256_too() -> None:
    issuer = TokenAuthority(b"s" * 32, claims=CLAIMS)
    assert issuer.verify(issuer.issue("ann", "acme")).user_id == "ann"
    other = TokenAuthority(b"s" * 32, claims=Claims(issuer=ISSUER, audience="other"))
    with pytest.raises(AuthenticationError, match="Audience doesn't match"):
        other.verify(issuer.issue("ann", "acme"))


async def test_a_jwks_that_is_down_is_a_clear_refusal(
    endpoint: JwksEndpoint, rsa_key: SigningKey
) -> None:
    endpoint.stop()
    reason = await refused(authority(endpoint), rsa_key.sign())
    assert reason.startswith("The identity provider's keys could not be fetched: ")


async def test_a_slow_jwks_times_out(endpoint: JwksEndpoint, rsa_key: SigningKey) -> None:
    endpoint.delay = 3
    started = trio.current_time()
    reason = await refused(authority(endpoint, timeout=0.5), rsa_key.sign())
    assert reason == (
        "The identity provider's keys could not be fetched: "
        "it did not answer within 0.5 seconds."
    )
    assert trio.current_time() - started < 2


# -- settings ------------------------------------------------------------------------------------


def test_a_secret_and_a_jwks_url_cannot_both_be_set(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    monkeypatch.setenv("VOISNAP_JWT_SECRET", "s3cret")
    settings = Settings(data_dir=tmp_path, jwt_jwks_url="https://idp.example.test/jwks")
    with pytest.raises(ValueError, match="cannot both be set"):
        token_authority(settings)
    with pytest.raises(ValueError, match="http:// or https://"):
        Settings(jwt_jwks_url="file:///etc/keys.json")


def test_serve_refuses_to_start_with_a_secret_and_a_jwks_url(tmp_path) -> None:
    server = ServerProcess(tmp_path / "data", {
        "jwt_secret": "s3cret", "jwt_jwks_url": "https://idp.example.test/jwks",
    })
    with pytest.raises(RuntimeError, match="cannot both be set"):
        server.start()


# -- end to end ----------------------------------------------------------------------------------


async def test_serve_accepts_identity_provider_tokens(
    start_server: Callable[..., ServerProcess], endpoint: JwksEndpoint, rsa_key: SigningKey,
    ec_key: SigningKey,
) -> None:
    server = start_server({
        "jwt_jwks_url": endpoint.url, "jwt_issuer": ISSUER, "jwt_audience": AUDIENCE,
    })
    good = ec_key.sign(sub="dora")
    async with httpx.AsyncClient(timeout=10) as http:
        ok = await http.get(server.url + "/sessions", headers={"authorization": f"Bearer {good}"})
        assert ok.status_code == 200, ok.text
        for bad in (SigningKey(rsa_key.kid).sign(), rsa_key.sign(aud="other")):
            no = await http.get(server.url + "/sessions",
                                headers={"authorization": f"Bearer {bad}"})
            assert no.status_code == 401, no.text
    async with open_hub_client(server.ws_url + "/hubs/playground", token=rsa_key.sign()) as hub:
        assert await hub.call("Echo", "hello") == "hello"
    with pytest.raises(trio_websocket.ConnectionRejected) as rejected:
        async with open_hub_client(server.ws_url + "/hubs/playground",
                                   token=SigningKey("stranger").sign()):
            pass
    assert rejected.value.status_code == 401
    assert b"no key for key id 'stranger'" in (rejected.value.body or b"")


def test_voisnap_token_issues_none_with_a_jwks_url(tmp_path) -> None:
    env = {**os.environ, "VOISNAP_JWT_JWKS_URL": "https://idp.example.test/jwks"}
    env.pop("VOISNAP_JWT_SECRET", None)
    done = subprocess.run(
        [sys.executable, "-m", "voisnap", "token", "--user", "ann", "--tenant", "acme",
         "--data-dir", str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=30,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert "access tokens come from the identity provider" in done.stderr
