// Chat through an agent backed by an OpenAI-compatible endpoint: one SendMessage,
// the whole stream, the final message. Input: {url, token, agentId, content, keepAliveMs}.
import { buildConnection, input, run } from "./lib.mjs";

run(async () => {
    const connection = buildConnection();
    const events = [];
    let deltas = "";
    const completed = new Promise((resolve, reject) => {
        connection.on("TaskCompleted", resolve);
        connection.on("TaskFailed", (failure) => reject(new Error(`TaskFailed: ${failure.error}`)));
    });
    for (const name of ["TaskQueued", "TaskStarted", "AgentStatus", "ReceiveMessage", "TaskCompleted"]) {
        connection.on(name, (payload) => events.push({ name, payload }));
    }
    connection.on("StreamChunk", (chunk) => { deltas += chunk.delta; events.push({ name: "StreamChunk", payload: chunk }); });
    await connection.start();
    const sent = await connection.invoke("SendMessage", {
        sessionId: null, agentId: input.agentId, content: input.content, isStreaming: true,
    });
    await completed;
    await connection.stop();
    return { sent, deltas, events };
});
