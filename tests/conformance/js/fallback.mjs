// Which transport does the client end up on? Start a connection with
// input.transport ("all": no transport option, the client's own order and
// fallback) and input.protocol, Echo once, and report what was used.
// A start that hit the Server-Sent Events start race (a handshake POST answered
// 404, after which the client falls back to the next transport; see starts.mjs)
// is retried once with a new connection, and counted.
// Result: {started, error?, transport: class name, echoed, tap: tapSummary, retries}.

import {
    buildConnection, describe, emit, newTap, run, start, tapSummary, transportName,
} from "./lib.mjs";

const hitStartRace = (tap) => tap.requests.some((r) => r.method === "POST" && r.status === 404);

run(async () => {
    let retries = 0;
    for (;;) {
        const tap = newTap();
        const connection = buildConnection({ tap });
        try {
            await start(connection);
        } catch (error) {
            if (hitStartRace(tap) && retries === 0) {
                retries += 1;
                emit("retry", { error: describe(error) });
                continue;
            }
            return { started: false, error: describe(error), tap: tapSummary(tap), retries };
        }
        if (hitStartRace(tap) && retries === 0) {
            retries += 1;
            emit("retry", { transport: transportName(connection) });
            await connection.stop();
            continue;
        }
        const transport = transportName(connection);
        const echoed = await connection.invoke("Echo", "over " + transport);
        const traffic = tapSummary(tap);
        await connection.stop();
        return { started: true, transport, echoed, tap: traffic, retries };
    }
});
