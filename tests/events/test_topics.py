"""Topics, patterns and the topic tree (issue 20; docs/v1-events.md, "Topics and
patterns"): a table of patterns against topics, ``*`` and ``>`` at every position, the
grammar's refusals, and the tree against a plain reference matcher on random input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voisnap.apps.events.topics import BadTopic, TopicTree, tokens_of

TOPIC = "events.acme.tasks.task.completed.task_1"

# (pattern, topic, matches)
TABLE = [
    (TOPIC, TOPIC, True),
    ("events.acme.tasks.task.completed.task_2", TOPIC, False),
    # '*' at every position after 'events', exactly one token
    ("events.*.tasks.task.completed.task_1", TOPIC, True),
    ("events.acme.*.task.completed.task_1", TOPIC, True),
    ("events.acme.tasks.*.completed.task_1", TOPIC, True),
    ("events.acme.tasks.task.*.task_1", TOPIC, True),
    ("events.acme.tasks.task.completed.*", TOPIC, True),
    ("events.acme.tasks.task.completed.*", "events.acme.tasks.task.completed", False),
    ("events.acme.tasks.task.completed.*", TOPIC + ".extra", False),
    ("events.acme.tasks.task.*", TOPIC, False),
    ("events.*.*.*.*.*", TOPIC, True),
    ("events.*.*.*.*", TOPIC, False),
    ("events.*.*.*.*.*.*", TOPIC, False),
    # '>' at every position after 'events', one or more tokens
    ("events.>", TOPIC, True),
    ("events.acme.>", TOPIC, True),
    ("events.acme.tasks.>", TOPIC, True),
    ("events.acme.tasks.task.>", TOPIC, True),
    ("events.acme.tasks.task.completed.>", TOPIC, True),
    ("events.acme.tasks.task.completed.task_1.>", TOPIC, False),  # '>' needs one more token
    ("events.acme.>", "events.acme", False),
    ("events.other.>", TOPIC, False),
    ("events.acme.flows.>", TOPIC, False),
    # both
    ("events.*.tasks.>", TOPIC, True),
    ("events.acme.*.*.completed.>", TOPIC, True),
    ("events.acme.*.*.failed.>", TOPIC, False),
    # the seed's examples
    ("events.org_123.conversations.conversation.message_posted.*",
     "events.org_123.conversations.conversation.message_posted.conv_456", True),
    ("events.org_123.conversations.conversation.message_posted.conv_456",
     "events.org_123.conversations.conversation.message_posted.conv_457", False),
    ("events.org_123.flows.flow.run.*", "events.org_123.flows.flow.run.run_9", True),
]


@pytest.mark.parametrize("pattern, topic, matches", TABLE)
def test_a_pattern_matches_the_topics_it_names(pattern: str, topic: str, matches: bool) -> None:
    tree = TopicTree()
    tree.add(tokens_of(pattern, pattern=True), "subscriber")
    assert bool(tree.match(tokens_of(topic, pattern=False))) is matches


def test_every_matching_subscriber_is_found_once() -> None:
    tree = TopicTree()
    patterns = {pattern for pattern, _, matches in TABLE if matches and "org_123" not in pattern}
    for pattern in patterns:
        tree.add(tokens_of(pattern, pattern=True), pattern)
        tree.add(tokens_of(pattern, pattern=True), pattern)  # twice: held once
    tree.add(tokens_of("events.acme.flows.>", pattern=True), "flows")
    assert len(tree) == len(patterns) + 1
    assert tree.match(tokens_of(TOPIC, pattern=False)) == patterns


def test_removing_prunes_and_leaves_the_others() -> None:
    tree = TopicTree()
    a, b = tokens_of("events.acme.>", pattern=True), tokens_of("events.acme.*.x", pattern=True)
    tree.add(a, 1)
    tree.add(b, 2)
    tree.remove(a, 1)
    tree.remove(a, 1)  # again: nothing
    tree.remove(tokens_of("events.nobody", pattern=True), 3)
    assert len(tree) == 1
    assert tree.match(tokens_of("events.acme.y.x", pattern=False)) == {2}
    tree.remove(b, 2)
    assert len(tree) == 0 and tree._root.children == {}


@pytest.mark.parametrize("text, says", [
    ("", "non-empty"),
    ("tasks.task", "begins with 'events.'"),
    ("events..x", "Token 2"),
    ("events.a b", "Token 2"),
    ("events.é", "Token 2"),
    ("events." + "x" * 129, "Token 2"),
    ("events." + ".".join(["x"] * 16), "16 tokens"),
    ("events." + "x" * 300, "256 characters"),
    ("events.>.x", "last token"),
    ("events.a*", "Token 2"),
])
def test_malformed_patterns_are_refused(text: str, says: str) -> None:
    with pytest.raises(BadTopic) as refused:
        tokens_of(text, pattern=True)
    assert says in str(refused.value)


def test_wildcards_are_no_topic_tokens() -> None:
    for topic in ("events.acme.*", "events.acme.>"):
        with pytest.raises(BadTopic):
            tokens_of(topic, pattern=False)


def _reference(pattern: list[str], topic: list[str]) -> bool:
    """A pattern matches a topic, token by token (the plain way)."""
    for position, token in enumerate(pattern):
        if token == ">":
            return len(topic) > position
        if position >= len(topic) or token not in ("*", topic[position]):
            return False
    return len(topic) == len(pattern)


WORDS = st.sampled_from(["a", "b", "c"])
TOPICS = st.lists(WORDS, min_size=0, max_size=5).map(lambda ts: ["events", *ts])
PATTERNS = st.lists(st.sampled_from(["a", "b", "*"]), min_size=0, max_size=5).flatmap(
    lambda ts: st.sampled_from([["events", *ts], ["events", *ts, ">"]])
)


@given(st.lists(PATTERNS, max_size=12), st.lists(TOPICS, max_size=8))
def test_the_tree_agrees_with_the_reference(patterns: list[list[str]],
                                            topics: list[list[str]]) -> None:
    tree = TopicTree()
    for index, pattern in enumerate(patterns):
        tree.add(pattern, index)
    for topic in topics:
        expected = {i for i, pattern in enumerate(patterns) if _reference(pattern, topic)}
        assert tree.match(topic) == expected
