// Cross-check voisnap's MessagePack codec against the official JS client's own codec,
// @microsoft/signalr-protocol-msgpack (installed for the conformance suite).
//
// Input, one JSON object on stdin:
//   {"parse": ["<hex>", ...],     byte buffers voisnap wrote (length prefixes included)
//    "write": [{<message>}, ...]} messages as the JS client's HubConnection builds them
// Output, one JSON object on stdout:
//   {"parsed": [{"messages": [...], "logs": [...]} | {"error": "..."}, ...],
//    "written": ["<hex>" | {"error": "..."}, ...]}
//
// JSON cannot carry every value the codec sees, so both directions tag them:
// a Uint8Array is {"$bytes": "<hex>"} and a Date is {"$date": "<ISO string>"}.
// `undefined` properties are left out, so a void Completion has no "result" key
// while a Completion whose result is nil has "result": null.

import { createRequire } from "node:module";
import { readFileSync } from "node:fs";

const packageRoot = new URL("../conformance/js/package.json", import.meta.url);
const require = createRequire(packageRoot);

function load(name) {
    try {
        return require(name);
    } catch (error) {
        process.stderr.write(
            `cannot load ${name} from ${packageRoot.pathname}: ${error.message}\n` +
            "run `npm ci` in tests/conformance/js\n");
        process.exit(2);
    }
}

const { MessagePackHubProtocol, VERSION } = load("@microsoft/signalr-protocol-msgpack");

function fromTagged(value) {
    if (Array.isArray(value)) {
        return value.map(fromTagged);
    }
    if (value !== null && typeof value === "object") {
        if ("$bytes" in value) {
            return Uint8Array.from(Buffer.from(value.$bytes, "hex"));
        }
        if ("$date" in value) {
            return new Date(value.$date);
        }
        return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, fromTagged(v)]));
    }
    return value;
}

function toTagged(value) {
    if (value instanceof Uint8Array) {
        return { $bytes: Buffer.from(value).toString("hex") };
    }
    if (value instanceof Date) {
        return { $date: value.toISOString() };
    }
    if (Array.isArray(value)) {
        return value.map(toTagged);
    }
    if (value !== null && typeof value === "object") {
        return Object.fromEntries(
            Object.entries(value).filter(([, v]) => v !== undefined).map(([k, v]) => [k, toTagged(v)]));
    }
    return value;
}

function parse(hex) {
    const logs = [];
    const logger = { log: (level, message) => logs.push(message) };
    // parseMessages insists on an ArrayBuffer, as a WebSocket with binaryType "arraybuffer" gives.
    const buffer = Uint8Array.from(Buffer.from(hex, "hex")).buffer;
    try {
        const messages = new MessagePackHubProtocol().parseMessages(buffer, logger);
        return { messages: messages.map(toTagged), logs };
    } catch (error) {
        return { error: String(error?.message ?? error) };
    }
}

function write(message) {
    try {
        const buffer = new MessagePackHubProtocol().writeMessage(fromTagged(message));
        return Buffer.from(buffer).toString("hex");
    } catch (error) {
        return { error: String(error?.message ?? error) };
    }
}

const input = JSON.parse(readFileSync(0, "utf8"));
const output = {
    version: VERSION,
    parsed: (input.parse ?? []).map(parse),
    written: (input.write ?? []).map(write),
};
process.stdout.write(JSON.stringify(output) + "\n");
