// Devices of one user (or several users) on the chat, approvals, tasks and
// notifications hubs,
// driven by the test one command at a time, like chat_devices.mjs.
//
// Each device is one HubConnection of the official client to one hub
// (input.urls[hub]), with a handler for every event of the three hubs
// (docs/hubs/chat.md, approvals.md, tasks.md, notifications.md), recorded as
// {target, payload}.
// The test writes one JSON command per line on stdin; each command answers
// with a line whose event names it, so that the test can wait for that answer
// with wait_for(). Commands run concurrently: a pending "await" does not hold
// up an "invoke".
//
//   {op: "open", device, hub, token, transport?, protocol?}
//                                                 -> "opened:<device>" {connectionId}
//   {op: "invoke", id, device, method, args}      -> "invoked:<id>" {ok, value} or {ok, error}
//   {op: "race", id, calls: [{device, method, args}]}
//        every call is started in the same tick (the devices' sends leave
//        together), then awaited               -> "raced:<id>" {answers: [{ok, value | error}]}
//   {op: "await", id, device, target, match, count, ms}
//        the count-th event `target` whose payload has the fields of `match`
//        (an array in `match` stands for any of its values)
//                                                 -> "awaited:<id>" {payload, index}
//   {op: "fence", id, devices}                    -> "fenced:<id>"
//        each device round-trips an invocation of a method no hub has: the
//        server answers it with an error Completion, written after whatever it
//        had sent that device before, so all of that has arrived
//   {op: "log", id, device}                       -> "log:<id>" {events}
//   {op: "stop", device}                          -> "stopped:<device>"
//   {op: "end"}                                   -> the result line, {}
// Input: {urls: {chat, approvals, tasks, notifications}, keepAliveMs, transport, protocol}.

import { Inbox, buildConnection, describe, emit, input, readLine, run, start } from "./lib.mjs";

const EVENTS = [
    // chat (docs/hubs/chat.md)
    "TaskQueued", "TaskStarted", "AgentStatus", "StreamChunk", "ToolCallStarted",
    "ToolCallCompleted", "ReceiveMessage", "TaskCompleted", "TaskFailed", "TaskCancelled",
    "SessionUpdated", "SessionNotification",
    // approvals (docs/hubs/approvals.md)
    "ApprovalRequested", "ApprovalResolved", "InfoRequested", "InfoResolved",
    // notifications (docs/hubs/notifications.md)
    "InsightCardAdded", "InsightCardDismissed", "WorkflowRunStarted", "WorkflowRunCompleted",
    "WorkflowRunFailed", "CronFired", "CronFailed", "DocumentUploaded", "DocumentIndexed",
    "NodeOnline", "NodeOffline", "SystemAnnouncement", "LicenseWarning",
];
const DEFAULT_WAIT_MS = 10000;
const FENCE = "NoHubHasThisMethod";

const devices = {};

async function open({ device: name, hub, token, transport, protocol }) {
    const url = input.urls?.[hub];
    if (!url) throw new Error(`no URL for the hub "${hub}"`);
    const connection = buildConnection({ url, token, transport, protocol });
    const events = new Inbox();
    for (const target of EVENTS) {
        connection.on(target, (payload) => events.push({ target, payload }));
    }
    devices[name] = { connection, events };
    await start(connection);
    return connection.connectionId;
}

function device(name) {
    const found = devices[name];
    if (!found) throw new Error(`no device named "${name}"`);
    return found;
}

/** Whether the payload has the fields of `fields`; an array value means "one of". */
function matches(payload, fields) {
    return Object.entries(fields ?? {}).every(([key, value]) =>
        Array.isArray(value) ? value.includes(payload?.[key]) : payload?.[key] === value,
    );
}

async function awaitEvent({ device: name, target, match, count = 1, ms = DEFAULT_WAIT_MS }) {
    const { events } = device(name);
    const what = `${name}: ${count} x ${target} ${JSON.stringify(match ?? {})}`;
    const hits = () => events.items.filter((e) => e.target === target && matches(e.payload, match));
    const hit = await events.waitFor((e) => e === hits()[count - 1], ms, what);
    return { payload: hit.payload, index: events.items.indexOf(hit) };
}

async function settle(promise) {
    try {
        const value = await promise;
        return { ok: true, value: value ?? null };
    } catch (error) {
        return { ok: false, error: describe(error) };
    }
}

function invoke({ device: name, method, args = [] }) {
    return settle(device(name).connection.invoke(method, ...args));
}

async function race(calls) {
    const pending = calls.map((call) => invoke(call)); // all sent before any answer is awaited
    return { answers: await Promise.all(pending) };
}

async function fence(names) {
    await Promise.all(names.map((name) => settle(device(name).connection.invoke(FENCE))));
}

async function handle(command) {
    switch (command.op) {
        case "open": {
            const connectionId = await open(command);
            return emit(`opened:${command.device}`, { connectionId });
        }
        case "invoke":
            return emit(`invoked:${command.id}`, await invoke(command));
        case "race":
            return emit(`raced:${command.id}`, await race(command.calls));
        case "await":
            return emit(`awaited:${command.id}`, await awaitEvent(command));
        case "fence":
            await fence(command.devices);
            return emit(`fenced:${command.id}`);
        case "log":
            return emit(`log:${command.id}`, { events: device(command.device).events.items });
        case "stop":
            await device(command.device).connection.stop();
            return emit(`stopped:${command.device}`);
        default:
            throw new Error(`unknown command ${JSON.stringify(command)}`);
    }
}

run(async () => {
    emit("ready");
    const failures = [];
    for (;;) {
        const command = JSON.parse(await readLine(input.timeoutMs ?? 60000));
        if (command.op === "end") break;
        // A failed command is reported, and ends the scenario with an error line.
        handle(command).catch((error) => {
            failures.push(error);
            emit("error", { error: `${command.op}: ${describe(error)}` });
        });
    }
    await Promise.all(Object.values(devices).map(({ connection }) => connection.stop()));
    if (failures.length) throw failures[0];
    return {};
});
