"""The sans-IO parts of ``/v1/stream``: the client's frames (``protocol.parse``, total),
the events on the backplane (``StreamEvent.packed``/``unpacked``, total), a stored
turn's rendering, and a resume's cut."""

from __future__ import annotations

import datetime
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voisnap.agents.base import TextPart, ToolCall, ToolResult
from voisnap.apps.stream import events
from voisnap.apps.stream.events import StreamEvent
from voisnap.apps.stream.protocol import (
    AnswerTask,
    BadFrame,
    CancelTask,
    ResumeSession,
    SessionTurn,
    StartSession,
    SubmitTask,
    parse,
)
from voisnap.apps.stream.resume import Cut
from voisnap.apps.stream.turns import Snapshot, TurnLog
from voisnap.storage.base import InfoRequest, Message, Owner, Task, TaskState

NOW = datetime.datetime(2026, 12, 8, tzinfo=datetime.UTC)
OWNER = Owner("acme", "ada")


def task(state: TaskState = TaskState.COMPLETED, **fields: object) -> Task:
    return Task("task_1", "sess_1", OWNER, "sophon", "msg_1", state, NOW, **fields)  # type: ignore[arg-type]


# -- the client's frames ------------------------------------------------------------------------


def test_each_type_parses_to_its_message() -> None:
    assert parse('{"type":"task.submit","prompt":"hi","mode":"task"}') == SubmitTask(
        {"prompt": "hi", "mode": "task"})
    assert parse('{"type":"task.cancel","task_id":"t"}') == CancelTask("t")
    assert parse('{"type":"session.start"}') == StartSession(None)
    assert parse('{"type":"session.start","profile_id":"p"}') == StartSession("p")
    assert parse('{"type":"session.resume","session_id":"s"}') == ResumeSession("s")
    assert parse('{"type":"session.turn","session_id":"s","prompt":"p"}') == SessionTurn("s", "p")
    assert parse('{"type":"task.answer","task_id":"t","answer":"B"}') == AnswerTask("t", "B")


@given(st.one_of(st.text(), st.binary(), st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["type", "task_id", "session_id", "prompt", "answer", "profile_id",
                         "mode", "x"]), inner, max_size=5),
    max_leaves=12,
).map(json.dumps)))
def test_parse_is_total(frame: str | bytes) -> None:
    try:
        parse(frame)
    except BadFrame as refusal:
        assert str(refusal) and refusal.code == "BAD_REQUEST"


def test_parse_refuses_deep_nesting_and_long_fields() -> None:
    for frame in ("[" * 100_000, '{"type":"task.cancel","task_id":"' + "t" * 129 + '"}',
                  '{"type":"task.answer","task_id":"t","answer":"' + "a" * 5000 + '"}'):
        with pytest.raises(BadFrame):
            parse(frame)


# -- the backplane's events ---------------------------------------------------------------------


def test_an_event_crosses_the_backplane_whole() -> None:
    event = StreamEvent.of({"type": "task:token", "text": "héllo"}, task_id="t", segment="s",
                           seq=7, admin_only=True)
    back = StreamEvent.unpacked(event.packed())
    assert back is not None
    assert (back.data, back.task_id, back.segment, back.seq, back.admin_only) == (
        event.data, "t", "s", 7, True)


@given(st.binary())
def test_unpacked_is_total(payload: bytes) -> None:
    StreamEvent.unpacked(payload)  # a StreamEvent or None, never an exception


@given(st.binary())
def test_a_snapshot_parse_is_total(payload: bytes) -> None:
    Snapshot.parse(payload)


def test_a_log_numbers_its_events_and_its_snapshot_keeps_them() -> None:
    log = TurnLog("t")
    first = log.add({"type": "task:token", "text": "a"})
    second = log.add({"type": "debug.system_prompt", "prompt": "p"}, admin_only=True)
    assert (first.seq, second.seq) == (1, 2) and first.segment == log.segment
    snapshot = Snapshot.parse(log.snapshot())
    assert snapshot is not None and snapshot.seq == 2 and snapshot.segment == log.segment
    assert [e.data for e in snapshot.events] == [first.data, second.data]
    assert [e.admin_only for e in snapshot.events] == [False, True]


# -- a stored turn --------------------------------------------------------------------------------


def test_a_stored_turn_renders_as_it_streamed() -> None:
    ask = ToolCall("c2", "ask_user", {"question": "Which?", "options": ["A", "B"]})
    transcript = (
        TextPart("Let me count. "),
        ToolCall("c1", "calculator", {"expression": "1+1"}),
        ToolResult("c1", "calculator", True, 2),
        ask,
        ToolResult("c2", "ask_user", True, "A"),
    )
    reply = Message("msg_r", "sess_1", OWNER, "assistant", "Let me count. It is 2, A.", NOW,
                    metadata={"usage": {"input_tokens": 3, "output_tokens": 4, "cost_usd": 0.5}})
    info = InfoRequest("info_1", "task_1", "sess_1", OWNER, "sophon", "c2", "Which?", ("A", "B"),
                       "answered", NOW, NOW, response="A")
    shown = events.stored_turn(task(), transcript, reply, {"c2": info})
    assert [(e["type"], e.get("tool"), e.get("text")) for e in shown] == [
        ("task:token", None, "Let me count. "),
        ("task:tool_use", "calculator", None),
        ("task:tool_result", "calculator", None),
        ("task:tool_use", "AskUserQuestion", None),
        ("task:ask_user", None, None),
        ("task:tool_result", "AskUserQuestion", None),
        ("task:token", None, "It is 2, A."),
        ("turn.done", None, None),
        ("task:done", None, None),
    ]
    assert shown[2]["output"] == "2" and shown[5]["output"] == "A"
    assert shown[4]["questions"] == [{"question": "Which?",
                                      "options": [{"label": "A"}, {"label": "B"}]}]
    assert shown[7] == {**shown[7], "input_tokens": 3, "output_tokens": 4, "cost_usd": 0.5,
                        "result_text": reply.content}
    assert all(e["task_id"] == "task_1" and e["session_id"] == "sess_1" for e in shown)


def test_a_cancelled_stored_turn_closes_its_open_calls() -> None:
    call = ToolCall("c1", "delete_note", {"text": "x"})
    shown = events.stored_turn(task(TaskState.CANCELLED), (call,), None, {})
    assert [e["type"] for e in shown] == ["task:tool_use", "task:tool_result", "task:done"]
    assert shown[-1]["status"] == "cancelled"
    failed = events.stored_turn(task(TaskState.FAILED, error="boom"), (call,), None, {})
    assert [e["type"] for e in failed] == ["task:tool_use", "task:failed"]
    assert failed[-1]["error"] == "boom"


# -- a resume's cut -------------------------------------------------------------------------------


def test_the_cut_passes_only_what_the_replay_did_not_show() -> None:
    cut = Cut({"t1": ("seg", 5)}, frozenset({"t2"}))

    def live(task_id: str, segment: str = "", seq: int = 0) -> StreamEvent:
        return StreamEvent(b"{}", task_id, segment, seq)

    assert not cut.passes(live("t1", "seg", 5))  # replayed from the log
    assert cut.passes(live("t1", "seg", 6))  # after the replay's point
    assert cut.passes(live("t1", "newer", 1))  # a later segment of the task
    assert not cut.passes(live("t2", "seg", 9))  # replayed from the store as ended
    assert cut.passes(live("t3", "x", 1))  # a turn the replay did not know
