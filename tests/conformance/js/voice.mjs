// StreamAudio with the official client (issue 16, docs/voice.md), as the seed shows it:
// connection.send("StreamAudio", sessionId, subject, mode), chunks pushed with
// subject.next(base64), the end with subject.complete().
//
// Input: {url (the chat hub), token, audioFile: a JSON file {auto: [chunks], manual: [chunks]}}.
// Result: what the speaking device and a second device of the session saw.

import { readFileSync } from "node:fs";
import { Inbox, buildConnection, input, run, signalR, start } from "./lib.mjs";

const WAIT_MS = 30000;
const VOICE = ["VoiceInterimTranscript", "VoiceFinalTranscript", "VoiceError"];

function device() {
    const connection = buildConnection({ url: input.url, token: input.token });
    const events = new Inbox();
    for (const target of [...VOICE, "ReceiveMessage", "TaskQueued", "TaskCompleted"]) {
        connection.on(target, (payload) => events.push({ target, payload }));
    }
    return { connection, events };
}

function count(events, target) {
    return events.items.filter((e) => e.target === target).length;
}

async function speak(connection, sessionId, chunks, mode) {
    const subject = new signalR.Subject();
    await connection.send("StreamAudio", sessionId, subject, mode);
    for (const chunk of chunks) subject.next(chunk);
    subject.complete();
}

run(async () => {
    const audio = JSON.parse(readFileSync(input.audioFile, "utf8"));
    const speaker = device();
    const other = device();
    await start(speaker.connection);
    await start(other.connection);
    const { sessionId, taskId } = await speaker.connection.invoke("SendMessage", {
        sessionId: null, agentId: "sophon", content: "hello", channelId: "webchat",
        attachments: [], isStreaming: true,
    });
    await speaker.events.waitFor(
        (e) => e.target === "TaskCompleted" && e.payload.taskId === taskId, WAIT_MS, "hello's reply",
    );
    await other.connection.invoke("JoinSession", sessionId);

    await speak(speaker.connection, sessionId, audio.auto, "Auto");
    const finals = () => speaker.events.items.filter((e) => e.target === "VoiceFinalTranscript");
    await speaker.events.waitFor(() => finals().length >= 2, WAIT_MS, "two final transcripts");
    const repliesTo = () => other.events.items.filter(
        (e) => e.target === "ReceiveMessage" && e.payload.role === "assistant",
    );
    await other.events.waitFor(() => repliesTo().length >= 2, WAIT_MS, "two replies on the other device");

    await speak(speaker.connection, sessionId, audio.manual, "Manual");
    await speaker.events.waitFor(() => finals().length >= 3, WAIT_MS, "the Manual final transcript");

    const result = {
        sessionId,
        interims: count(speaker.events, "VoiceInterimTranscript"),
        finals: finals().map((e) => e.payload),
        voiceErrors: count(speaker.events, "VoiceError"),
        otherVoiceEvents: other.events.items.filter((e) => VOICE.includes(e.target)).length,
        otherReplies: repliesTo().length,
    };
    await speaker.connection.stop();
    await other.connection.stop();
    return result;
});
