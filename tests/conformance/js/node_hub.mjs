// The node hub with the official client on both sides (issue 15, docs/hubs/node.md):
// a node is a plain SignalR client that implements ExecuteCommand by returning a
// value from connection.on (a client result), RefreshScopes by invoking
// ScopeChanged, and RevokeAccess by letting the server close it; the user watches
// the node's presence on the notifications hub and dispatches over REST (fetch).
//
// Input: {base, userToken, nodeToken, nodeId, transport, protocol, keepAliveMs}.
// Result: what each side saw (the Python test checks it).

import { Inbox, buildConnection, closed, input, run, start, withTimeout } from "./lib.mjs";

const WAIT_MS = 10000;

async function rest(method, path, body) {
    const response = await fetch(input.base + path, {
        method,
        headers: { Authorization: `Bearer ${input.userToken}`, "Content-Type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    return { status: response.status, body: text ? JSON.parse(text) : null };
}

run(async () => {
    const presence = new Inbox();
    const user = buildConnection({ url: `${input.base}/hubs/notifications`, token: input.userToken });
    user.on("NodeOnline", (payload) => presence.push({ event: "NodeOnline", ...payload }));
    user.on("NodeOffline", (payload) => presence.push({ event: "NodeOffline", ...payload }));
    await start(user);

    const calls = new Inbox();
    const node = buildConnection({ url: `${input.base}/hubs/node`, token: input.nodeToken });
    let later = null;
    node.on("ExecuteCommand", (payload) => {
        calls.push({ target: "ExecuteCommand", payload });
        if (payload.command === "later") {
            later = payload.commandId;
            return { accepted: true };
        }
        return { ok: true, result: { command: payload.command, params: payload.params } };
    });
    node.on("RefreshScopes", async (payload) => {
        calls.push({ target: "RefreshScopes", payload });
        await node.invoke("ScopeChanged", payload);
    });
    node.on("RevokeAccess", (payload) => calls.push({ target: "RevokeAccess", payload }));
    const nodeClosed = closed(node);
    await start(node);
    await node.invoke("Heartbeat", { nodeId: input.nodeId, status: "ready", uptime: 1 });
    const online = await presence.waitFor((e) => e.event === "NodeOnline", WAIT_MS, "NodeOnline");

    const echo = await rest("POST", `/api/nodes/${input.nodeId}/commands`, {
        command: "echo",
        params: { text: "hi" },
    });
    const pending = rest("POST", `/api/nodes/${input.nodeId}/commands`, { command: "later" });
    await calls.waitFor((c) => c.payload?.command === "later", WAIT_MS, "the later command");
    await node.invoke("CommandResult", { commandId: later, ok: true, result: "sent later" });
    const answeredLater = await pending;
    let again = null;
    try {
        await node.invoke("CommandResult", { commandId: later, ok: true, result: "twice" });
    } catch (error) {
        again = error.message;
    }

    const patched = await rest("PATCH", `/api/nodes/${input.nodeId}`, { scopes: ["echo", "later", "x"] });
    const refresh = await calls.waitFor((c) => c.target === "RefreshScopes", WAIT_MS, "RefreshScopes");
    let acknowledged = null;
    for (const deadline = Date.now() + WAIT_MS; Date.now() < deadline; ) {
        acknowledged = (await rest("GET", `/api/nodes/${input.nodeId}`)).body.acknowledgedScopes;
        if (acknowledged?.length === 3) break;
        await new Promise((wake) => setTimeout(wake, 50));
    }

    const revoked = await rest("DELETE", `/api/nodes/${input.nodeId}`);
    const revoke = await calls.waitFor((c) => c.target === "RevokeAccess", WAIT_MS, "RevokeAccess");
    const closeError = await withTimeout(nodeClosed, WAIT_MS, "the node's connection to close");
    const offline = await presence.waitFor((e) => e.event === "NodeOffline", WAIT_MS, "NodeOffline");
    let restart = null;
    try {
        await start(buildConnection({ url: `${input.base}/hubs/node`, token: input.nodeToken }));
    } catch (error) {
        restart = error.message;
    }
    await user.stop();
    return {
        online,
        echo,
        answeredLater,
        again,
        patched: patched.status,
        refresh: refresh.payload,
        acknowledged,
        revoked: revoked.status,
        revoke: revoke.payload,
        closeError,
        offline,
        restart,
    };
});
