"""The discussion hub (issue 13, docs/hubs/discussion.md) with the official ``@microsoft/signalr``
client under Node against a real ``voisnap serve`` process on 127.0.0.1.

One server, one agent worker, and an agents file with ``slow``: a synthetic agent whose
rule-based turns come a word every 0.2 s (a turn takes seconds). The story (``story``,
once for the module):

1. user U starts run B (``sophon`` then ``slow``, three rounds): it takes the only worker.
   U's device S subscribes to B and waits until ``slow`` (p2) has begun its turn;
2. U starts run R (three ``sophon`` panelists, two rounds): it waits in the queue, so S
   subscribes to R before R starts; the snapshot says ``queued``;
3. strangers try R: V (same tenant) and W (another tenant) are refused ``Subscribe`` and
   ``CancelRun`` with the text an unknown run gets, and ``GET`` answers 404;
4. S cancels B in the middle of p2's turn (``CancelRun``): ``DiscussionCancelled`` with
   ``cancelledBy`` U; then R runs, and S receives every event of it;
5. S asks to cancel R once it completed: refused (it has finished). L, another device of
   U, subscribed to R and unsubscribed before it started: it receives none of its events.
   C, a chat-hub device of U, saw both runs as tasks.

What S received is compared with ``GET /discussions/{runId}``: every ``contentHash`` is the
SHA-256 of the fetched turn's text, the ``Verdict`` is the fetched verdict, ``verdictHash``
the SHA-256 of its canonical JSON. Nothing waits on the wall clock: events are awaited;
"received nothing more" is proven behind a fence; REST is polled (bounded) only for the
state no event announces (B running before R is started).

The REST routes' refusals are checked in ``tests/discussion/test_rest.py``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.discussion import (
    canonical,
    expected_targets,
    get,
    of_run,
    of_task,
    rest,
    sha256,
    shape,
    start_run,
    start_server,
    subscribers,
    token,
    wait_state,
)
from tests.support.server import ServerProcess

pytestmark = pytest.mark.conformance

TOPIC = "Should cities ban cars from their centres?"
FIELDS = {
    "DiscussionStarted": {"runId", "topic", "panelists", "judge"},
    "RoundStarted": {"runId", "roundNumber"},
    "TurnStarted": {"runId", "panelistId", "roundNumber"},
    "TurnCompleted": {"runId", "panelistId", "contentHash", "durationMs"},
    "JudgeStarted": {"runId"},
    "Verdict": {"runId", "verdict"},
    "DiscussionCompleted": {"runId", "verdictHash", "durationMs"},
    "DiscussionCancelled": {"runId", "cancelledBy"},
}
NOT_YOURS = "Discussion run '{}' does not exist or is not yours."


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    started = start_server(tmp_path_factory.mktemp("discussion"))
    try:
        yield started
    finally:
        started.stop()


# -- subscribers ------------------------------------------------------------------------------


# -- the story --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def story(server: ServerProcess) -> dict[str, Any]:
    user, stranger = f"ana-{uuid.uuid4().hex[:8]}", f"vic-{uuid.uuid4().hex[:8]}"
    u, v, w = token(server, user), token(server, stranger), token(server, user, "globex")
    seen: dict[str, Any] = {"user": user}
    with subscribers(server.hub_url("discussion")) as devices:
        for device, bearer in (("S", u), ("L", u), ("V", v), ("W", w)):
            devices.open(device, bearer)
        devices.open("C", u, server.hub_url("chat"))  # a chat device of U: runs are tasks
        # 1. B takes the only worker; S watches p2 (slow) begin its turn.
        b = start_run(server, u, ["sophon", "slow"], 3, topic="Tea or coffee?")["runId"]
        devices.call("S", "Subscribe", b)
        devices.wait("S", "TurnStarted", runId=b, panelistId="p2")
        wait_state(server, u, b, "running")
        # 2. R waits behind B; S subscribes before it starts.
        posted = start_run(server, u, ["sophon", "sophon", "sophon"], 2, topic=TOPIC)
        r = posted["runId"]
        seen["snapshot"] = devices.call("S", "Subscribe", r)
        # L, another device of U, subscribes and leaves again before R starts.
        devices.call("L", "Subscribe", r)
        seen["unsubscribed"] = devices.invoke("L", "Unsubscribe", r)
        # 3. Strangers.
        unknown = f"run_{uuid.uuid4().hex}"
        seen["refusals"] = {
            "V": devices.refused("V", "Subscribe", r),
            "W": devices.refused("W", "Subscribe", r),
            "unknown": devices.refused("V", "Subscribe", unknown),
            "V-cancel": devices.refused("V", "CancelRun", {"runId": r}),
            "unknown-cancel": devices.refused("V", "CancelRun", {"runId": unknown}),
        }
        seen["rest_404"] = {name: rest(server, bearer, "GET", f"/discussions/{run_id}")
                            for name, bearer, run_id in (("V", v, r), ("W", w, r),
                                                         ("unknown", u, unknown))}
        seen["unknown"] = unknown
        # 4. B is cancelled in the middle of p2's turn; then R runs.
        seen["cancel"] = devices.invoke("S", "CancelRun", {"runId": b})
        seen["cancelled"] = devices.wait("S", "DiscussionCancelled", runId=b)
        devices.wait("S", "DiscussionCompleted", runId=r)
        # 5. Too late to cancel R.
        seen["late_cancel"] = devices.refused("S", "CancelRun", {"runId": r})
        seen["events"] = devices.events("S", "L", "V", "W", "C")
    seen.update(b=b, r=r, posted=posted,
                run=get(server, u, f"/discussions/{r}"),
                blocker=get(server, u, f"/discussions/{b}"),
                listed=get(server, u, "/discussions"),
                stranger_list=get(server, v, "/discussions"))
    session = seen["run"]["sessionId"]
    seen["messages"] = get(server, u, f"/sessions/{session}/messages")
    return seen


def test_discussion_subscriber_receives_the_exact_sequence_of_three_panelists_two_rounds(
    story: dict[str, Any],
) -> None:
    events = of_run(story["events"]["S"], story["r"])
    assert [shape(e) for e in events] == expected_targets(3, 2)
    for event in events:
        assert set(event["payload"]) == FIELDS[event["target"]], event
    started = events[0]["payload"]
    assert started == {"runId": story["r"], "topic": TOPIC, "judge": "sophon",
                       "panelists": [{"panelistId": f"p{n}", "agentId": "sophon"}
                                     for n in (1, 2, 3)]}


def test_discussion_hashes_match_the_fetched_texts_and_verdict(story: dict[str, Any]) -> None:
    events = of_run(story["events"]["S"], story["r"])
    run = story["run"]
    assert run["state"] == "completed" and run["error"] is None, run
    completed = [e["payload"] for e in events if e["target"] == "TurnCompleted"]
    turns = run["turns"]
    assert [(t["roundNumber"], t["panelistId"]) for t in turns] == [
        (r, f"p{s}") for r in (1, 2) for s in (1, 2, 3)]
    for announced, turn in zip(completed, turns, strict=True):
        assert announced["panelistId"] == turn["panelistId"]
        assert announced["contentHash"] == turn["contentHash"] == sha256(turn["content"])
        assert announced["durationMs"] == turn["durationMs"]
        assert turn["content"].startswith("[rule-based turn]"), turn
    verdict = next(e["payload"] for e in events if e["target"] == "Verdict")["verdict"]
    done = events[-1]["payload"]
    assert verdict == run["verdict"]
    assert done["verdictHash"] == run["verdictHash"] == sha256(canonical(run["verdict"]))
    assert done["durationMs"] == run["durationMs"]
    assert set(verdict["scores"]) == {"p1", "p2", "p3"}
    assert all(0 <= score <= 10 for score in verdict["scores"].values())
    assert verdict["winner"] in (None, "p1", "p2", "p3")
    assert verdict["summary"].startswith("[rule-based verdict]")


def test_discussion_subscribe_returns_the_run_as_rest_does(story: dict[str, Any]) -> None:
    snapshot, posted = story["snapshot"], story["posted"]
    assert snapshot["state"] == "queued" and snapshot["turns"] == [], snapshot
    assert snapshot == posted  # nothing happened between the POST and the Subscribe
    assert set(snapshot) == set(story["run"])


def test_discussion_cancel_run_mid_turn_names_who_cancelled(story: dict[str, Any]) -> None:
    b, user = story["b"], story["user"]
    assert (story["cancel"]["ok"], story["cancel"]["value"]) == (True, None), story["cancel"]
    assert story["cancelled"] == {"runId": b, "cancelledBy": user}
    events = of_run(story["events"]["S"], b)
    targets = [e["target"] for e in events]
    assert targets[-1] == "DiscussionCancelled" and targets.count("DiscussionCancelled") == 1
    # p2 had begun and not finished its turn: the last thing before the cancel.
    assert shape(events[-2]) == ("TurnStarted", "p2", 1), targets
    assert not {"DiscussionCompleted", "DiscussionFailed", "Verdict"} & set(targets)
    blocker = story["blocker"]
    assert (blocker["state"], blocker["cancelledBy"]) == ("cancelled", user), blocker
    assert [t["panelistId"] for t in blocker["turns"]] == ["p1"], blocker["turns"]
    assert blocker["verdict"] is None and blocker["verdictHash"] is None


def test_discussion_subscribe_refused_for_another_user_as_for_an_unknown_run(
    story: dict[str, Any],
) -> None:
    r, unknown = story["r"], story["unknown"]
    refusals = story["refusals"]
    for name in ("V", "W", "V-cancel"):
        assert NOT_YOURS.format(r) in refusals[name], refusals[name]
        assert refusals[name].replace(r, "?") == refusals[
            "unknown-cancel" if "cancel" in name else "unknown"].replace(unknown, "?")
    for response in story["rest_404"].values():
        assert response.status_code == 404, response.text
    bodies = {name: response.json()["error"].replace(r, "?").replace(unknown, "?")
              for name, response in story["rest_404"].items()}
    assert len(set(bodies.values())) == 1, bodies
    for device in ("V", "W"):
        assert story["events"][device] == [], story["events"][device]
    assert story["stranger_list"] == []


def test_discussion_run_is_a_task_to_the_chat_hub(story: dict[str, Any]) -> None:
    """A chat device of the user (not joined to any session: it gets the user's task
    events) sees each run as a task: queued, started, then the verdict's reply and
    completed, or cancelled; never a StreamChunk (the turns are the discussion hub's)."""
    events = story["events"]["C"]
    run = of_task(events, story["r"])
    assert [e["target"] for e in run] == ["TaskQueued", "TaskStarted", "ReceiveMessage",
                                          "TaskCompleted"], run
    assert run[0]["payload"] == {"taskId": story["r"], "sessionId": story["run"]["sessionId"]}
    assert run[2]["payload"]["content"] == story["messages"][1]["content"]
    blocker = [e["target"] for e in events if e["payload"].get("taskId") == story["b"]]
    assert blocker == ["TaskQueued", "TaskStarted", "TaskCancelled"], blocker
    assert not [e for e in events if e["target"] in ("StreamChunk", "AgentStatus")]


def test_discussion_unsubscribe_stops_the_events(story: dict[str, Any]) -> None:
    assert (story["unsubscribed"]["ok"], story["unsubscribed"]["value"]) == (True, None)
    assert story["events"]["L"] == [], story["events"]["L"]


def test_discussion_cancel_of_a_finished_run_is_refused(story: dict[str, Any]) -> None:
    assert f"Discussion run '{story['r']}' has already finished (completed)." in story[
        "late_cancel"]


def test_discussion_verdict_is_the_sessions_reply_and_runs_are_listed(
    story: dict[str, Any],
) -> None:
    messages = story["messages"]
    assert [(m["role"], m["taskId"]) for m in messages] == [
        ("user", None), ("assistant", story["r"])], messages
    assert messages[0]["content"] == TOPIC
    assert messages[1]["content"].endswith(story["run"]["verdict"]["summary"])
    listed = story["listed"]
    assert [run["runId"] for run in listed] == [story["r"], story["b"]]
    assert listed[0]["turns"] is None and listed[0]["verdict"] == story["run"]["verdict"]
