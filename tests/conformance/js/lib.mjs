// Shared by the conformance scenarios: input, output, and building a connection
// with the official @microsoft/signalr client.
//
// Contract with tests/support/node.py:
// - input: one JSON object in the CONFORMANCE_INPUT environment variable
//   ({url, token, transport, protocol, keepAliveMs, timeoutMs, ...scenario fields});
// - output: one JSON object per line on stdout, {"event": "...", ...}; the last
//   one is {"event": "result", ...} on success or {"event": "error", ...};
// - commands from the test arrive as lines on stdin (waitForLine("go"));
// - the client logs at Warning to stderr, so stdout carries only JSON lines.

import { createRequire } from "node:module";
import * as readline from "node:readline";

const require = createRequire(import.meta.url);
export const signalR = require("@microsoft/signalr");
// The WebSocket library the client itself uses under Node (its dependency).
const WebSocket = createRequire(require.resolve("@microsoft/signalr"))("ws");

export const input = JSON.parse(process.env.CONFORMANCE_INPUT ?? "{}");

export function emit(event, fields = {}) {
    process.stdout.write(JSON.stringify({ event, ...fields }) + "\n");
}

/** An error's text as the client reports it. */
export function describe(error) {
    return error instanceof Error ? error.message : String(error);
}

// -- time limits ------------------------------------------------------------------------------

export function withTimeout(promise, ms, what) {
    let timer;
    const timeout = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
    });
    return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Run a scenario: its return value becomes the "result" line; any failure an
 * "error" line and exit code 1; the whole run is bounded by input.timeoutMs. */
export async function run(scenario) {
    const limit = input.timeoutMs ?? 20000;
    try {
        const result = await withTimeout(scenario(), limit, "the scenario to finish");
        emit("result", result ?? {});
        process.exit(0);
    } catch (error) {
        emit("error", { error: describe(error), stack: error?.stack });
        process.exit(1);
    }
}

// -- commands on stdin ------------------------------------------------------------------------

const lines = [];
const lineWaiters = [];
readline.createInterface({ input: process.stdin }).on("line", (line) => {
    const waiter = lineWaiters.shift();
    if (waiter) waiter(line.trim());
    else lines.push(line.trim());
});

/** Wait for the test to write `expected` on stdin. */
export async function waitForLine(expected, ms = 20000) {
    const line = lines.length
        ? lines.shift()
        : await withTimeout(new Promise((resolve) => lineWaiters.push(resolve)), ms, `"${expected}" on stdin`);
    if (line !== expected) throw new Error(`expected "${expected}" on stdin, got "${line}"`);
}

// -- observing ------------------------------------------------------------------------------

/** Values pushed by callbacks, awaited one at a time with a time limit. */
export class Inbox {
    constructor() {
        this.items = [];
        this._waiters = [];
    }

    push = (value) => {
        this.items.push(value);
        this._waiters.splice(0).forEach((wake) => wake());
    };

    /** The first item matching `predicate`, waiting for it if it has not come yet. */
    async waitFor(predicate, ms, what) {
        const deadline = Date.now() + ms;
        for (;;) {
            const item = this.items.find(predicate);
            if (item !== undefined) return item;
            const left = deadline - Date.now();
            if (left <= 0) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
            await new Promise((wake) => {
                const timer = setTimeout(wake, left);
                this._waiters.push(() => { clearTimeout(timer); wake(); });
            });
        }
    }
}

/** A WebSocket class for the client's `WebSocket` option that records every
 * hub message the server sends (parsed JSON records) and every socket error,
 * so a scenario can check the wire, not only what the client API shows. */
export function tappedWebSocket(tap) {
    return class TappedWebSocket extends WebSocket {
        constructor(...args) {
            super(...args);
            // EventEmitter listeners: ws 7 drops every addEventListener() listener
            // of an event when the client assigns its on<event> property.
            this.on("message", (data) => {
                if (typeof data !== "string") return;
                for (const record of data.split("\x1e")) {
                    if (record) tap.received.push(JSON.parse(record));
                }
            });
            this.on("error", (error) => tap.errors.push(error.message));
        }
    };
}

export function newTap() {
    return { received: new Inbox(), errors: [] };
}

// -- connections ------------------------------------------------------------------------------

const stderrLogger = {
    log(level, message) {
        if (level >= signalR.LogLevel.Warning) {
            process.stderr.write(`[signalr ${signalR.LogLevel[level]}] ${message}\n`);
        }
    },
};

function hubProtocol(name) {
    if (name === "messagepack") {
        const { MessagePackHubProtocol } = require("@microsoft/signalr-protocol-msgpack");
        return new MessagePackHubProtocol();
    }
    return new signalR.JsonHubProtocol();
}

/**
 * A HubConnection to `url` (default: input.url).
 * - token: a string, a function returning one, or null for no accessTokenFactory;
 * - transport: "WebSockets" | "ServerSentEvents" | "LongPolling" (default input.transport);
 * - protocol: "json" | "messagepack" (default input.protocol);
 * - reconnectDelays: an array for withAutomaticReconnect, or undefined for none;
 * - keepAliveMs: how often the client pings when idle (default input.keepAliveMs,
 *   else the client's 15 s); keep it under half the server's client_timeout;
 * - skipNegotiation, tap (from newTap()).
 */
export function buildConnection({
    url = input.url,
    token = input.token,
    transport = input.transport ?? "WebSockets",
    protocol = input.protocol ?? "json",
    reconnectDelays,
    keepAliveMs = input.keepAliveMs,
    skipNegotiation = false,
    tap,
} = {}) {
    const options = {
        transport: signalR.HttpTransportType[transport],
        skipNegotiation,
    };
    if (token !== null && token !== undefined) {
        options.accessTokenFactory = typeof token === "function" ? token : () => token;
    }
    if (tap) options.WebSocket = tappedWebSocket(tap);
    let builder = new signalR.HubConnectionBuilder()
        .withUrl(url, options)
        .withHubProtocol(hubProtocol(protocol))
        .configureLogging(stderrLogger);
    if (reconnectDelays) builder = builder.withAutomaticReconnect(reconnectDelays);
    const connection = builder.build();
    if (keepAliveMs) connection.keepAliveIntervalInMilliseconds = keepAliveMs;
    return connection;
}

/** Connections named after the test's tokens ({name: token}), each started and
 * recording the payloads of its Receive calls. */
export async function openClients(tokens) {
    const clients = {};
    for (const [name, token] of Object.entries(tokens)) {
        const connection = buildConnection({ token });
        const received = [];
        connection.on("Receive", (payload) => received.push(payload));
        clients[name] = { connection: await start(connection), received };
    }
    return clients;
}

/** Every client round-trips an Echo. A fan-out hands its message to the
 * members' sockets before the sender's invocation completes, and each socket
 * delivers in order, so once this resolves every client has received whatever
 * was sent to it before: no fixed wait is needed to prove that nothing came. */
export async function fence(clients) {
    await Promise.all(Object.values(clients).map(({ connection }) => connection.invoke("Echo", "fence")));
}

export function receivedBy(clients) {
    return Object.fromEntries(Object.entries(clients).map(([name, { received }]) => [name, received]));
}

export async function stopAll(clients) {
    await Promise.all(Object.values(clients).map(({ connection }) => connection.stop()));
}

/** Start a connection, bounded in time. */
export async function start(connection, ms = 10000) {
    await withTimeout(connection.start(), ms, "start()");
    return connection;
}

/** A closed-connection promise: resolves with the onclose error text (or null). */
export function closed(connection) {
    return new Promise((resolve) => {
        connection.onclose((error) => resolve(error ? describe(error) : null));
    });
}
