// Voisnap's ChatHub with the official client (issue 17): the seed's flow, and
// the seed's React hook logic (useVoisnapChat, seed 001) run without React.
//
// input: {url, token, steps: [...]}, where url is /voisnap/hubs/chat?agentId=...
// Steps (in order): "send:<text>" sends a message and waits for its final;
// "cancel:<text>" sends, waits for the first chunk, calls CancelAsync and
// waits for the final; "end" calls EndSessionAsync and waits for the close.
// result: {events: [[name, payload]...], rendered: [...], closed, sessionId}

import { signalR, input, run, Inbox, withTimeout } from "./lib.mjs";

// -- the seed's hook logic, verbatim but for React's state (setMessages) ------

function useVoisnapChatLogic(connection) {
    const state = { messages: [], agentTyping: false, isConnected: false };
    const streamingRef = { current: new Map() };
    const setMessages = (update) => { state.messages = update(state.messages); };
    connection.on("MessageReceived", (data) => {
        if (!data.isFinal) {
            streamingRef.current.set(
                data.messageId,
                (streamingRef.current.get(data.messageId) ?? "") + data.content
            );
            setMessages((prev) => {
                const idx = prev.findIndex((m) => m.id === data.messageId);
                const accumulated = streamingRef.current.get(data.messageId) ?? "";
                if (idx >= 0) {
                    return prev.map((m, i) => (i === idx ? { ...m, content: accumulated } : m));
                }
                return [...prev, {
                    id: data.messageId, role: "agent", content: accumulated,
                    timestamp: new Date(data.timestamp),
                }];
            });
        } else {
            streamingRef.current.delete(data.messageId);
        }
    });
    connection.on("TypingIndicator", (d) => { state.agentTyping = d.isTyping; });
    connection.on("ConversationEnded", () => { state.isConnected = false; connection.stop(); });
    return state;
}

run(async () => {
    const connection = new signalR.HubConnectionBuilder()
        .withUrl(input.url, { accessTokenFactory: () => input.token })
        .configureLogging(signalR.LogLevel.Warning)
        .build();
    const events = [];
    const inbox = new Inbox();
    for (const name of ["SessionStarted", "SessionEnded", "MessageReceived", "TypingIndicator",
                        "ConversationEnded", "Error", "UserTyping"]) {
        connection.on(name, (payload) => { events.push([name, payload]); inbox.push([name, payload]); });
    }
    const hook = useVoisnapChatLogic(connection);
    const closed = new Promise((resolve) => connection.onclose((error) => resolve(error ? String(error.message) : null)));
    let startError = null;
    try {
        await connection.start();
    } catch (error) {
        startError = String(error.message);  // a refusal at connect can close during start()
    }
    hook.isConnected = true;
    if (input.expectRefusal) {  // an Error, then the server closes the connection
        const error = await withTimeout(closed, 10000, "the close after a refusal");
        return { events, closeError: error ?? startError, state: connection.state };
    }
    const [, started] = await inbox.waitFor(([name]) => name === "SessionStarted", 10000, "SessionStarted");
    const finals = () => events.filter(([name, p]) => name === "MessageReceived" && p.isFinal).length;
    // TypingIndicator{false} after the latest final message.
    const typingOff = () => inbox.waitFor(() => {
        const last = events.findLastIndex(([n, p]) => n === "MessageReceived" && p.isFinal);
        return events.slice(last).some(([n, p]) => n === "TypingIndicator" && p.isTyping === false);
    }, 15000, "TypingIndicator off after the final");
    let closeError = undefined;
    for (const step of input.steps ?? []) {
        const [verb, ...rest] = step.split(":");
        const text = rest.join(":");
        const before = finals();
        if (verb === "send") {
            await connection.invoke("SendMessageAsync", { content: text, metadata: { step: "send" } });
            await inbox.waitFor(() => finals() > before, 15000, "the final message");
            await typingOff();
        } else if (verb === "cancel") {
            const chunksBefore = events.filter(([n]) => n === "MessageReceived").length;
            await connection.invoke("SendMessageAsync", { content: text });
            await inbox.waitFor(() => events.filter(([n]) => n === "MessageReceived").length > chunksBefore,
                15000, "a first chunk");
            await connection.invoke("CancelAsync");
            await inbox.waitFor(() => finals() > before, 15000, "the final after a cancel");
            await typingOff();
        } else if (verb === "end") {
            await connection.invoke("EndSessionAsync");
            closeError = await withTimeout(closed, 10000, "the close after EndSessionAsync");
        }
    }
    if (closeError === undefined) await connection.stop();
    return {
        sessionId: started.sessionId,
        started,
        events,
        rendered: hook.messages.map((m) => ({ id: m.id, content: m.content })),
        agentTyping: hook.agentTyping,
        closeError: closeError ?? null,
        state: connection.state,
    };
});
