// Report how the server ends a connection. The client connects (no automatic
// reconnect), prints "ready" with the time, and waits for onclose.
// Result: {error: onclose's error text or null, at: Date.now() when it fired}.

import { buildConnection, closed, emit, input, run, start, withTimeout } from "./lib.mjs";

run(async () => {
    const connection = buildConnection();
    const ended = closed(connection).then((error) => ({ error, at: Date.now() }));
    await start(connection);
    emit("ready", { connectionId: connection.connectionId, at: Date.now() });
    return await withTimeout(ended, input.waitMs ?? 15000, "onclose");
});
