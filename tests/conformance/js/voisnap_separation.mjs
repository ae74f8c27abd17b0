// A Sophon client and a Voisnap client of the same user and agent on one server
// (issue 17): neither sees the other's events.
//
// input: {sophonUrl (/hubs/chat), voisnapUrl (/voisnap/hubs/chat?agentId=sophon), token}
// result: {sophon: [[event, payload]...], voisnap: [[event, payload]...]}

import { Inbox, buildConnection, input, run, start } from "./lib.mjs";

const SOPHON = ["TaskQueued", "TaskStarted", "StreamChunk", "ReceiveMessage", "TaskCompleted",
                "SessionNotification", "SessionUpdated", "AgentStatus", "TaskFailed"];
const VOISNAP = ["SessionStarted", "MessageReceived", "TypingIndicator", "Error"];

function client(url, names) {
    const connection = buildConnection({ url, token: input.token });
    const inbox = new Inbox();
    const events = [];
    for (const name of names) {
        connection.on(name, (payload) => { events.push([name, payload]); inbox.push(name); });
    }
    return { connection, inbox, events };
}

run(async () => {
    const sophon = client(input.sophonUrl, SOPHON);
    const voisnap = client(input.voisnapUrl, VOISNAP);
    await start(sophon.connection);
    await start(voisnap.connection);
    await voisnap.inbox.waitFor((name) => name === "SessionStarted", 10000, "SessionStarted");
    // Voisnap first: its whole reply, then the Sophon one.
    await voisnap.connection.invoke("SendMessageAsync", { content: "hello from voisnap" });
    await voisnap.inbox.waitFor(() => voisnap.events.some(([n, p]) => n === "MessageReceived" && p.isFinal),
        20000, "the Voisnap reply");
    const { taskId } = await sophon.connection.invoke("SendMessage", {
        sessionId: null, agentId: "sophon", content: "hello from sophon", isStreaming: true,
    });
    await sophon.inbox.waitFor(() => sophon.events.some(([n, p]) => n === "TaskCompleted" && p.taskId === taskId),
        20000, "the Sophon reply");
    // A second Voisnap reply after the Sophon one: events are in order, so a
    // Sophon event that reached the Voisnap client would be in by now.
    await voisnap.connection.invoke("SendMessageAsync", { content: "and again" });
    await voisnap.inbox.waitFor(() => voisnap.events.filter(([n, p]) => n === "MessageReceived" && p.isFinal).length >= 2,
        20000, "the second Voisnap reply");
    await sophon.connection.stop();
    await voisnap.connection.stop();
    return { sophon: sophon.events, voisnap: voisnap.events, sophonTask: taskId };
});
