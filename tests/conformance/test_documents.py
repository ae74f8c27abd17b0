"""Documents the agent can search (issue 14), with the official ``@microsoft/signalr`` client
under Node against a real ``voisnap serve`` process on 127.0.0.1.

Ana has a notifications connection (``N``, Server-Sent Events) and a chat device (``C``);
Bob, in her tenant, has the same (``BN``, ``BC``). Ana uploads a document over REST that
holds a word nobody else's does; then:

- ``N`` receives ``DocumentUploaded`` and then ``DocumentIndexed``, with exactly the
  documented payloads, once each; ``BN`` receives neither (a fence proves "did not");
- Ana asks ``sophon`` on ``C`` "search my documents for <word>": its reply names the
  document id and quotes the passage; Bob asking the same on ``BC`` finds nothing;
- after ``DELETE /documents/{id}`` Ana's same search finds nothing.

Drivers and helpers are test_approvals.py's (``approvals_devices.mjs``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conformance.test_approvals import SETTINGS, devices, reply_of, token
from tests.support.server import ServerProcess

pytestmark = pytest.mark.conformance

WAIT = 15.0


@pytest.fixture(scope="module")
def documents_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path_factory.mktemp("documents") / "data", SETTINGS) as server:
        yield server


def rest(server: ServerProcess, bearer: str, method: str, path: str, **options: Any):
    return httpx.request(
        method,
        f"{server.url}{path}",
        timeout=5.0,
        trust_env=False,
        headers={"Authorization": f"Bearer {bearer}", **options.pop("headers", {})},
        **options,
    )


def ask(hubs: Any, server: ServerProcess, bearer: str, device: str, content: str) -> str:
    sent = hubs.send(device, content)
    hubs.wait_done(device, sent["taskId"], timeout=WAIT)
    return reply_of(server, bearer, sent["sessionId"], sent["taskId"])


@pytest.fixture(scope="module")
def story(documents_server: ServerProcess) -> dict[str, Any]:
    server = documents_server
    word = f"okapi{uuid.uuid4().hex[:8]}"
    ana, bob = f"ana-{uuid.uuid4().hex[:6]}", f"bob-{uuid.uuid4().hex[:6]}"
    tokens = {"ana": token(server, ana), "bob": token(server, bob)}
    text = (
        f"# Field notes\n\nThe {word} was seen near the river at dawn.\n\n"
        "## Weather\n\nIt rained all day.\n"
    )
    seen: dict[str, Any] = {"word": word, "text": text}
    with devices(server, timeout=90) as hubs:
        hubs.open("N", "notifications", tokens["ana"], transport="ServerSentEvents")
        hubs.open("C", "chat", tokens["ana"])
        hubs.open("BN", "notifications", tokens["bob"])
        hubs.open("BC", "chat", tokens["bob"])
        uploaded = rest(
            server,
            tokens["ana"],
            "POST",
            "/documents",
            content=text.encode(),
            params={"name": "field-notes.md"},
            headers={"Content-Type": "text/markdown; charset=utf-8"},
        )
        assert uploaded.status_code == 201, uploaded.text
        document = seen["document"] = uploaded.json()
        seen["indexed"] = hubs.wait(
            "N", "DocumentIndexed", timeout=WAIT, documentId=document["documentId"]
        )
        seen["found"] = ask(hubs, server, tokens["ana"], "C", f"search my documents for {word}")
        seen["bob_found"] = ask(
            hubs, server, tokens["bob"], "BC", f"search my documents for {word}"
        )
        seen["stored"] = rest(
            server, tokens["ana"], "GET", f"/documents/{document['documentId']}"
        ).json()
        deleted = rest(server, tokens["ana"], "DELETE", f"/documents/{document['documentId']}")
        seen["deleted"] = deleted.status_code
        seen["found_after"] = ask(hubs, server, tokens["ana"], "C", f"find {word} in my documents")
        hubs.fence("N", "BN")
        seen["events"] = {device: hubs.events(device) for device in ("N", "BN")}
    return seen


def test_documents_notifications_uploaded_then_indexed_once(story: dict[str, Any]) -> None:
    document = story["document"]
    events = [(e["target"], e["payload"]) for e in story["events"]["N"]]
    assert events == [
        (
            "DocumentUploaded",
            {
                "documentId": document["documentId"],
                "name": "field-notes.md",
                "size": len(story["text"].encode()),
            },
        ),
        ("DocumentIndexed", {"documentId": document["documentId"], "chunks": 2}),
    ]
    assert story["events"]["BN"] == []


def test_documents_indexed_document_reads_back(story: dict[str, Any]) -> None:
    stored = story["stored"]
    assert stored["state"] == "indexed" and stored["chunks"] == 2
    assert stored["indexedAt"] is not None and stored["error"] is None


def test_documents_sophon_finds_the_document_by_its_word(story: dict[str, Any]) -> None:
    found = story["found"]
    document_id = story["document"]["documentId"]
    assert found.startswith("Here is what I found in your documents:"), found
    assert f"“field-notes.md” ({document_id}), part 1:" in found
    assert f"The {story['word']} was seen near the river" in found


def test_documents_another_users_search_finds_nothing(story: dict[str, Any]) -> None:
    assert story["bob_found"] == f"I found nothing about “{story['word']}” in your documents."


def test_documents_deleted_document_is_not_found(story: dict[str, Any]) -> None:
    assert story["deleted"] == 204
    assert story["found_after"] == (f"I found nothing about “{story['word']}” in your documents.")
