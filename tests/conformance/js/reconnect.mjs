// Automatic reconnect. The client connects with withAutomaticReconnect(
// input.reconnectDelays) and prints "ready". If input.waitForGo, the test then
// restarts the server and writes "go"; otherwise the server ends the connection
// by itself (e.g. at token expiry). The client must fire onreconnecting, then
// onreconnected with a new connection id, and Echo must work again.
// input.tokens: the accessTokenFactory (called for negotiate and again for the
// WebSocket) returns tokens[0] for the first connection, tokens[1] once it is
// reconnecting, and so on (the last one once they run out): a test can hand
// out a fresh token for the reconnect.
// Result: {firstId, reconnecting, reconnectedId, echoed, events}.

import { Inbox, buildConnection, describe, emit, input, run, start, waitForLine } from "./lib.mjs";

run(async () => {
    let generation = 0;
    const token = () => input.tokens[Math.min(generation, input.tokens.length - 1)];
    const connection = buildConnection({ token, reconnectDelays: input.reconnectDelays });
    const events = new Inbox();
    const record = (kind, fields) => {
        emit(kind, fields);
        events.push({ kind, ...fields });
    };
    connection.onreconnecting((error) => {
        generation += 1;
        record("reconnecting", { error: error ? describe(error) : null });
    });
    connection.onreconnected((connectionId) => record("reconnected", { connectionId }));
    connection.onclose((error) => record("closed", { error: error ? describe(error) : null }));

    await start(connection);
    const firstId = connection.connectionId;
    emit("ready", { connectionId: firstId });
    if (input.waitForGo) await waitForLine("go");

    const waitMs = input.waitMs ?? 15000;
    const reconnecting = await events.waitFor((e) => e.kind === "reconnecting", waitMs, "onreconnecting");
    const outcome = await events.waitFor((e) => e.kind !== "reconnecting", waitMs, "onreconnected");
    if (outcome.kind !== "reconnected") throw new Error(`closed instead of reconnecting: ${outcome.error}`);
    const echoed = await connection.invoke("Echo", "after reconnect");
    const seen = events.items.map((e) => e.kind);
    await connection.stop();
    return {
        firstId,
        reconnecting: reconnecting.error,
        reconnectedId: outcome.connectionId,
        echoed,
        events: seen,
    };
});
