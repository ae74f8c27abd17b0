// Devices on /hubs/chat, driven by the test one command at a time.
//
// Each device is one HubConnection of the official client (a user's laptop,
// phone, ...), with a handler for every chat event of seed 000 ("Chat hub",
// "SessionNotification") and a tap that records the hub messages on its wire.
// The test writes one JSON command per line on stdin; each command answers
// with a line whose event names it ("invoked:<id>", ...), so that the test can
// wait for that answer with wait_for(). Commands run concurrently: a pending
// "await" does not hold up an "invoke".
//
//   {op: "open", device, token}                   -> "opened:<device>" {connectionId}
//   {op: "invoke", id, device, method, args}      -> "invoked:<id>" {ok, value} or {ok, error}
//   {op: "await", id, device, target, match, count, ms}
//        the count-th event `target` whose payload has the fields of `match`
//        (an array in `match` stands for any of its values)
//                                                 -> "awaited:<id>" {payload, index}
//   {op: "fence", id, devices}                    -> "fenced:<id>"
//        each device round-trips an invocation: whatever the server sent it
//        before has arrived (see fence() in lib.mjs)
//   {op: "log", id, device}                       -> "log:<id>" {events, wire}
//        events: [{target, payload}] as the client's handlers saw them;
//        wire: the hub messages its transport carried, in order, Pings left out
//   {op: "stop", device}                          -> "stopped:<device>"
//   {op: "end"}                                   -> the result line, {}
// With input.reconnectDelays, devices reconnect automatically and say so:
//   "reconnecting:<device>" {error}, then "reconnected:<device>" {connectionId}.
// Input: {url, keepAliveMs, transport, protocol, reconnectDelays?, devices?: {name: token}}
// (the devices are opened before "ready").

import { Inbox, buildConnection, describe, emit, input, newTap, readLine, run, start } from "./lib.mjs";

const CHAT_EVENTS = [
    "TaskQueued",
    "TaskStarted",
    "AgentStatus",
    "StreamChunk",
    "ToolCallStarted",
    "ToolCallCompleted",
    "ReceiveMessage",
    "TaskCompleted",
    "TaskFailed",
    "TaskCancelled",
    "SessionUpdated",
    "SessionNotification",
];
const PING = 6;
const DEFAULT_WAIT_MS = 10000;

const devices = {};

async function open(name, token) {
    const tap = newTap();
    const connection = buildConnection({ token, tap, reconnectDelays: input.reconnectDelays });
    const events = new Inbox();
    for (const target of CHAT_EVENTS) {
        connection.on(target, (payload) => events.push({ target, payload }));
    }
    connection.onreconnecting((error) =>
        emit(`reconnecting:${name}`, { error: error ? describe(error) : null }),
    );
    connection.onreconnected((connectionId) => emit(`reconnected:${name}`, { connectionId }));
    devices[name] = { connection, events, tap };
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

async function invoke({ device: name, method, args = [] }) {
    try {
        const value = await device(name).connection.invoke(method, ...args);
        return { ok: true, value: value ?? null };
    } catch (error) {
        return { ok: false, error: describe(error) };
    }
}

async function fence(names) {
    // LeaveSession of a session nobody joined changes nothing and always completes.
    await Promise.all(names.map((name) => device(name).connection.invoke("LeaveSession", "fence")));
}

function log(name) {
    const { events, tap } = device(name);
    return { events: events.items, wire: tap.received.items.filter((record) => record.type !== PING) };
}

async function handle(command) {
    switch (command.op) {
        case "open": {
            const connectionId = await open(command.device, command.token);
            return emit(`opened:${command.device}`, { connectionId });
        }
        case "invoke":
            return emit(`invoked:${command.id}`, await invoke(command));
        case "await":
            return emit(`awaited:${command.id}`, await awaitEvent(command));
        case "fence":
            await fence(command.devices);
            return emit(`fenced:${command.id}`);
        case "log":
            return emit(`log:${command.id}`, log(command.device));
        case "stop":
            await device(command.device).connection.stop();
            return emit(`stopped:${command.device}`);
        default:
            throw new Error(`unknown command ${JSON.stringify(command)}`);
    }
}

run(async () => {
    for (const [name, token] of Object.entries(input.devices ?? {})) await open(name, token);
    const ids = Object.entries(devices).map(([name, { connection }]) => [name, connection.connectionId]);
    emit("ready", { devices: Object.fromEntries(ids) });
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
