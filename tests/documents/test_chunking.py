"""Chunking (``apps.documents.chunking``, docs/documents.md "Chunks"): headings start
chunks, paragraphs are packed whole, long ones are cut where a reader would, neighbours
overlap, and nothing of the text is lost."""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voisnap.apps.documents.chunking import OVERLAP, SIZE, chunk_text

SENTENCE = "The quick brown fox jumps over the lazy dog. "


def words(text: str) -> list[str]:
    return re.findall(r"\S+", text)


def test_chunking_short_text_is_one_chunk() -> None:
    assert chunk_text("Hello, world.\n\nSecond paragraph.", markdown=False) == [
        "Hello, world.\n\nSecond paragraph."
    ]


def test_chunking_blank_text_has_no_chunks() -> None:
    assert chunk_text(" \n\n\t\n", markdown=True) == []


def test_chunking_markdown_headings_start_chunks() -> None:
    text = "# One\n\nalpha\n\n## Two\nbeta\n\n```\n# not a heading\n```\n\n### Three\n\ngamma"
    assert chunk_text(text, markdown=True) == [
        "# One\n\nalpha",
        "## Two\nbeta\n\n```\n# not a heading\n```",
        "### Three\n\ngamma",
    ]


def test_chunking_plain_text_has_no_headings() -> None:
    assert chunk_text("# One\n\nalpha\n\n# Two", markdown=False) == ["# One\n\nalpha\n\n# Two"]


def test_chunking_paragraphs_are_packed_whole() -> None:
    paragraphs = [f"Paragraph {n}. " + SENTENCE * 4 for n in range(12)]
    chunks = chunk_text("\n\n".join(paragraphs), markdown=False)
    assert len(chunks) > 1
    for chunk in chunks:
        assert len(chunk) <= SIZE
        # every chunk but the overlap at its start is made of whole paragraphs
        assert chunk.rstrip().endswith(SENTENCE.strip())
    assert chunks[0].startswith("Paragraph 0.")


def test_chunking_long_paragraph_is_cut_at_sentence_ends() -> None:
    chunks = chunk_text(SENTENCE * 100, markdown=False)
    assert len(chunks) >= 4
    for chunk in chunks:
        assert len(chunk) <= SIZE
        assert chunk.endswith("dog.")


def test_chunking_neighbours_overlap() -> None:
    chunks = chunk_text(" ".join(f"w{n}" for n in range(1000)), markdown=False)
    for before, after in itertools.pairwise(chunks):
        shared = after.split("\n\n", 1)[0]
        assert before.endswith(shared) and 0 < len(shared) <= OVERLAP


def test_chunking_a_word_longer_than_a_chunk_is_cut_hard() -> None:
    chunks = chunk_text("x" * 5000, markdown=False)
    assert all(len(chunk) <= SIZE for chunk in chunks)
    assert "".join(chunk.split("\n\n")[-1] for chunk in chunks).count("x") == 5000


@pytest.mark.parametrize("markdown", [False, True])
@given(text=st.text(alphabet=st.sampled_from("ab #.\n`~é"), max_size=4000))
def test_chunking_keeps_every_word_within_the_size(markdown: bool, text: str) -> None:
    chunks = chunk_text(text, markdown=markdown)
    assert all(0 < len(chunk) <= SIZE for chunk in chunks)
    joined = " ".join(chunks)
    for word in set(words(text)):
        # a word may be cut only when it is longer than a chunk's allowance
        if len(word) < 100:
            assert word in joined, word
