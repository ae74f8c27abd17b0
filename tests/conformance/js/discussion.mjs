// Subscribers of the discussion hub (docs/hubs/discussion.md), driven by the test one
// command at a time, like approvals_devices.mjs.
//
// Each device is one HubConnection of the official client to /hubs/discussion
// (input.url), or to the hub at the command's `url` (the chat hub, to see a run as
// a task), with a handler for every event of the discussion hub and for the chat
// hub's task events, recorded as {target, payload} in the order the client's
// handlers saw them. The test writes one
// JSON command per line on stdin; each answers with a line whose event names it.
// Commands run concurrently: a pending "await" does not hold up an "invoke".
//
//   {op: "open", device, token, url?}             -> "opened:<device>" {connectionId}
//   {op: "invoke", id, device, method, args}      -> "invoked:<id>" {ok, value} or {ok, error}
//   {op: "await", id, device, target, match, ms}  -> "awaited:<id>" {payload, index}
//        the first event `target` whose payload has the fields of `match`
//   {op: "fence", id, devices}                    -> "fenced:<id>"
//        each device round-trips an invocation of a method the hub does not have: the
//        server answers it after whatever it had sent that device before
//   {op: "log", id, device}                       -> "log:<id>" {events}
//   {op: "end"}                                   -> the result line, {}
// Input: {url, keepAliveMs, transport, protocol}.

import { Inbox, buildConnection, describe, emit, input, readLine, run, start } from "./lib.mjs";

const EVENTS = [
    "DiscussionStarted", "RoundStarted", "TurnStarted", "TurnCompleted", "JudgeStarted",
    "Verdict", "DiscussionCompleted", "DiscussionFailed", "DiscussionCancelled",
    // the chat hub's task events (docs/hubs/chat.md)
    "TaskQueued", "TaskStarted", "AgentStatus", "StreamChunk", "ReceiveMessage",
    "TaskCompleted", "TaskFailed", "TaskCancelled",
];
const FENCE = "NoHubHasThisMethod";

const devices = {};

async function open({ device: name, token, url }) {
    const connection = buildConnection({ url: url ?? input.url, token });
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

function matches(payload, fields) {
    return Object.entries(fields ?? {}).every(([key, value]) => payload?.[key] === value);
}

async function awaitEvent({ device: name, target, match, ms = 10000 }) {
    const { events } = device(name);
    const what = `${name}: ${target} ${JSON.stringify(match ?? {})}`;
    const hit = await events.waitFor((e) => e.target === target && matches(e.payload, match), ms, what);
    return { payload: hit.payload, index: events.items.indexOf(hit) };
}

async function settle(promise) {
    try {
        return { ok: true, value: (await promise) ?? null };
    } catch (error) {
        return { ok: false, error: describe(error) };
    }
}

async function handle(command) {
    switch (command.op) {
        case "open":
            return emit(`opened:${command.device}`, { connectionId: await open(command) });
        case "invoke": {
            const { connection } = device(command.device);
            return emit(`invoked:${command.id}`, await settle(connection.invoke(command.method, ...command.args)));
        }
        case "await":
            return emit(`awaited:${command.id}`, await awaitEvent(command));
        case "fence":
            await Promise.all(command.devices.map((name) => settle(device(name).connection.invoke(FENCE))));
            return emit(`fenced:${command.id}`);
        case "log":
            return emit(`log:${command.id}`, { events: device(command.device).events.items });
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
        handle(command).catch((error) => {
            failures.push(error);
            emit("error", { error: `${command.op}: ${describe(error)}` });
        });
    }
    await Promise.all(Object.values(devices).map(({ connection }) => connection.stop()));
    if (failures.length) throw failures[0];
    return {};
});
