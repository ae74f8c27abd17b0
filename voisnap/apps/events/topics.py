"""Topics and the patterns that match them (seed 003; docs/v1-events.md), without I/O.

A topic is ``events.{orgId}.{source}.{resource}.{event}.{resourceId}``: tokens
joined by ``.``, each of letters, digits, ``_`` and ``-`` (a resource id may
also hold ``:`` as voisnap's ids do not, but an ingested one might). A pattern
is a topic in which a token may be ``*`` (exactly one token) or, last of all,
``>`` (one or more tokens), as NATS subjects are.

``TopicTree`` holds subscriptions and finds those that match a topic by
walking the topic's tokens down a tree of pattern tokens: at each level the
literal child, the ``*`` child, and the ``>`` child (which matches the rest).
The cost grows with the topic's depth and the wildcards met on the way, not
with the number of subscriptions (nats-server's ``sublist.go`` does the same).
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Iterator

MAX_TOPIC = 256  # characters
MAX_TOKENS = 16
ONE, REST = "*", ">"
PREFIX = "events"

_TOKEN = re.compile(r"[A-Za-z0-9_\-:]{1,128}")


class BadTopic(ValueError):
    """A topic or pattern that is not well formed; ``str()`` says why."""


def tokens_of(text: object, *, pattern: bool) -> list[str]:
    """The tokens of a topic (or, with ``pattern``, of a pattern); BadTopic if malformed."""
    if not isinstance(text, str) or not text:
        raise BadTopic("A topic is a non-empty string.")
    if len(text) > MAX_TOPIC:
        raise BadTopic(f"A topic may have {MAX_TOPIC} characters.")
    tokens = text.split(".")
    if len(tokens) > MAX_TOKENS:
        raise BadTopic(f"A topic may have {MAX_TOKENS} tokens.")
    for position, token in enumerate(tokens):
        if pattern and token == ONE:
            continue
        if pattern and token == REST:
            if position != len(tokens) - 1:
                raise BadTopic("'>' may only be a pattern's last token.")
            continue
        if _TOKEN.fullmatch(token) is None:
            raise BadTopic(
                f"Token {position + 1} of the topic is not 1 to 128 letters, digits, '_', '-' "
                "or ':' (or, in a pattern, '*' or a last '>')."
            )
    if tokens[0] != PREFIX:
        raise BadTopic(f"A topic begins with '{PREFIX}.'.")
    return tokens


class _Node:
    __slots__ = ("children", "subscribers")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.subscribers: set[Hashable] = set()


class TopicTree:
    """Subscribers by pattern; ``match(topic)`` finds every subscriber of a
    pattern that matches it, each once."""

    def __init__(self) -> None:
        self._root = _Node()
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, pattern: list[str], subscriber: Hashable) -> None:
        node = self._root
        for token in pattern:
            node = node.children.setdefault(token, _Node())
        if subscriber not in node.subscribers:
            node.subscribers.add(subscriber)
            self._count += 1

    def remove(self, pattern: list[str], subscriber: Hashable) -> None:
        """Forget ``subscriber`` of ``pattern``, and the branches left empty."""
        path = [self._root]
        for token in pattern:
            child = path[-1].children.get(token)
            if child is None:
                return
            path.append(child)
        if subscriber not in path[-1].subscribers:
            return
        path[-1].subscribers.discard(subscriber)
        self._count -= 1
        for depth in range(len(pattern), 0, -1):  # prune, deepest first
            node = path[depth]
            if node.subscribers or node.children:
                break
            del path[depth - 1].children[pattern[depth - 1]]

    def match(self, topic: list[str]) -> set[Hashable]:
        found: set[Hashable] = set()
        for node in self._walk(self._root, topic, 0):
            found |= node.subscribers
        return found

    def _walk(self, node: _Node, topic: list[str], depth: int) -> Iterator[_Node]:
        if depth == len(topic):
            yield node
            return
        rest = node.children.get(REST)
        if rest is not None:  # '>' matches one or more remaining tokens
            yield rest
        for key in (topic[depth], ONE):
            child = node.children.get(key)
            if child is not None:
                yield from self._walk(child, topic, depth + 1)
