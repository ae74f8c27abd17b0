// Start and stop input.count connections one after the other on input.transport
// (default settings otherwise), and report every start() that failed. A start
// races the server: the client sends its handshake the moment its transport is
// open, so a server that answers that send before it is ready fails a start
// now and then; many starts make such a race show.
// Result: {failures: [error texts], ms}.

import { buildConnection, describe, input, run, start } from "./lib.mjs";

run(async () => {
    const failures = [];
    const began = Date.now();
    for (let i = 0; i < input.count; i++) {
        const connection = buildConnection();
        try {
            await start(connection);
        } catch (error) {
            failures.push(describe(error));
        }
        await connection.stop();
    }
    return { failures, ms: Date.now() - began };
});
