// Browser voice calls on voisnap's WebRtcHub, in headless Chromium (Debian's
// /usr/bin/chromium, driven with playwright-core; no browser is downloaded).
//
// Input (CONFORMANCE_INPUT): {url, token, audioFile, pagePort, hangUp, waitMs,
//   mode, calls, timeoutMs, connectMs, endWaitMs, rmsThreshold, steps, userFinals, chromium}
// - url: the hub's URL with its query (".../voisnap/hubs/webrtc?agentId=sophon");
// - audioFile: a 16-bit PCM WAV file Chromium plays once as the microphone;
// - pagePort: the port of the page's own HTTP server on 127.0.0.1 (the page's
//   origin, http://127.0.0.1:<pagePort>, is the one voisnap is given with
//   --cors-origin); 0 or absent: a free port, printed as {"event": "page", port};
// - mode: "call" (default), "bad" (hostile signalling) or "loopback" (no
//   server: two peer connections in the page), see webrtc_page.html;
// - calls: how many calls one after another (default 1), each in a fresh page.
// Output: {"event": "page", port, origin}, one {"event": "call", index, ...summary}
// per call, then {"event": "result", calls: [summaries]}; {"event": "error", error}
// on a failure.

import * as fs from "node:fs";
import * as http from "node:http";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";
import { input, emit, describe, withTimeout } from "./lib.mjs";

const require = createRequire(import.meta.url);
const { chromium } = require("playwright-core");

const HERE = path.dirname(fileURLToPath(import.meta.url));
const PAGE = "webrtc_page.html";
const BUNDLE = "node_modules/@microsoft/signalr/dist/browser/signalr.min.js";
// The only files the page server serves.
const FILES = {
    [`/${PAGE}`]: { file: path.join(HERE, PAGE), type: "text/html; charset=utf-8" },
    [`/${BUNDLE}`]: { file: path.join(HERE, BUNDLE), type: "text/javascript; charset=utf-8" },
};

function serve(port) {
    const server = http.createServer((request, response) => {
        const pathname = new URL(request.url, "http://127.0.0.1").pathname;
        if (pathname === "/favicon.ico") {
            response.writeHead(204).end();
            return;
        }
        const entry = FILES[pathname];
        if (!entry) {
            response.writeHead(404, { "Content-Type": "text/plain" }).end("not found");
            return;
        }
        fs.readFile(entry.file, (error, body) => {
            if (error) {
                response.writeHead(500, { "Content-Type": "text/plain" }).end(describe(error));
                return;
            }
            response.writeHead(200, { "Content-Type": entry.type, "Cache-Control": "no-store" }).end(body);
        });
    });
    return new Promise((resolve, reject) => {
        server.once("error", reject);
        server.listen(port, "127.0.0.1", () => resolve(server));
    });
}

function chromiumArgs(audioFile) {
    const args = [
        "--no-sandbox",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        "--allow-loopback-in-peer-connection",
        "--disable-features=WebRtcHideLocalIpsWithMdns",
        "--autoplay-policy=no-user-gesture-required",
    ];
    if (audioFile) args.push(`--use-file-for-fake-audio-capture=${audioFile}%noloop`);
    return args;
}

async function main(state) {
    const audioFile = input.audioFile ? path.resolve(input.audioFile) : null;
    if (audioFile && !fs.existsSync(audioFile)) throw new Error(`no such audio file: ${audioFile}`);
    const mode = input.mode ?? "call";
    if (mode !== "loopback" && (!input.url || !input.token)) throw new Error(`mode ${mode} needs url and token`);

    state.server = await serve(input.pagePort ?? 0);
    const port = state.server.address().port;
    const origin = `http://127.0.0.1:${port}`;
    emit("page", { port, origin });

    state.browser = await chromium.launch({
        executablePath: input.chromium ?? "/usr/bin/chromium",
        headless: true,
        args: chromiumArgs(audioFile),
        timeout: 20000,
    });
    const context = await state.browser.newContext({ permissions: ["microphone"] });
    const params = {
        mode,
        url: input.url,
        token: input.token,
        hangUp: input.hangUp ?? "end",
        waitMs: input.waitMs ?? 30000,
        connectMs: input.connectMs,
        endWaitMs: input.endWaitMs,
        rmsThreshold: input.rmsThreshold,
        steps: input.steps,
        quietMs: input.quietMs,
        userFinals: input.userFinals,
    };
    const calls = [];
    for (let index = 0; index < (input.calls ?? 1); index += 1) {
        const page = await context.newPage();
        page.on("console", (message) => {
            if (["error", "warning"].includes(message.type())) {
                process.stderr.write(`[page ${index} ${message.type()}] ${message.text()}\n`);
            }
        });
        page.on("pageerror", (error) => process.stderr.write(`[page ${index} pageerror] ${describe(error)}\n`));
        await page.goto(`${origin}/${PAGE}`, { waitUntil: "load", timeout: 15000 });
        await page.waitForFunction(() => typeof window.runCall === "function" && typeof signalR === "object",
                                   null, { timeout: 10000 });
        const summary = await page.evaluate((p) => window.runCall(p), params);
        emit("call", { index, ...summary });
        calls.push(summary);
        await page.close();
    }
    return { calls };
}

async function cleanup(state) {
    const steps = [];
    if (state.browser) steps.push(state.browser.close().catch(() => {}));
    if (state.server) {
        steps.push(new Promise((resolve) => {
            state.server.close(() => resolve());
            state.server.closeAllConnections?.();
        }));
    }
    await withTimeout(Promise.all(steps), 5000, "the browser and the page server to close").catch((error) =>
        process.stderr.write(`cleanup: ${describe(error)}\n`));
}

const state = { server: null, browser: null };
let outcome;
try {
    const limit = input.timeoutMs ?? 60000;
    outcome = { ok: true, value: await withTimeout(main(state), limit, "the scenario to finish") };
} catch (error) {
    outcome = { ok: false, error };
}
await cleanup(state);
if (outcome.ok) {
    emit("result", outcome.value);
    process.exit(0);
} else {
    emit("error", { error: describe(outcome.error), stack: outcome.error?.stack });
    process.exit(1);
}
