"""Reading the document out of a ``POST /documents`` body (docs/documents.md, "Uploading").

Two forms, told apart by the request's ``Content-Type``:

- the raw body, ``text/plain`` or ``text/markdown`` (``charset=utf-8`` or no
  charset), named by the query's ``?name=``;
- ``multipart/form-data`` (RFC 7578) with a part named ``file``: its filename
  is the name (``?name=`` wins when given); its own ``Content-Type`` is
  ``text/plain`` or ``text/markdown``, or, when it has none or says
  ``application/octet-stream`` (what ``curl -F`` sends), is inferred from the
  filename's extension (``.txt``, ``.text``, ``.md``, ``.markdown``). Other
  parts are read past and ignored. The body is parsed by the ``multipart``
  package's push parser, on bytes, with its limits on part headers.

Everything else is refused with a status and a sentence: 415 for a type that
is not one of these (or another charset), 413 for a document over the size
limit, 400 for a malformed multipart body, bytes that are not UTF-8, a NUL
character (text has none, and PostgreSQL cannot store one), a blank document,
or a missing or unusable name. A name is a label, shown back as given: it is
never used as a path, so ``../../etc/passwd`` is a name like any other.

Sans-IO: the whole body in (the server has read it within the route's body
limit), an ``Upload`` or an ``UploadError`` out.
"""

from __future__ import annotations

import unicodedata
from pathlib import PurePosixPath

import attrs
from multipart import MultipartError, MultipartSegment, PushMultipartParser, parse_options_header

PLAIN, MARKDOWN = "text/plain", "text/markdown"
TEXT_TYPES = (PLAIN, MARKDOWN)
MULTIPART = "multipart/form-data"
EXTENSIONS = {".txt": PLAIN, ".text": PLAIN, ".md": MARKDOWN, ".markdown": MARKDOWN}
UNTYPED = (None, "", "application/octet-stream")
CHARSETS = (None, "utf-8", "utf8")
FILE_PART = "file"
MAX_NAME = 255
MAX_PARTS = 16
MULTIPART_OVERHEAD = 64 * 1024
"""What the route reads beyond the document size limit: the boundaries, part
headers and small fields of a multipart body."""

WRONG_TYPE = (
    "Send the document as text/plain or text/markdown (the raw body, named by ?name=), "
    "or as the 'file' part of multipart/form-data."
)


class UploadError(Exception):
    """The body is not a document voisnap takes: answer ``status`` with the text."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


@attrs.frozen
class Upload:
    name: str
    content_type: str
    text: str
    size: int
    """Bytes, as uploaded."""


@attrs.frozen
class FilePart:
    filename: str | None
    content_type: str | None
    charset: str | None
    data: bytes


def read_upload(content_type: str, body: bytes, name: str | None, max_size: int) -> Upload:
    """The document in ``body``; UploadError saying why there is none."""
    media, options = parse_options_header(content_type or "")
    if media == MULTIPART:
        part = file_part(body, options.get("boundary"), max_size)
        media = part_type(part)
        check_charset(part.charset)
        name = part.filename if name is None else name
        data = part.data
    elif media in TEXT_TYPES:
        check_charset(options.get("charset"))
        data = body
    elif not media:
        raise UploadError(415, f"The request has no Content-Type. {WRONG_TYPE}")
    else:
        raise UploadError(415, f"'{media}' is not a type of document voisnap takes. {WRONG_TYPE}")
    check_size(len(data), max_size)
    return Upload(checked_name(name), media, decoded(data), len(data))


def check_charset(charset: str | None) -> None:
    if (charset.lower() if charset else None) not in CHARSETS:
        raise UploadError(415, f"A document must be UTF-8 text, not charset '{charset}'.")


def check_size(size: int, max_size: int) -> None:
    if size > max_size:
        raise UploadError(413, f"A document may be at most {max_size} bytes.")


def decoded(data: bytes) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise UploadError(
            400, f"The document is not valid UTF-8 (byte {error.start}: {error.reason})."
        ) from None
    text = text.removeprefix("\ufeff")  # a byte order mark is not part of the text
    if "\x00" in text:
        raise UploadError(400, "The document contains a NUL character: it is not text.")
    if not text.strip():
        raise UploadError(400, "The document is empty.")
    return text


def checked_name(name: str | None) -> str:
    if name is None or not name.strip():
        raise UploadError(
            400, "The document needs a name: ?name=... (or the 'file' part's filename)."
        )
    name = name.strip()
    if len(name) > MAX_NAME:
        raise UploadError(400, f"A document's name may be at most {MAX_NAME} characters.")
    if any(unicodedata.category(character) == "Cc" for character in name):
        raise UploadError(400, "A document's name may not contain control characters.")
    return name


# -- multipart/form-data ---------------------------------------------------------------------------


def file_part(body: bytes, boundary: str | None, max_size: int) -> FilePart:
    """The ``file`` part of a multipart body; UploadError if there is not exactly one."""
    if not boundary:
        raise UploadError(400, "A multipart/form-data body needs a boundary in its Content-Type.")
    found: MultipartSegment | None = None
    data = bytearray()
    try:
        parser = PushMultipartParser(boundary, len(body), max_segment_count=MAX_PARTS)
        with parser:  # leaving it checks that the body ended where multipart says
            current = None
            for event in parser.parse(body):
                if isinstance(event, MultipartSegment):
                    current = event
                    if event.name == FILE_PART:
                        if found is not None:
                            raise UploadError(400, "Send one 'file' part, not several.")
                        found = event
                elif event is None:
                    current = None
                elif current is found and found is not None:
                    data += event
                    check_size(len(data), max_size)
    except MultipartError as error:
        raise UploadError(400, f"The multipart body is malformed: {_reason(error)}.") from None
    if found is None:
        raise UploadError(400, "The multipart body has no 'file' part.")
    return FilePart(found.filename, found.content_type, found.charset, bytes(data))


def _reason(error: MultipartError) -> str:
    """The parser's reason, without the bytes it could not read (never echoed back)."""
    reason = error.args[0] if error.args else type(error).__name__
    return str(reason).rstrip(".")


def part_type(part: FilePart) -> str:
    """The file part's type: its own, or, if it has none, its filename extension's."""
    if part.content_type in TEXT_TYPES:
        return part.content_type
    if part.content_type in UNTYPED:
        suffix = PurePosixPath(part.filename or "").suffix.lower()
        if suffix in EXTENSIONS:
            return EXTENSIONS[suffix]
        raise UploadError(
            415,
            f"The 'file' part has no text type, and its name does not end in .txt or .md. "
            f"{WRONG_TYPE}",
        )
    raise UploadError(
        415, f"'{part.content_type}' is not a type of document voisnap takes. {WRONG_TYPE}"
    )
