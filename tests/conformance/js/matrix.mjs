// One cell of the transport x protocol matrix: the whole playground flow on
// input.transport with input.protocol, every step reported on its own, so that
// one failing step does not hide the others.
//
// Connections (all on the cell's transport and protocol): "main" runs Echo,
// Counter, Sum and Ask and joins input.group; "member" joins it too; "outsider"
// never joins. main sends "first" to the group, member leaves, main sends
// "second"; a fence (an Echo on every connection) follows each send.
// Input: {url, tokens: {main, member, outsider}, transport, protocol, group}.
// Result: {transport: class name of main's transport, tap: its traffic (see
// tapSummary in lib.mjs) before stopping, steps: {echo, counter, sum, ask, group}: each
// {ok: true, value} or {ok: false, error}, startRetries}.

import {
    Inbox, buildConnection, describe, emit, fence, input, newTap, receivedBy, run,
    signalR, start, tapSummary, transportName, withTimeout,
} from "./lib.mjs";

const STEP_MS = 10000;
const ECHO_VALUE = {
    text: "héllo ✓",
    number: -12.5,
    big: 2 ** 53 - 1,
    flags: [true, false, null],
    nested: { list: [[1, 2], { deep: { deeper: [] } }], empty: {} },
};

async function step(name, body) {
    try {
        return [name, { ok: true, value: await withTimeout(body(), STEP_MS, name) }];
    } catch (error) {
        return [name, { ok: false, error: describe(error) }];
    }
}

async function counter(connection) {
    const items = new Inbox();
    await new Promise((resolve, reject) => {
        connection.stream("Counter", 10, 1).subscribe({ next: items.push, complete: resolve, error: reject });
    });
    return items.items;
}

async function sum(connection) {
    const subject = new signalR.Subject();
    const total = connection.invoke("Sum", subject);
    for (const number of [1, 2, 3.5, 10, -4, 100]) subject.next(number);
    subject.complete();
    return await total;
}

async function groups(clients) {
    const { main, member } = clients;
    await main.connection.invoke("JoinGroup", input.group);
    await member.connection.invoke("JoinGroup", input.group);
    await main.connection.invoke("SendToGroup", input.group, "first");
    await fence(clients);
    await member.connection.invoke("LeaveGroup", input.group);
    await main.connection.invoke("SendToGroup", input.group, "second");
    await fence(clients);
    return receivedBy(clients);
}

// A start that fails is retried once, with a new connection, and counted: the
// Server-Sent Events start race has a test of its own (starts.mjs), and must
// not hide what the flow shows.
let startRetries = 0;

async function started(name, token, tap) {
    for (let attempt = 0; ; attempt++) {
        const connection = buildConnection({ token, tap: tap?.() });
        const received = [];
        connection.on("Receive", (payload) => {
            received.push(payload);
        });
        connection.on("Prompt", (question) => ({ answer: 42, to: question }));
        try {
            await start(connection);
            return { connection, received };
        } catch (error) {
            if (attempt > 0) throw error;
            startRetries += 1;
            emit("retry", { name, error: describe(error) });
        }
    }
}

run(async () => {
    let tap;
    const main = await started("main", input.tokens.main, () => (tap = newTap()));
    const transport = transportName(main.connection);
    const clients = {
        main,
        member: await started("member", input.tokens.member),
        outsider: await started("outsider", input.tokens.outsider),
    };

    const steps = Object.fromEntries([
        await step("echo", () => main.connection.invoke("Echo", ECHO_VALUE)),
        await step("counter", () => counter(main.connection)),
        await step("sum", () => sum(main.connection)),
        await step("ask", () => main.connection.invoke("Ask", "What is six times seven?")),
        await step("group", () => groups(clients)),
    ]);
    // The traffic up to here: stopping adds a Close POST and a DELETE that
    // may race each other (either may find the connection gone).
    const traffic = tapSummary(tap);
    await Promise.all(Object.values(clients).map(({ connection }) => connection.stop()));
    return { transport, tap: traffic, steps, startRetries };
});
