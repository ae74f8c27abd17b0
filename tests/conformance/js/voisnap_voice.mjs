// Voisnap's VoiceHub with the official client (issue 17, docs/hubs/voisnap.md,
// "VoiceHub"): the caller's audio up as a client-to-server stream
// (connection.send("SendAudio", subject)), the agent's speech down as a
// server-to-client stream (connection.stream("ReceiveAudio")), transcripts as
// Transcript events, barge-in as AudioInterrupted.
//
// Input: {url, token, protocol?, audioFile: JSON {first: [chunks], second: [chunks],
//         silence: [chunks]}, chunkMs, bargeIn: bool}
// The first utterance is sent, then silence; once the agent's reply starts
// playing (its first audio chunk), the second utterance is sent at real-time
// pace (a barge-in if bargeIn, else only after the first reply's audio ended).
// Result: every event and audio chunk with its arrival time.

import { readFileSync } from "node:fs";
import { Inbox, buildConnection, input, run, signalR, start, closed } from "./lib.mjs";

const WAIT_MS = 40000;
// The largest sample magnitude of a chunk: 16-bit samples, or mu-law bytes decoded roughly.
function loudness(bytes) {
    let most = 0;
    if (input.encoding === "mulaw") {
        for (const byte of bytes) most = Math.max(most, 127 - (byte & 0x7f));
        return most * 256;
    }
    for (let i = 0; i + 1 < bytes.length; i += 2) most = Math.max(most, Math.abs(bytes.readInt16LE(i)));
    return most;
}
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

run(async () => {
    const audio = JSON.parse(readFileSync(input.audioFile, "utf8"));
    const connection = buildConnection({ url: input.url, token: input.token });
    const inbox = new Inbox();
    const events = [];
    const t0 = Date.now();
    for (const name of ["SessionStarted", "SessionEnded", "Transcript", "AudioInterrupted",
                        "Error", "ConversationEnded"]) {
        connection.on(name, (payload) => {
            const entry = { name, payload, at: Date.now() - t0 };
            events.push(entry);
            inbox.push(entry);
        });
    }
    const ended = closed(connection);
    await start(connection);
    const started = await inbox.waitFor((e) => e.name === "SessionStarted", 10000, "SessionStarted");

    const chunks = [];
    connection.stream("ReceiveAudio").subscribe({
        next: (chunk) => {
            const bytes = Buffer.from(chunk, "base64");
            const entry = { name: "audio", bytes: bytes.length, loudness: loudness(bytes), at: Date.now() - t0 };
            chunks.push(entry);
            inbox.push(entry);
        },
        error: (error) => inbox.push({ name: "audioError", error: String(error) }),
        complete: () => inbox.push({ name: "audioComplete" }),
    });

    const subject = new signalR.Subject();
    const sending = connection.send("SendAudio", subject);
    const paced = async (list) => {
        for (const chunk of list) {
            subject.next(chunk);
            await sleep(input.chunkMs);
        }
    };
    const userFinals = () => events.filter((e) => e.name === "Transcript" && e.payload.role === "user" && e.payload.isFinal);
    const agentFinals = () => events.filter((e) => e.name === "Transcript" && e.payload.role === "agent" && e.payload.isFinal);
    const agentAny = () => events.filter((e) => e.name === "Transcript" && e.payload.role === "agent");
    await sending;
    await paced(audio.first);
    const speechEnd = Date.now() - t0;
    const silence = paced(audio.silence);
    await inbox.waitFor(() => agentAny().length >= 1, WAIT_MS, "the agent's first words");
    const firstAudio = await inbox.waitFor((e) => e.name === "audio", WAIT_MS, "the first reply's audio");
    await silence;
    if (!input.bargeIn) {
        await inbox.waitFor(() => agentFinals().length >= 1, WAIT_MS, "the agent's first reply");
        // Let the first reply play out: no audio for a second.
        for (;;) {
            const last = chunks[chunks.length - 1].at;
            if (Date.now() - t0 - last > 1000) break;
            await sleep(100);
        }
    }
    const secondStart = Date.now() - t0;
    await paced(audio.second);
    await paced(audio.silence);
    // The second reply: the agent's words after the barge-in (the interrupted
    // reply says no more), or after the second utterance began.
    let marker = secondStart;
    if (input.bargeIn) {
        marker = (await inbox.waitFor((e) => e.name === "AudioInterrupted", WAIT_MS, "AudioInterrupted")).at;
    }
    await inbox.waitFor(() => agentFinals().some((e) => e.at >= marker), WAIT_MS, "the agent's second reply");
    const secondReplyAt = agentAny().find((e) => e.at >= marker).at;
    await inbox.waitFor((e) => e.name === "audio" && e.at >= secondReplyAt, WAIT_MS, "the second reply's audio");
    subject.complete();
    await connection.invoke("EndSessionAsync");
    const closeError = await ended;
    return {
        sessionId: started.payload.sessionId,
        started: started.payload,
        events,
        chunks,
        speechEnd,
        firstAudioAt: firstAudio.at,
        secondStart,
        closeError,
        userFinals: userFinals().length,
    };
});
