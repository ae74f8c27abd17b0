// Broadcast reaches every connection of the hub in the caller's tenant, and no
// other. Connections (input.tokens): alice and bob in acme, carol in globex.
// alice broadcasts "acme-all", carol broadcasts "globex-all"; then a fence.
// Result: {received: {name: [payloads in order]}}.

import { fence, input, openClients, receivedBy, run, stopAll } from "./lib.mjs";

run(async () => {
    const clients = await openClients(input.tokens);
    await clients.alice.connection.invoke("Broadcast", "acme-all");
    await clients.carol.connection.invoke("Broadcast", "globex-all");
    await fence(clients);
    const received = receivedBy(clients);
    await stopAll(clients);
    return { received };
});
