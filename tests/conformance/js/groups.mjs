// Groups belong to a tenant. Connections (tokens from the test, input.tokens):
//   sam    acme    joins input.group, sends to it twice
//   alice  acme    joins input.group, leaves it before sam's second message
//   bob    acme    never joins
//   carol  globex  joins a group with the same name in her own tenant
//   dave   globex  never joins, sends to the group once
// After each send every client round-trips an Echo (see fence() in lib.mjs).
// Result: {received: {name: [payloads in order]}}.

import { fence, input, openClients, receivedBy, run, stopAll } from "./lib.mjs";

run(async () => {
    const clients = await openClients(input.tokens);
    const { sam, alice, carol, dave } = clients;
    const group = input.group;
    for (const member of [sam, alice, carol]) await member.connection.invoke("JoinGroup", group);

    await sam.connection.invoke("SendToGroup", group, "acme-1");
    await fence(clients);
    await dave.connection.invoke("SendToGroup", group, "globex-1");
    await fence(clients);
    await alice.connection.invoke("LeaveGroup", group);
    await sam.connection.invoke("SendToGroup", group, "acme-2");
    await fence(clients);

    const received = receivedBy(clients);
    await stopAll(clients);
    return { received };
});
