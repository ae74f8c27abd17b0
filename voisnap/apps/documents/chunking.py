"""Cutting a document into chunks for full-text search (docs/documents.md, "Chunks").

A search finds chunks, not documents: a chunk is a passage short enough to
quote in an answer, long enough to hold a thought. The rules, kept simple:

- a Markdown heading (a line starting with one to six ``#`` and a space,
  outside fenced code blocks) starts a new chunk: a section never shares a
  chunk with the one before it;
- within a section, whole paragraphs (separated by blank lines) are packed
  into chunks of at most ``size`` characters (1000);
- a paragraph longer than that is cut at the last sentence end, else the
  last space, in the second half of the allowance, else exactly at it;
- each chunk after the first of its section starts with up to ``overlap``
  characters (150, from a word boundary) of the one before, so a phrase cut
  in two is still found whole in one of them.

Pure functions, no I/O: the indexer runs them in a worker thread.
"""

from __future__ import annotations

import re

SIZE = 1000
OVERLAP = 150
SEPARATOR = "\n\n"

HEADING = re.compile(r"#{1,6}(?:\s|$)")
FENCE = re.compile(r"(?:```|~~~)")
BLANK_LINE = re.compile(r"\n[ \t]*\n")
SENTENCE_END = re.compile(r"[.!?][)\"'\u201d\u2019]*\s+")  # closing brackets and quotes
WHITESPACE = re.compile(r"\s+")


def chunk_text(text: str, *, markdown: bool, size: int = SIZE, overlap: int = OVERLAP) -> list[str]:
    """The chunks of ``text`` (none for blank text), each at most ``size`` characters."""
    if not 0 <= overlap < size // 2:
        raise ValueError("the overlap must be less than half the chunk size")
    chunks: list[str] = []
    for section in sections(text) if markdown else [text]:
        chunks += pack(paragraphs(section), size, overlap)
    return chunks


def sections(text: str) -> list[str]:
    """Markdown ``text`` cut before every heading line (not inside fenced code)."""
    found: list[list[str]] = [[]]
    fenced = False
    for line in text.split("\n"):
        stripped = line.lstrip()
        if FENCE.match(stripped):
            fenced = not fenced
        elif not fenced and HEADING.match(stripped) and found[-1]:
            found.append([])
        found[-1].append(line)
    return ["\n".join(lines) for lines in found]


def paragraphs(section: str) -> list[str]:
    return [part.strip() for part in BLANK_LINE.split(section) if part.strip()]


def pack(paragraphs: list[str], size: int, overlap: int) -> list[str]:
    """Paragraphs packed into chunks; the next chunk begins with the last one's tail."""
    # A piece leaves room for the overlap and the separator before it.
    limit = size - overlap - len(SEPARATOR)
    chunks: list[str] = []
    current = ""
    for paragraph in paragraphs:
        for piece in split_long(paragraph, limit):
            if current and len(current) + len(SEPARATOR) + len(piece) > size:
                chunks.append(current)
                current = tail(current, overlap)
            current = f"{current}{SEPARATOR}{piece}" if current else piece
    if current:
        chunks.append(current)
    return chunks


def split_long(text: str, limit: int) -> list[str]:
    """``text`` in pieces of at most ``limit`` characters, cut where a reader would."""
    pieces = []
    while len(text) > limit:
        cut = _cut(text, limit)
        pieces.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    if text:
        pieces.append(text)
    return pieces


def _cut(text: str, limit: int) -> int:
    window = text[:limit]
    for boundary in (SENTENCE_END, WHITESPACE):
        ends = [found.end() for found in boundary.finditer(window)]
        if ends and ends[-1] > limit // 2:
            return ends[-1]
    return limit


def tail(chunk: str, overlap: int) -> str:
    """The last ``overlap`` characters of ``chunk``, from the start of a word; nothing
    for a chunk that short (it is repeated whole by its neighbour's context anyway)."""
    if len(chunk) <= overlap:
        return ""
    end = chunk[-overlap:]
    space = WHITESPACE.search(end)
    return end[space.end() :] if space else end
