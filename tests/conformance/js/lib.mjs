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
import * as http from "node:http";
import * as https from "node:https";
import * as readline from "node:readline";

const require = createRequire(import.meta.url);
export const signalR = require("@microsoft/signalr");
// The WebSocket and EventSource libraries the client itself uses under Node (its dependencies).
const clientRequire = createRequire(require.resolve("@microsoft/signalr"));
const WebSocket = clientRequire("ws");
const EventSource = clientRequire("eventsource");

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

/** The next line the test writes on stdin, whatever it is. */
export async function readLine(ms = 20000) {
    return lines.length
        ? lines.shift()
        : await withTimeout(new Promise((resolve) => lineWaiters.push(resolve)), ms, "a line on stdin");
}

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
            tap.webSockets.push(String(args[0]));
            // EventEmitter listeners: ws 7 drops every addEventListener() listener
            // of an event when the client assigns its on<event> property.
            this.on("message", (data) => {
                if (typeof data !== "string") {
                    tap.frames.binary += 1;
                    return;
                }
                tap.frames.text += 1;
                pushRecords(tap, data);
            });
            this.on("error", (error) => tap.errors.push(error.message));
        }
    };
}

function pushRecords(tap, text) {
    for (const record of text.split("\x1e")) {
        if (record) tap.received.push(JSON.parse(record));
    }
}

/** An EventSource class for the client's `EventSource` option that counts the
 * streams opened and records the hub messages of their events. */
export function tappedEventSource(tap) {
    return class TappedEventSource extends EventSource {
        constructor(url, init) {
            super(url, init);
            tap.eventSources.push(String(url));
        }

        // eventsource 2 dispatches through emit(); its on<event> setters
        // drop other listeners, so the events are seen here instead.
        emit(type, event, ...rest) {
            if (type === "message") {
                tap.events += 1;
                pushRecords(tap, event.data);
            }
            return super.emit(type, event, ...rest);
        }
    };
}

/** An HttpClient (negotiate, polls, POSTs, DELETE) that records every request:
 * {method, url, status, binary, bytes, error}; text poll bodies go to `received`. */
export function tappedHttpClient(tap, inner) {
    return new (class TappedHttpClient extends signalR.HttpClient {
        async send(request) {
            const entry = { method: request.method, url: request.url, status: null };
            tap.requests.push(entry);
            try {
                const response = await inner.send(request);
                entry.status = response.statusCode;
                entry.binary = response.content instanceof ArrayBuffer;
                entry.bytes = entry.binary ? response.content.byteLength : (response.content ?? "").length;
                const isPoll = request.method === "GET" && !request.url.includes("/negotiate");
                if (isPoll && !entry.binary && response.content) pushRecords(tap, response.content);
                return response;
            } catch (error) {
                entry.error = describe(error);
                entry.status = error?.statusCode ?? null;
                throw error;
            }
        }

        getCookieString(url) {
            return inner.getCookieString(url);
        }
    })();
}

/** What a scenario can check the wire with: records received (JSON, on any
 * transport), socket errors, WebSockets opened and their frames by kind,
 * event streams opened and their events, and every HTTP request. */
export function newTap() {
    return {
        received: new Inbox(),
        errors: [],
        webSockets: [],
        frames: { text: 0, binary: 0 },
        eventSources: [],
        events: 0,
        requests: [],
    };
}

/** The tap's counts, for a result line (records left out). */
export function tapSummary(tap) {
    const requests = tap.requests.map(({ method, url, status, binary, bytes, error }) => ({
        method,
        path: new URL(url).pathname,
        status,
        binary,
        bytes,
        error,
    }));
    return {
        webSockets: tap.webSockets.length,
        frames: tap.frames,
        eventSources: tap.eventSources.length,
        events: tap.events,
        requests,
    };
}

/** The class name of the transport a started connection uses
 * ("WebSocketTransport", "ServerSentEventsTransport", "LongPollingTransport"). */
export function transportName(connection) {
    return connection.connection?.transport?.constructor?.name ?? null;
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
 * - transport: "WebSockets" | "ServerSentEvents" | "LongPolling" (default input.transport),
 *   or "all": no transport option, the client's own choice and fallback;
 * - protocol: "json" | "messagepack" (default input.protocol);
 * - reconnectDelays: an array for withAutomaticReconnect, or undefined for none;
 * - keepAliveMs: how often the client pings when idle (default input.keepAliveMs,
 *   else the client's 15 s); keep it under half the server's client_timeout;
 * - statefulReconnect: withStatefulReconnect() (default input.statefulReconnect);
 * - skipNegotiation, tap (from newTap(): it sees WebSockets, event streams and HTTP requests).
 */
export function buildConnection({
    url = input.url,
    token = input.token,
    transport = input.transport ?? "WebSockets",
    protocol = input.protocol ?? "json",
    reconnectDelays,
    keepAliveMs = input.keepAliveMs,
    skipNegotiation = false,
    statefulReconnect = input.statefulReconnect ?? false,
    tap,
} = {}) {
    const options = { skipNegotiation };
    if (transport !== "all") options.transport = signalR.HttpTransportType[transport];
    if (token !== null && token !== undefined) {
        options.accessTokenFactory = typeof token === "function" ? token : () => token;
    }
    if (tap) {
        options.WebSocket = tappedWebSocket(tap);
        options.EventSource = tappedEventSource(tap);
        options.httpClient = tappedHttpClient(tap, new signalR.DefaultHttpClient(stderrLogger));
    }
    let builder = new signalR.HubConnectionBuilder()
        .withUrl(url, options)
        .withHubProtocol(hubProtocol(protocol))
        .configureLogging(stderrLogger);
    if (reconnectDelays) builder = builder.withAutomaticReconnect(reconnectDelays);
    if (statefulReconnect) builder = builder.withStatefulReconnect();
    const connection = builder.build();
    if (keepAliveMs) connection.keepAliveIntervalInMilliseconds = keepAliveMs;
    return connection;
}

/** Connections named after the test's tokens ({name: token}), each started and
 * recording the payloads of its Receive calls. */
export async function openClients(tokens, options = {}) {
    const clients = {};
    for (const [name, token] of Object.entries(tokens)) {
        const connection = buildConnection({ ...options, token });
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

// -- one TCP connection per request (for the cluster tests) -----------------------------------

/**
 * An HttpClient for the client's `httpClient` option that opens a NEW TCP
 * connection for every request (node's http module with `agent: false`), so
 * that a round-robin proxy in front of several processes spreads negotiate,
 * polls, POSTs and DELETEs over them, as a load balancer without sticky
 * sessions would. (Under Node the default client uses global fetch, whose
 * keep-alive pool would send them all down one connection to one process.)
 *
 * It behaves as the client's own FetchHttpClient does: X-Requested-With and
 * the request's headers (Authorization, X-SignalR-User-Agent), a Content-Type
 * for a body, `responseType: "arraybuffer"` answered with an ArrayBuffer,
 * signalR.HttpError for a status outside 2xx, signalR.AbortError when
 * `request.abortSignal` fires, signalR.TimeoutError after `request.timeout` ms.
 * `onRequest` (optional) is told of each request: {method, url}.
 */
export class FreshConnectionHttpClient extends signalR.HttpClient {
    constructor(onRequest) {
        super();
        this._onRequest = onRequest;
    }

    send(request) {
        if (request.abortSignal && request.abortSignal.aborted) {
            return Promise.reject(new signalR.AbortError());
        }
        if (!request.method) return Promise.reject(new Error("No method defined."));
        if (!request.url) return Promise.reject(new Error("No url defined."));
        this._onRequest?.({ method: request.method, url: request.url });
        return new Promise((resolve, reject) => sendFresh(request, resolve, reject));
    }
}

function requestBody(request, headers) {
    const content = request.content;
    if (content === undefined || content === null || content === "") return undefined;
    let body;
    if (content instanceof ArrayBuffer || content?.constructor?.name === "ArrayBuffer") {
        body = Buffer.from(content);
        headers["Content-Type"] = "application/octet-stream";
    } else if (ArrayBuffer.isView(content)) {
        body = Buffer.from(content.buffer, content.byteOffset, content.byteLength);
        headers["Content-Type"] = "application/octet-stream";
    } else {
        body = Buffer.from(String(content), "utf8");
        headers["Content-Type"] = "text/plain;charset=UTF-8";
    }
    headers["Content-Length"] = String(body.length);
    return body;
}

function sendFresh(request, resolve, reject) {
    const url = new URL(request.url);
    const headers = { "X-Requested-With": "XMLHttpRequest", ...request.headers };
    const body = requestBody(request, headers);
    const module = url.protocol === "https:" ? https : http;
    let settled = false;
    let timer = null;
    const finish = (callback, value) => {
        if (settled) return;
        settled = true;
        if (timer !== null) clearTimeout(timer);
        if (request.abortSignal) request.abortSignal.onabort = null;
        callback(value);
    };
    const outgoing = module.request(url, { method: request.method, headers, agent: false }, (response) => {
        const chunks = [];
        response.on("data", (chunk) => chunks.push(chunk));
        response.on("error", (error) => finish(reject, error));
        response.on("aborted", () => finish(reject, new Error("the response was cut short")));
        response.on("end", () => {
            const buffer = Buffer.concat(chunks);
            const status = response.statusCode;
            const statusText = response.statusMessage ?? "";
            if (status < 200 || status > 299) {
                finish(reject, new signalR.HttpError(buffer.toString("utf8") || statusText, status));
                return;
            }
            const content = request.responseType === "arraybuffer"
                ? buffer.buffer.slice(buffer.byteOffset, buffer.byteOffset + buffer.byteLength)
                : buffer.toString("utf8");
            finish(resolve, new signalR.HttpResponse(status, statusText, content));
        });
    });
    outgoing.on("error", (error) => finish(reject, error));
    if (request.abortSignal) {
        request.abortSignal.onabort = () => {
            finish(reject, new signalR.AbortError());
            outgoing.destroy();
        };
    }
    if (request.timeout) {
        timer = setTimeout(() => {
            finish(reject, new signalR.TimeoutError());
            outgoing.destroy();
        }, request.timeout);
    }
    outgoing.end(body);
}

/** The hub protocol named "json" or "messagepack". */
export function hubProtocolNamed(name) {
    return hubProtocol(name);
}
