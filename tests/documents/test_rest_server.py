"""The documents' REST routes against a real ``voisnap serve`` (docs/rest.md, "Documents"):
uploads raw and multipart, listing, reading, deleting, another user's ids, and every hostile
body answered with a status and ``{"error": ...}`` (or, for a body over the route's own
limit, the server's 413 before the route runs), with the server alive after each.

The server is started with ``--max-document-size`` 100000 (the route reads up to 64 KiB
more, for multipart framing). Raw-socket cases (a declared length over the limit, a chunked
body that never ends) are written by hand: an HTTP client library would not send them.
"""

from __future__ import annotations

import datetime
import random
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import trio

from tests.conformance.test_approvals import token
from tests.conftest import FAST_SETTINGS
from tests.support.server import ServerProcess
from tests.support.ws_client import HttpResponse, HttpResponseReader

MAX = 100_000
OVERHEAD = 64 * 1024
SETTINGS = {**FAST_SETTINGS, "max_document_size": str(MAX)}
CEILING = 10
TEXT = "# Field notes\n\nThe okapi is a shy animal of the forest.\n"
FIELDS = {
    "documentId",
    "name",
    "contentType",
    "size",
    "state",
    "chunks",
    "error",
    "createdAt",
    "indexedAt",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path_factory.mktemp("documents") / "data", SETTINGS) as started:
        yield started
    # Every hostile body above was refused on purpose: none reached an error boundary in
    # the documents' code (a traceback through it would name its files).
    assert "apps/documents" not in started.log, started.log


@pytest.fixture(scope="module")
def ana(server: ServerProcess) -> str:
    return token(server, "ana")


def call(
    server: ServerProcess, bearer: str | None, method: str, path: str, **options: Any
) -> httpx.Response:
    headers = {**options.pop("headers", {})}
    if bearer is not None:
        headers["Authorization"] = f"Bearer {bearer}"
    return httpx.request(
        method, f"{server.url}{path}", headers=headers, timeout=CEILING, trust_env=False, **options
    )


def upload(
    server: ServerProcess,
    bearer: str,
    text: bytes | str = TEXT,
    content_type: str = "text/markdown",
    **query: str,
) -> httpx.Response:
    return call(
        server,
        bearer,
        "POST",
        "/documents",
        content=text,
        headers={"Content-Type": content_type},
        params=query,
    )


def alive(server: ServerProcess, bearer: str) -> None:
    assert call(server, bearer, "GET", "/documents", params={"limit": "1"}).status_code == 200


def test_rest_upload_raw_then_read_list_delete(server: ServerProcess, ana: str) -> None:
    created = upload(server, ana, name="Field notes.md")
    assert created.status_code == 201, created.text
    document = created.json()
    assert set(document) == FIELDS
    assert document["name"] == "Field notes.md" and document["contentType"] == "text/markdown"
    assert document["size"] == len(TEXT.encode()) and document["state"] == "uploaded"
    assert datetime.datetime.fromisoformat(document["createdAt"].replace("Z", "+00:00"))
    path = f"/documents/{document['documentId']}"
    plain = call(server, ana, "GET", path).json()
    full = call(server, ana, "GET", path, params={"content": "true"}).json()
    assert "content" not in plain and full["content"] == TEXT
    listed = call(server, ana, "GET", "/documents").json()
    assert listed[0]["documentId"] == document["documentId"]
    deleted = call(server, ana, "DELETE", path)
    assert (deleted.status_code, deleted.content) == (204, b"")
    gone = call(server, ana, "GET", path)
    assert (gone.status_code, gone.json()) == (
        404,
        {"error": f"Document '{document['documentId']}' does not exist."},
    )
    assert call(server, ana, "DELETE", path).status_code == 404


def test_rest_upload_multipart(server: ServerProcess, ana: str) -> None:
    response = call(
        server,
        ana,
        "POST",
        "/documents",
        files={"file": ("plan.txt", b"Ship it on Friday.", "text/plain")},
        data={"comment": "ignored"},
    )
    assert response.status_code == 201, response.text
    document = response.json()
    assert (document["name"], document["contentType"], document["size"]) == (
        "plan.txt",
        "text/plain",
        18,
    )


def test_rest_another_users_document_is_unknown(server: ServerProcess, ana: str) -> None:
    document = upload(server, ana, name="mine").json()
    bob = token(server, "bob")
    elsewhere = token(server, "ana", tenant="globex")
    path = f"/documents/{document['documentId']}"
    for stranger in (bob, elsewhere):
        for method in ("GET", "DELETE"):
            response = call(server, stranger, method, path)
            assert (response.status_code, response.json()) == (
                404,
                {"error": f"Document '{document['documentId']}' does not exist."},
            )
        listed = call(server, stranger, "GET", "/documents").json()
        assert document["documentId"] not in [d["documentId"] for d in listed]
    assert call(server, ana, "GET", path).status_code == 200


def test_rest_list_pages_newest_first(server: ServerProcess) -> None:
    carol = token(server, "carol")
    ids = [upload(server, carol, f"text {n}", name=f"n{n}").json()["documentId"] for n in range(5)]
    first = call(server, carol, "GET", "/documents", params={"limit": "2"}).json()
    second = call(
        server, carol, "GET", "/documents", params={"limit": "2", "before": first[-1]["documentId"]}
    ).json()
    assert [d["documentId"] for d in first + second] == ids[::-1][:4]


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ({"limit": "0"}, "'limit' must be an integer from 1 to 200."),
        ({"limit": "x"}, "'limit' must be an integer from 1 to 200."),
        ({"before": "doc_nope"}, "'before' names no document of yours: 'doc_nope'."),
    ],
)
def test_rest_list_bad_page_is_400(server: ServerProcess, ana: str, query: dict, says: str) -> None:
    response = call(server, ana, "GET", "/documents", params=query)
    assert (response.status_code, response.json()) == (400, {"error": says})


def test_rest_get_content_flag_must_be_a_boolean(server: ServerProcess, ana: str) -> None:
    document = upload(server, ana, name="x").json()
    response = call(
        server, ana, "GET", f"/documents/{document['documentId']}", params={"content": "maybe"}
    )
    assert (response.status_code, response.json()) == (
        400,
        {"error": "'content' must be true or false."},
    )


@pytest.mark.parametrize(
    ("body", "content_type", "query", "status", "says"),
    [
        (b"%PDF-1.7", "application/pdf", {"name": "a.pdf"}, 415, "'application/pdf' is not"),
        (b"x", "text/plain; charset=iso-8859-1", {"name": "a"}, 415, "not charset"),
        (b"caf\xe9", "text/plain", {"name": "a"}, 400, "not valid UTF-8"),
        (b"hello", "text/plain", {}, 400, "needs a name"),
        (b"hello", "text/plain", {"name": "n" * 256}, 400, "at most 255 characters"),
        (b"", "text/plain", {"name": "a"}, 400, "The document is empty."),
        (b"x" * (MAX + 1), "text/plain", {"name": "a"}, 413, f"at most {MAX} bytes"),
        (
            b'--b\r\nContent-Disposition: form-data; name="file"\r\n\r\nx',
            "multipart/form-data",
            {},
            400,
            "needs a boundary",
        ),
        (b"\x00\xff garbage \r\n--", "multipart/form-data; boundary=b", {}, 400, "malformed"),
    ],
)
def test_rest_upload_refusals(
    server: ServerProcess,
    ana: str,
    body: bytes,
    content_type: str,
    query: dict,
    status: int,
    says: str,
) -> None:
    response = upload(server, ana, body, content_type, **query)
    assert response.status_code == status, response.text
    assert says in response.json()["error"]
    alive(server, ana)


def test_rest_upload_random_bodies_get_an_answer(server: ServerProcess, ana: str) -> None:
    """Any bytes, under any of these types: 201, or a refusal with ``{"error": ...}``."""
    rng = random.Random(14)
    types = [
        "text/plain",
        "text/markdown; charset=utf-8",
        "multipart/form-data; boundary=b",
        "multipart/form-data",
        "application/octet-stream",
        "text/plain; charset=utf-16",
    ]
    for n in range(40):
        body = rng.randbytes(rng.choice([0, 1, 10, 1000, 70_000]))
        if n % 3 == 0:  # something that looks like multipart, then garbage
            body = b'--b\r\nContent-Disposition: form-data; name="file"\r\n\r\n' + body
        response = upload(server, ana, body, rng.choice(types), name=f"fuzz {n}")
        assert response.status_code in (201, 400, 413, 415), response.text
        if response.status_code != 201:
            assert set(response.json()) == {"error"}
    alive(server, ana)


def test_rest_upload_needs_a_token(server: ServerProcess) -> None:
    response = upload(server, None, name="a")  # type: ignore[arg-type]
    assert response.status_code == 401


def test_rest_upload_names_are_labels(server: ServerProcess, ana: str) -> None:
    response = upload(server, ana, name="../../etc/passwd")
    assert response.status_code == 201 and response.json()["name"] == "../../etc/passwd"


# -- over the route's own body limit: 413 before the route runs --------------------------------


async def raw_request(server: ServerProcess, head: bytes, chunks: int = 0) -> HttpResponse:
    """Send ``head``, then ``chunks`` chunks of 64 KiB of a chunked body (stopping quietly
    when the server hangs up), and read the response."""
    stream = await trio.open_tcp_stream("127.0.0.1", server.port)
    async with stream:
        await stream.send_all(head)

        async def send_body() -> None:
            piece = b"10000\r\n" + b"a" * 0x10000 + b"\r\n"
            try:
                for _ in range(chunks):
                    await stream.send_all(piece)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send_body)
            response = await HttpResponseReader(stream).read_response()
            nursery.cancel_scope.cancel()
    return response


def head(server: ServerProcess, bearer: str, *headers: str) -> bytes:
    lines = [
        "POST /documents?name=big HTTP/1.1",
        f"Host: 127.0.0.1:{server.port}",
        f"Authorization: Bearer {bearer}",
        "Content-Type: text/plain",
        *headers,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def test_rest_upload_declared_too_large_is_413_at_once(
    server: ServerProcess, ana: str
) -> None:
    with trio.fail_after(CEILING):
        response = await raw_request(server, head(server, ana, "Content-Length: 1000000000"))
    assert response.status == 413
    assert response.body == f"The request body is larger than {MAX + OVERHEAD} bytes.".encode()
    alive(server, ana)


async def test_rest_upload_chunked_too_large_is_413(server: ServerProcess, ana: str) -> None:
    with trio.fail_after(CEILING):
        response = await raw_request(
            server, head(server, ana, "Transfer-Encoding: chunked"), chunks=100
        )
    assert response.status == 413
    alive(server, ana)


async def test_rest_upload_without_a_token_is_401_before_the_body(
    server: ServerProcess, ana: str
) -> None:
    """A body this large is read only for a caller with a token: without one, 401 at once
    (not 413 or a read of the body), and the connection is closed."""
    lines = [
        "POST /documents?name=big HTTP/1.1",
        f"Host: 127.0.0.1:{server.port}",
        "Content-Type: text/plain",
        "Content-Length: 1000000",
    ]
    with trio.fail_after(CEILING):
        response = await raw_request(server, ("\r\n".join(lines) + "\r\n\r\n").encode())
    assert response.status == 401
    assert response.header("connection") == "close"
    alive(server, ana)


async def test_rest_early_refusals_at_once_never_fail(server: ServerProcess, ana: str) -> None:
    """Many bodies refused before they end (413 for a chunked one, 401 before one is read),
    at once: each gets its answer, and the server's ending of the connection never races
    the answer's write (hypercorn's send_eof against our send_all: ``PrefixedStream``)."""
    chunked = head(server, ana, "Transfer-Encoding: chunked")
    anonymous = head(server, "not-a-token", "Content-Length: 1000000")
    answers: list[int] = []

    async def refused(request: bytes, chunks: int) -> None:
        answers.append((await raw_request(server, request, chunks)).status)

    with trio.fail_after(3 * CEILING):
        for _ in range(15):
            async with trio.open_nursery() as nursery:
                for _ in range(4):
                    nursery.start_soon(refused, chunked, 100)
                    nursery.start_soon(refused, anonymous, 0)
    assert sorted(set(answers)) == [401, 413] and len(answers) == 120
    assert "BusyResourceError" not in server.log, server.log
    alive(server, ana)


def test_rest_other_routes_keep_the_64_kib_limit(server: ServerProcess, ana: str) -> None:
    response = call(
        server,
        ana,
        "POST",
        "/insights",
        content=b"{" + b" " * 70_000 + b"}",
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 413
