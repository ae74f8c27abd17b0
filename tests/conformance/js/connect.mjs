// Start a connection with input.token (null: no accessTokenFactory), optionally
// with skipNegotiation; report whether start() succeeded and, if it did, echo once.
// Input: {url, token, skipNegotiation}. Result: {started, error?, socketErrors, connectionId?, echoed?}.

import { buildConnection, describe, input, newTap, run, start } from "./lib.mjs";

run(async () => {
    const tap = newTap();
    const connection = buildConnection({ skipNegotiation: input.skipNegotiation ?? false, tap });
    try {
        await start(connection);
    } catch (error) {
        return { started: false, error: describe(error), socketErrors: tap.errors };
    }
    const connectionId = connection.connectionId;
    const echoed = await connection.invoke("Echo", "hello");
    await connection.stop();
    return { started: true, connectionId, echoed, socketErrors: tap.errors };
});
