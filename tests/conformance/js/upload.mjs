// Sum(numbers): the client uploads input.numbers through a Subject (a
// client-to-server stream) and completes it; the server answers the total.
// Result: {value}.

import { buildConnection, run, signalR, input, start } from "./lib.mjs";

run(async () => {
    const connection = buildConnection();
    await start(connection);
    const subject = new signalR.Subject();
    const total = connection.invoke("Sum", subject);
    for (const number of input.numbers) subject.next(number);
    subject.complete();
    const value = await total;
    await connection.stop();
    return { value };
});
