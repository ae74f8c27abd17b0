// /v1/stream (seed 004) with the plain `ws` client: JSON over a WebSocket, no SignalR.
//
// Input: {wsUrl, token, resumeToken, badToken, prompt, followUp}.
// 1. Connect with the subprotocol Bearer.<token>: the server must select it
//    (ws.protocol echoes it); task.submit (mode "session"), and collect every
//    event until the task's task:done; seed 004's invariants on that log.
// 2. A second connection with ?token=<resumeToken>: session.resume; the
//    replay is framed by session.replay_start / session.replay_end, carries
//    the user's prompt and the turn's events exactly as they were streamed
//    live; then a session.turn on that connection streams live events, only
//    after session.replay_end.
// 3. A bad token (and no token at all): an UNAUTHORIZED error frame, then the
//    close code 4001.
// 4. The client closes both connections (1000): how each close ended
//    ({code, ms}, or {timedOut} after input.closeWaitMs), for the test to judge.
// Result: {closes, protocol, live, replay, followUp, unauthorized}; every log
// is the list of events as received, for the test to check again.

import { createRequire } from "node:module";
import { Inbox, input, run, withTimeout } from "./lib.mjs";

const require = createRequire(import.meta.url);
const WebSocket = require("ws");

const WAIT_MS = 15000;
const UNAUTHENTICATED = 4001;

/** One /v1/stream connection: every event it receives, in order, and how it closed. */
class StreamSocket {
    constructor(url, protocols) {
        this.events = new Inbox();
        this.ws = new WebSocket(url, protocols);
        this.ws.on("message", (data, isBinary) => {
            if (isBinary || typeof data !== "string") {
                this.events.push({ type: "<binary frame>", data: String(data) });
                return;
            }
            this.events.push(JSON.parse(data));
        });
        this.closed = new Promise((resolve) => {
            this.ws.on("close", (code, reason) => resolve({ code, reason: String(reason) }));
        });
        this.opened = new Promise((resolve, reject) => {
            this.ws.on("open", resolve);
            this.ws.on("error", reject);
            this.ws.on("unexpected-response", (_, response) =>
                reject(new Error(`the upgrade was answered with HTTP ${response.statusCode}`)));
        });
    }

    static async open(url, protocols) {
        const socket = new StreamSocket(url, protocols);
        await withTimeout(socket.opened, WAIT_MS, `the WebSocket to ${url} to open`);
        return socket;
    }

    send(frame) {
        this.ws.send(JSON.stringify(frame));
    }

    /** Every event received so far, once one matches `predicate` (waiting for it). */
    async until(predicate, what) {
        await this.events.waitFor(predicate, WAIT_MS, what);
        return this.events.items;
    }

    /** Start the closing handshake (1000); `closed` settles when the TCP connection ends. */
    close() {
        this.closeStarted = Date.now();
        this.ws.close(1000, "done");
    }

    /** How the client's close ended: {code, ms}, or {timedOut, ms} after `ms`. */
    async closeOutcome(ms) {
        const timedOut = new Promise((resolve) => setTimeout(() => resolve(null), ms).unref());
        const closed = await Promise.race([this.closed, timedOut]);
        const took = Date.now() - this.closeStarted;
        if (closed === null) this.ws.terminate();
        return closed === null ? { timedOut: true, ms: took } : { ...closed, ms: took };
    }
}

// -- seed 004's invariants --------------------------------------------------------------------

function check(condition, message) {
    if (!condition) throw new Error(message);
}

const TASK_EVENTS = new Set([
    "task:token", "task:tool_use", "task:tool_result", "task:ask_user", "turn.done",
    "turn.continuing", "task:done", "task:failed", "user.message",
]);

/** The seed's invariants on one task's events (in the order received). */
function checkTask(taskId, events) {
    let end = null;
    let turnDone = null;
    const tokens = [];
    const openCalls = [];
    for (const event of events) {
        check(end === null, `${event.type} of ${taskId} after its ${end?.type}`);
        switch (event.type) {
            case "task:token":
                check(turnDone === null, `a task:token of ${taskId} after its turn.done`);
                check(typeof event.text === "string", `a task:token without text: ${JSON.stringify(event)}`);
                tokens.push(event.text);
                break;
            case "task:tool_use":
                openCalls.push(event.tool);
                break;
            case "task:tool_result": {
                check(openCalls.length > 0, `a tool_result without its tool_use: ${JSON.stringify(event)}`);
                const tool = openCalls.shift();
                check(tool === event.tool, `a tool_result of ${event.tool} for a tool_use of ${tool}`);
                break;
            }
            case "turn.done":
                check(turnDone === null, `two turn.done for ${taskId}`);
                turnDone = event;
                break;
            case "task:done":
            case "task:failed":
                end = event;
                break;
        }
    }
    if (end?.type === "task:done") {
        check(openCalls.length === 0, `${taskId} ended with tool calls unanswered: ${openCalls}`);
    }
    if (turnDone !== null) {
        const joined = tokens.join("");
        check(joined === turnDone.result_text,
            `${taskId}: the tokens ${JSON.stringify(joined)} do not join to result_text `
            + JSON.stringify(turnDone.result_text));
    }
}

/** Every task event names its session and task; the invariants per task. */
function checkInvariants(events, sessionId) {
    const byTask = new Map();
    for (const event of events) {
        check(typeof event.type === "string", `an event without a type: ${JSON.stringify(event)}`);
        check(event.type !== "error", `an error event: ${JSON.stringify(event)}`);
        if (!TASK_EVENTS.has(event.type)) continue;
        check(event.session_id === sessionId, `an event of another session: ${JSON.stringify(event)}`);
        check(typeof event.task_id === "string", `a task event without task_id: ${JSON.stringify(event)}`);
        if (!byTask.has(event.task_id)) byTask.set(event.task_id, []);
        byTask.get(event.task_id).push(event);
    }
    for (const [taskId, taskEvents] of byTask) checkTask(taskId, taskEvents);
    return byTask;
}

const isDone = (taskId) => (event) =>
    (event.type === "task:done" || event.type === "task:failed") && (!taskId || event.task_id === taskId);

// -- the scenario -------------------------------------------------------------------------------

async function unauthorized(url, protocols) {
    const socket = new StreamSocket(url, protocols);
    await withTimeout(socket.opened, WAIT_MS, "the unauthenticated WebSocket to open");
    const { code, reason } = await withTimeout(socket.closed, WAIT_MS, "the 4001 close");
    const events = socket.events.items;
    check(code === UNAUTHENTICATED, `closed with ${code} (${reason}), not ${UNAUTHENTICATED}`);
    check(events.length === 1 && events[0].type === "error" && events[0].code === "UNAUTHORIZED"
        && typeof events[0].message === "string",
    `not exactly one UNAUTHORIZED error before the close: ${JSON.stringify(events)}`);
    return { code, protocol: socket.ws.protocol, events };
}

run(async () => {
    const streamUrl = `${input.wsUrl}/v1/stream`;

    // 1. subprotocol auth, a task streamed to its end.
    const subprotocol = `Bearer.${input.token}`;
    const first = await StreamSocket.open(streamUrl, [subprotocol]);
    check(first.ws.protocol === subprotocol,
        `the server selected the subprotocol ${JSON.stringify(first.ws.protocol)}, not Bearer.<token>`);
    first.send({ type: "task.submit", mode: "session", prompt: input.prompt });
    const live = [...await first.until(isDone(), "the task's task:done")];
    const ready = live[0];
    check(ready?.type === "session.ready", `the first event is not session.ready: ${JSON.stringify(ready)}`);
    for (const field of ["session_id", "container_id", "container_name", "profile_id"]) {
        check(typeof ready[field] === "string" && ready[field], `session.ready without ${field}`);
    }
    const sessionId = ready.session_id;
    const byTask = checkInvariants(live, sessionId);
    check(byTask.size === 1, `one task expected, got ${[...byTask.keys()]}`);
    const [taskId] = byTask.keys();
    const done = live[live.length - 1];
    check(done.type === "task:done" && done.status === "completed", `the task did not complete: ${JSON.stringify(done)}`);
    check(live.some((e) => e.type === "turn.done"), "no turn.done before task:done");
    first.close();

    // 2. ?token= auth, session.resume, then a live turn.
    const second = await StreamSocket.open(`${streamUrl}?token=${encodeURIComponent(input.resumeToken)}`);
    check(!second.ws.protocol, `a subprotocol was selected though none was offered: ${second.ws.protocol}`);
    second.send({ type: "session.resume", session_id: sessionId });
    const replayLog = [...await second.until((e) => e.type === "session.replay_end", "session.replay_end")];
    check(replayLog[0].type === "session.replay_start" && replayLog[0].session_id === sessionId,
        `the replay does not begin with session.replay_start: ${JSON.stringify(replayLog[0])}`);
    const end = replayLog[replayLog.length - 1];
    check(end.session_id === sessionId, `session.replay_end of another session: ${JSON.stringify(end)}`);
    const replayed = replayLog.slice(1, -1);
    check(replayed.every((e) => !e.type.startsWith("session.replay")), "a replay inside the replay");
    check(replayed.every((e) => e.session_id === sessionId), "an event of another session in the replay");
    check(replayed[0]?.type === "user.message" && replayed[0].text === input.prompt
        && replayed[0].task_id === taskId,
    `the replay does not start with the user's prompt: ${JSON.stringify(replayed[0])}`);
    checkInvariants(replayed, sessionId);
    const liveOfTask = JSON.stringify(live.filter((e) => e.task_id === taskId));
    const replayedOfTask = JSON.stringify(replayed.filter((e) => e.task_id === taskId && e.type !== "user.message"));
    check(liveOfTask === replayedOfTask,
        `the replayed turn differs from the live one:\nlive   ${liveOfTask}\nreplay ${replayedOfTask}`);

    second.send({ type: "session.turn", session_id: sessionId, prompt: input.followUp });
    const all = await second.until((e) => isDone()(e) && e.task_id !== taskId,
        "the follow-up's task:done");
    const followUp = all.slice(replayLog.length);
    checkInvariants(followUp, sessionId);
    const followTasks = new Set(followUp.filter((e) => e.task_id).map((e) => e.task_id));
    check(followTasks.size === 1 && !followTasks.has(taskId),
        `the follow-up is not one new task: ${[...followTasks]}`);
    check(followUp.some((e) => e.type === "turn.done"), "the follow-up has no turn.done");
    check(followUp[followUp.length - 1].status === "completed", "the follow-up did not complete");
    second.close();

    // 3. bad and missing tokens.
    const badProtocol = `Bearer.${input.badToken}`;
    const bad = await unauthorized(streamUrl, [badProtocol]);
    const badQuery = await unauthorized(`${streamUrl}?token=${encodeURIComponent(input.badToken)}`);
    const missing = await unauthorized(streamUrl);

    // 4. the closing handshakes the client started (RFC 6455 7.1.1: after the
    // Close frames, "the server MUST close the underlying TCP connection
    // immediately"; ws's 'close' event waits for it).
    const closeWaitMs = input.closeWaitMs ?? 5000;
    const closes = await Promise.all([first.closeOutcome(closeWaitMs), second.closeOutcome(closeWaitMs)]);

    return {
        closes,
        protocol: first.ws.protocol,
        sessionId,
        taskId,
        live,
        replay: replayLog,
        followUp,
        unauthorized: { bad, badQuery, missing },
    };
});
