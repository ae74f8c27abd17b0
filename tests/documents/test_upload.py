"""Reading an upload (``apps.documents.upload``, docs/documents.md "Uploading"): the raw
body and ``multipart/form-data``, and every hostile body a status with a sentence."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voisnap.apps.documents.upload import UploadError, read_upload

MAX = 1000
BOUNDARY = "voisnap-Boundary-7MA4YWxkTrZu0gW"
FORM = f"multipart/form-data; boundary={BOUNDARY}"


def multipart(*parts: tuple[str, bytes], boundary: str = BOUNDARY) -> bytes:
    """A multipart body of (headers, content) parts, CRLF as RFC 7578 writes it."""
    out = b""
    for headers, content in parts:
        out += f"--{boundary}\r\n{headers}\r\n\r\n".encode() + content + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


def file_part(content: bytes, filename: str = "notes.md", content_type: str | None = None):
    headers = f'Content-Disposition: form-data; name="file"; filename="{filename}"'
    if content_type is not None:
        headers += f"\r\nContent-Type: {content_type}"
    return headers, content


def refused(content_type: str, body: bytes, name: str | None = "n") -> tuple[int, str]:
    with pytest.raises(UploadError) as caught:
        read_upload(content_type, body, name, MAX)
    return caught.value.status, caught.value.text


def test_upload_raw_plain_and_markdown() -> None:
    plain = read_upload("text/plain; charset=UTF-8", "héllo".encode(), "a.txt", MAX)
    assert (plain.name, plain.content_type, plain.text, plain.size) == (
        "a.txt",
        "text/plain",
        "héllo",
        6,
    )
    markdown = read_upload("text/markdown", b"\xef\xbb\xbf# Hi", " Plan ", MAX)
    assert (markdown.name, markdown.content_type, markdown.text) == (
        "Plan",
        "text/markdown",
        "# Hi",
    )


def test_upload_multipart_file_part_among_others() -> None:
    body = multipart(
        ('Content-Disposition: form-data; name="comment"', b"ignored"),
        file_part(b"# Plan\n\nShip it.", content_type="text/markdown; charset=utf-8"),
    )
    upload = read_upload(FORM, body, None, MAX)
    assert (upload.name, upload.content_type, upload.text, upload.size) == (
        "notes.md",
        "text/markdown",
        "# Plan\n\nShip it.",
        16,
    )


@pytest.mark.parametrize(
    ("filename", "content_type", "expected"),
    [
        ("a.txt", None, "text/plain"),
        ("a.MD", "application/octet-stream", "text/markdown"),
        ("a.markdown", None, "text/markdown"),
        ("a.bin", "text/plain", "text/plain"),
    ],
)
def test_upload_multipart_type_from_the_part_or_its_extension(
    filename: str, content_type: str | None, expected: str
) -> None:
    body = multipart(file_part(b"text", filename, content_type))
    assert read_upload(FORM, body, None, MAX).content_type == expected


def test_upload_query_name_wins_over_the_filename() -> None:
    body = multipart(file_part(b"text", "a.txt"))
    assert read_upload(FORM, body, "Better name", MAX).name == "Better name"


def test_upload_names_are_labels_not_paths() -> None:
    for name in ("../../etc/passwd", "C:\\Windows\\win.ini", "日本語.md", "<script>"):
        assert read_upload("text/plain", b"x", name, MAX).name == name


@pytest.mark.parametrize(
    ("content_type", "body", "name", "status", "says"),
    [
        ("application/pdf", b"%PDF", "n", 415, "'application/pdf' is not a type"),
        ("", b"text", "n", 415, "no Content-Type"),
        ("text/html", b"<p>", "n", 415, "'text/html' is not a type"),
        ("text/plain; charset=latin-1", b"caf\xe9", "n", 415, "not charset 'latin-1'"),
        ("text/plain", b"caf\xe9", "n", 400, "not valid UTF-8 (byte 3"),
        ("text/plain", b"\xed\xa0\x80", "n", 400, "not valid UTF-8"),  # a surrogate
        ("text/plain", b"", "n", 400, "The document is empty."),
        ("text/plain", b" \n\t ", "n", 400, "The document is empty."),
        ("text/plain", b"a\x00b", "n", 400, "NUL character"),
        ("text/plain", b"x" * (MAX + 1), "n", 413, f"at most {MAX} bytes"),
        ("text/plain", b"x", None, 400, "needs a name"),
        ("text/plain", b"x", "   ", 400, "needs a name"),
        ("text/plain", b"x", "n" * 256, 400, "at most 255 characters"),
        ("text/plain", b"x", "a\r\nb", 400, "control characters"),
        ("text/plain", b"x", "a\x00b", 400, "control characters"),
    ],
)
def test_upload_raw_refusals(
    content_type: str, body: bytes, name: str | None, status: int, says: str
) -> None:
    got_status, text = refused(content_type, body, name)
    assert got_status == status and says in text, (got_status, text)


def test_upload_name_of_255_characters_is_fine() -> None:
    assert read_upload("text/plain", b"x", "n" * 255, MAX).name == "n" * 255


@pytest.mark.parametrize(
    ("content_type", "body", "status", "says"),
    [
        ("multipart/form-data", multipart(file_part(b"x")), 400, "needs a boundary"),
        (FORM, b"", 400, "malformed"),
        (FORM, b"garbage without any boundary", 400, "malformed"),
        (FORM, multipart(file_part(b"x"))[:-10], 400, "malformed"),  # cut short
        ("multipart/form-data; boundary=other", multipart(file_part(b"x")), 400, "malformed"),
        (
            FORM,
            multipart(('Content-Disposition: form-data; name="text"', b"x")),
            400,
            "no 'file' part",
        ),
        (FORM, multipart(file_part(b"a"), file_part(b"b")), 400, "one 'file' part"),
        (FORM, multipart(file_part(b"x", "a.pdf")), 415, "does not end in .txt or .md"),
        (FORM, multipart(file_part(b"x", "a.txt", "image/png")), 415, "'image/png' is not"),
        (
            FORM,
            multipart(file_part(b"x", "a.txt", "text/plain; charset=utf-16")),
            415,
            "not charset 'utf-16'",
        ),
        (FORM, multipart(file_part(b"\xff\xfe", "a.txt")), 400, "not valid UTF-8"),
        (FORM, multipart(file_part(b"x" * (MAX + 1), "a.txt")), 413, f"at most {MAX} bytes"),
        (
            FORM,
            multipart(
                ('Content-Disposition: form-data; name="file"\r\nContent-Type: text/plain', b"x")
            ),
            400,
            "needs a name",
        ),
        (
            FORM,
            multipart(
                (
                    "X-Long: " + "h" * 10_000 + "\r\nContent-Disposition: form-data; "
                    'name="file"; filename="a.txt"',
                    b"x",
                )
            ),
            400,
            "malformed",
        ),
        (
            FORM,
            multipart(*[('Content-Disposition: form-data; name="f"', b"x")] * 40),
            400,
            "malformed",
        ),
        ('multipart/form-data; boundary="a\\nb"', b"--a\nb--", 400, "malformed"),
        (
            FORM,
            f"--{BOUNDARY}\r\n".encode()
            + b'Content-Disposition: form-data; name="file"; filename="\xff.txt"\r\n\r\nx\r\n'
            + f"--{BOUNDARY}--\r\n".encode(),
            400,
            "The multipart body is malformed: Segment header failed to decode.",
        ),
    ],
)
def test_upload_multipart_refusals(content_type: str, body: bytes, status: int, says: str) -> None:
    got_status, text = refused(content_type, body, None)
    assert got_status == status and says in text, (got_status, text)


@given(
    body=st.binary(max_size=2000),
    boundary=st.text(min_size=1, max_size=80),
    name=st.one_of(st.none(), st.text(max_size=300)),
)
def test_upload_any_bytes_are_a_document_or_a_refusal(
    body: bytes, boundary: str, name: str | None
) -> None:
    for content_type in (
        f"multipart/form-data; boundary={boundary}",
        "text/plain",
        f"text/markdown; charset={boundary}",
        boundary,
    ):
        try:
            upload = read_upload(content_type, body, name, MAX)
        except UploadError as error:
            assert error.status in (400, 413, 415) and error.text
        else:
            assert upload.size <= MAX and upload.text.strip()


@given(junk=st.binary(max_size=300))
def test_upload_multipart_with_junk_around_the_file_part(junk: bytes) -> None:
    body = junk + b"\r\n" + multipart(file_part(b"kept")) + junk
    try:
        upload = read_upload(FORM, body, None, MAX)
    except UploadError as error:
        assert error.status == 400
    else:
        assert upload.text == "kept"
