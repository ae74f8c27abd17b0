// Invoke one hub method and report its result or rejection. The client answers
// the server's Prompt (client results) with input.promptAnswer, or throws
// Error(input.promptError) if that is set.
// Input: {url, token, method, args, promptAnswer?, promptError?}.
// Result: {ok: true, value} or {ok: false, error}, plus the prompts received.

import { buildConnection, describe, input, run, start } from "./lib.mjs";

run(async () => {
    const connection = buildConnection();
    const prompts = [];
    connection.on("Prompt", (question) => {
        prompts.push(question);
        if (input.promptError) throw new Error(input.promptError);
        return input.promptAnswer;
    });
    await start(connection);
    try {
        const value = await connection.invoke(input.method, ...(input.args ?? []));
        return { ok: true, value: value ?? null, prompts };
    } catch (error) {
        return { ok: false, error: describe(error), prompts };
    } finally {
        await connection.stop();
    }
});
