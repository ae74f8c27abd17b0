// Voisnap hubs' error codes with the official client (issue 17, docs/hubs/voisnap.md, "Errors").
//
// input: {connections: [step...], chunkMs}, each step opening one connection, in order:
//   {url, token, stop?: index (stop that earlier connection first),
//    messages?: [content, or a whole {content, metadata} request...],
//    audioFile?: JSON list of base64 chunks to SendAudio at chunkMs pace,
//    until: {code?: "X" (an Error with it), close?: true, userFinals?: n}, keep?: true}
// A step waits for SessionStarted or an Error, runs, then waits for `until`; without
// `keep` its connection is stopped at the end of the step.
// result: {steps: [{events: [[name, payload, ms]...], closeError, invokeErrors, state}]}

import { readFileSync } from "node:fs";
import { Inbox, buildConnection, describe, input, run, signalR } from "./lib.mjs";

const WAIT_MS = input.waitMs ?? 30000;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const NAMES = ["SessionStarted", "SessionEnded", "ConversationEnded", "Error", "MessageReceived",
               "TypingIndicator", "Transcript", "AudioInterrupted", "UserTyping"];

async function open(step) {
    const connection = buildConnection({ url: step.url, token: step.token, keepAliveMs: 1000 });
    const inbox = new Inbox();
    const t0 = Date.now();
    const record = { events: [], closeError: undefined, invokeErrors: [] };
    for (const name of NAMES) {
        connection.on(name, (payload) => {
            record.events.push([name, payload, Date.now() - t0]);
            inbox.push(name);
        });
    }
    const closed = new Promise((resolve) => connection.onclose((error) => {
        record.closeError = error ? describe(error) : null;
        inbox.push("closed");
        resolve();
    }));
    try {
        await connection.start();
    } catch (error) {
        // A refusal at connect: the Error event, then a Close while start() was
        // finishing, which the client reports as start()'s failure.
        record.startError = describe(error);
        if (record.closeError === undefined) record.closeError = record.startError;
        inbox.push("closed");
    }
    await inbox.waitFor(() => record.events.some(([n]) => n === "SessionStarted" || n === "Error"),
        WAIT_MS, "SessionStarted or Error");
    return { connection, inbox, record, closed };
}

function done(record, until) {
    const events = record.events;
    if (until.code && !events.some(([n, p]) => n === "Error" && p.code === until.code)) return false;
    if (until.close && record.closeError === undefined) return false;
    const finals = events.filter(([n, p]) => n === "Transcript" && p.role === "user" && p.isFinal);
    if (until.userFinals && finals.length < until.userFinals) return false;
    if (until.replies && events.filter(([n, p]) => n === "MessageReceived" && p.isFinal).length < until.replies) return false;
    return true;
}

/** Wait for the step's condition; a timeout is recorded (the test then fails
 * on what was seen) rather than thrown. */
async function until(inbox, record, condition = {}) {
    try {
        await inbox.waitFor(() => done(record, condition), WAIT_MS, JSON.stringify(condition));
    } catch (error) {
        record.timedOut = describe(error);
    }
}

run(async () => {
    const opened = [];
    for (const step of input.connections) {
        if (step.stop !== undefined) {
            await opened[step.stop].connection.stop();
            await opened[step.stop].closed;
        }
        const current = await open(step);
        opened.push(current);
        const { connection, inbox, record } = current;
        for (const content of step.messages ?? []) {
            try {
                // A string is the content; an object is the whole request.
                const request = typeof content === "string" ? { content } : content;
                await connection.invoke("SendMessageAsync", request);
            } catch (error) {
                record.invokeErrors.push(describe(error));
            }
        }
        if (step.audioFile) {
            const subject = new signalR.Subject();
            connection.send("SendAudio", subject).catch((e) => record.invokeErrors.push(describe(e)));
            const chunks = JSON.parse(readFileSync(step.audioFile, "utf8"));
            for (const chunk of chunks) {
                if (record.closeError !== undefined) break;
                subject.next(chunk);
                await sleep(input.chunkMs ?? 100);
            }
            await until(inbox, record, step.until);
            if (record.closeError === undefined) subject.complete();
        }
        await until(inbox, record, step.until);
        if (!step.keep && record.closeError === undefined) {
            await connection.stop();
        }
        record.state = connection.state;
    }
    for (const { connection } of opened) await connection.stop();
    return { steps: opened.map(({ record }) => record) };
});
