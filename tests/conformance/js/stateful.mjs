// Stateful reconnect under a numbered group stream, driven from the test.
//
// "receiver" connects to input.url (the test's TCP proxy) with
// withStatefulReconnect() (unless input.statefulReconnect is false; and
// withAutomaticReconnect(input.reconnectDelays) if given), joins input.group,
// and records every Receive(number). "sender"
// connects to input.directUrl (the server itself). Then the script obeys lines
// on stdin:
//   "send A B"  the sender sends A, A+1, ... B-1 to the group, one invocation
//               each (each returns once the server has fanned it out); "sent"
//   "await N"   wait until the receiver has N numbers, or its connection was
//               closed or is reconnecting; "received" {count}
//   "echo"      the receiver invokes Echo (client to server after a resume); "echoed"
//   "end"       stop both and print the result
// Events while it runs: "ready" {connectionId}, and "reconnecting" / "reconnected"
// / "closed" as the client reports them.
// Result: {firstId, lastId, numbers, events: [kinds, before "end"], closeError, records: the
// JSON records the receiver's WebSockets saw, by type, with Close records in
// full, tap: tapSummary}.

import {
    Inbox, buildConnection, describe, emit, input, newTap, readLine, run, start, tapSummary,
} from "./lib.mjs";

run(async () => {
    const tap = newTap();
    const receiver = buildConnection({
        url: input.url,
        statefulReconnect: input.statefulReconnect ?? true,
        reconnectDelays: input.reconnectDelays,
        tap,
    });
    const numbers = new Inbox();
    receiver.on("Receive", (number) => {
        numbers.push(number);
    });
    const events = new Inbox();
    let closeError = null;
    const record = (kind, fields = {}) => {
        emit(kind, fields);
        events.push({ kind, ...fields });
    };
    receiver.onreconnecting((error) => record("reconnecting", { error: error ? describe(error) : null }));
    receiver.onreconnected(async (connectionId) => {
        // A new connection: the server forgot the old one's groups.
        await receiver.invoke("JoinGroup", input.group);
        record("reconnected", { connectionId });
    });
    receiver.onclose((error) => {
        closeError = error ? describe(error) : null;
        record("closed", { error: closeError });
    });

    await start(receiver);
    const firstId = receiver.connectionId;
    await receiver.invoke("JoinGroup", input.group);
    const sender = await start(buildConnection({ url: input.directUrl }));
    emit("ready", { connectionId: firstId });

    for (;;) {
        const [command, ...args] = (await readLine(input.timeoutMs)).split(" ");
        if (command === "send") {
            const [from, to] = args.map(Number);
            for (let n = from; n < to; n++) await sender.invoke("SendToGroup", input.group, n);
            emit("sent", { upTo: to });
        } else if (command === "await") {
            const count = Number(args[0]);
            await Promise.race([
                numbers.waitFor(() => numbers.items.length >= count, 15000, `${count} numbers`),
                events.waitFor((e) => e.kind === "closed" || e.kind === "reconnecting", 15000, "an end"),
            ]);
            emit("received", { count: numbers.items.length });
        } else if (command === "echo") {
            emit("echoed", { value: await receiver.invoke("Echo", "after the drop") });
        } else if (command === "end") {
            break;
        } else {
            throw new Error(`unknown command: ${command}`);
        }
    }

    const lastId = receiver.connectionId;
    const seen = events.items.map((e) => e.kind);
    await Promise.all([receiver.stop(), sender.stop()]);
    const types = {};
    for (const item of tap.received.items) types[item.type ?? "handshake"] = (types[item.type ?? "handshake"] ?? 0) + 1;
    return {
        firstId,
        lastId,
        numbers: numbers.items,
        events: seen,
        closeError,
        records: { types, closes: tap.received.items.filter((item) => item.type === 7) },
        tap: tapSummary(tap),
    };
});
