// Clients of a voisnap cluster (several processes behind one address), driven
// by the test one JSON command per line on stdin, like chat_devices.mjs.
//
// Every client is a HubConnection of the official client whose HTTP requests
// each open a new TCP connection (FreshConnectionHttpClient in lib.mjs), so a
// round-robin proxy in front of the processes sends negotiate, polls, POSTs
// and DELETEs wherever its turn says. Each client records the events of its
// `targets` (default ["Receive"]) as {target, payload}, answers Prompt(question)
// with {client, question} (a client result), and reports its reconnects.
//
//   {op: "open", client, token, url?, transport?, protocol?, targets?,
//    reconnectDelays?, statefulReconnect?}      -> "opened:<client>" {connectionId, transport}
//        (a failed start is "opened:<client>" {error})
//   {op: "invoke", id, client, method, args}    -> "invoked:<id>" {ok, value | error, ms}
//   {op: "await", id, client, target?, payload?, match?, count?, ms}
//        the count-th event `target` (default Receive) whose payload equals
//        `payload` (as JSON) or has the fields of `match`
//                                               -> "awaited:<id>" {payload, index}
//        (or, at the deadline, {error, seen: every event of that client})
//   {op: "sendRange", id, client, method, group, from, to}
//        invokes method(group, n) for n = from .. to-1, one after the other
//                                               -> "sent:<id>" {upTo}
//   {op: "log", id, client}                     -> "log:<id>" {events, prompts, connectionId,
//                                                   webSockets, requests, state}
//   {op: "summary", id}                         -> "summary:<id>" {clients: {name: {state,
//        connectionId, reconnecting, reconnected, closed: how many times, connectionIds}}}
//   {op: "stop", client}                        -> "stopped:<client>"
//   {op: "end"}                                 -> the result line, {}
// Reported as they happen: "reconnecting:<client>" {error}, "reconnected:<client>"
// {connectionId}, "closed:<client>" {error}, "prompt:<client>" {question}.
// Input: {url, transport, protocol, keepAliveMs, timeoutMs}: defaults for "open".

import {
    FreshConnectionHttpClient, Inbox, describe, emit, hubProtocolNamed, input, readLine, run,
    signalR, start, tappedWebSocket, transportName,
} from "./lib.mjs";

const DEFAULT_WAIT_MS = 10000;
const clients = {};

const logger = {
    log(level, message) {
        if (level >= signalR.LogLevel.Warning) {
            process.stderr.write(`[signalr ${signalR.LogLevel[level]}] ${message}\n`);
        }
    },
};

function build(name, command, requests, tap) {
    const options = {
        transport: signalR.HttpTransportType[command.transport ?? input.transport ?? "WebSockets"],
        accessTokenFactory: () => command.token,
        httpClient: new FreshConnectionHttpClient((request) => requests.push(request)),
        WebSocket: tappedWebSocket(tap),
    };
    let builder = new signalR.HubConnectionBuilder()
        .withUrl(command.url ?? input.url, options)
        .withHubProtocol(hubProtocolNamed(command.protocol ?? input.protocol ?? "json"))
        .configureLogging(logger);
    const delays = command.reconnectDelays ?? input.reconnectDelays;
    if (delays) builder = builder.withAutomaticReconnect(delays);
    if (command.statefulReconnect ?? input.statefulReconnect) builder = builder.withStatefulReconnect();
    const connection = builder.build();
    const keepAliveMs = command.keepAliveMs ?? input.keepAliveMs;
    if (keepAliveMs) connection.keepAliveIntervalInMilliseconds = keepAliveMs;
    return connection;
}

async function open(command) {
    const name = command.client;
    const requests = [];
    const tap = { received: new Inbox(), errors: [], webSockets: [], frames: { text: 0, binary: 0 } };
    const connection = build(name, command, requests, tap);
    const events = new Inbox();
    const prompts = [];
    for (const target of command.targets ?? ["Receive"]) {
        connection.on(target, (payload) => events.push({ target, payload }));
    }
    connection.on("Prompt", (question) => {
        prompts.push(question);
        emit(`prompt:${name}`, { question });
        return { client: name, question };
    });
    const history = { reconnecting: 0, reconnected: 0, closed: 0, connectionIds: [] };
    connection.onreconnecting((error) => {
        history.reconnecting += 1;
        emit(`reconnecting:${name}`, { error: error ? describe(error) : null });
    });
    connection.onreconnected((connectionId) => {
        history.reconnected += 1;
        history.connectionIds.push(connectionId);
        emit(`reconnected:${name}`, { connectionId });
    });
    connection.onclose((error) => {
        history.closed += 1;
        emit(`closed:${name}`, { error: error ? describe(error) : null });
    });
    clients[name] = { connection, events, prompts, requests, tap, history };
    try {
        await start(connection);
    } catch (error) {
        delete clients[name];
        return emit(`opened:${name}`, { error: describe(error) });
    }
    emit(`opened:${name}`, { connectionId: connection.connectionId, transport: transportName(connection) });
}

function client(name) {
    const found = clients[name];
    if (!found) throw new Error(`no client named "${name}"`);
    return found;
}

async function invoke({ client: name, method, args = [] }) {
    const began = Date.now();
    try {
        const value = await client(name).connection.invoke(method, ...args);
        return { ok: true, value: value ?? null, ms: Date.now() - began };
    } catch (error) {
        return { ok: false, error: describe(error), ms: Date.now() - began };
    }
}

function matches(event, { target = "Receive", payload, match }) {
    if (event.target !== target) return false;
    if (payload !== undefined) return JSON.stringify(event.payload) === JSON.stringify(payload);
    return Object.entries(match ?? {}).every(([key, value]) => event.payload?.[key] === value);
}

async function awaitEvent(command) {
    const { events } = client(command.client);
    const count = command.count ?? 1;
    const what = `${command.client}: ${count} x ${command.target ?? "Receive"} ` +
        JSON.stringify(command.payload ?? command.match ?? {});
    const hits = () => events.items.filter((event) => matches(event, command));
    const hit = await events.waitFor((event) => event === hits()[count - 1], command.ms ?? DEFAULT_WAIT_MS, what);
    return { payload: hit.payload, index: events.items.indexOf(hit) };
}

async function sendRange({ client: name, method, group, from, to }) {
    const { connection } = client(name);
    for (let n = from; n < to; n++) await connection.invoke(method, group, n);
    return { upTo: to };
}

function log(name) {
    const { connection, events, prompts, requests, tap } = client(name);
    return {
        events: events.items,
        prompts,
        connectionId: connection.connectionId,
        state: connection.state,
        webSockets: tap.webSockets.length,
        requests: requests.map(({ method, url }) => ({ method, path: new URL(url).pathname })),
    };
}

function summary() {
    return Object.fromEntries(Object.entries(clients).map(([name, { connection, history }]) => [
        name,
        { state: connection.state, connectionId: connection.connectionId, ...history },
    ]));
}

async function handle(command) {
    switch (command.op) {
        case "open":
            return open(command);
        case "invoke":
            return emit(`invoked:${command.id}`, await invoke(command));
        case "await":
            // A wait that times out is an answer too ({error}): the test decides what it means.
            return emit(`awaited:${command.id}`, await awaitEvent(command).catch((error) => ({
                error: describe(error),
                seen: client(command.client).events.items,
            })));
        case "sendRange":
            return emit(`sent:${command.id}`, await sendRange(command));
        case "log":
            return emit(`log:${command.id}`, log(command.client));
        case "summary":
            return emit(`summary:${command.id}`, { clients: summary() });
        case "stop":
            await client(command.client).connection.stop();
            delete clients[command.client];
            return emit(`stopped:${command.client}`);
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
        // Commands run concurrently; a failed one is reported, and ends the scenario with an error.
        handle(command).catch((error) => {
            failures.push(error);
            emit("error", { error: `${command.op}: ${describe(error)}` });
        });
    }
    await Promise.all(Object.values(clients).map(({ connection }) => connection.stop()));
    if (failures.length) throw failures[0];
    return {};
});
