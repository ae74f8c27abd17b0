// Counter(count, delayMs) as a server-to-client stream.
// Without input.cancelAfter: collect every item until the stream completes.
// With input.cancelAfter = n: dispose the subscription after n items (the client
// sends CancelInvocation), then watch the wire: the server must end the stream
// with a Completion for its invocation id, without an error, and send no item
// for it afterwards (checked after a round trip, which arrives behind them).
// Result: {items, completed} or {itemsBeforeCancel, completion, itemsOnWire, itemsAfterCompletion}.

import { Inbox, buildConnection, input, newTap, run, start, withTimeout } from "./lib.mjs";

run(async () => {
    const tap = newTap();
    const connection = buildConnection({ tap });
    await start(connection);
    const items = new Inbox();
    let subscription;
    const completed = new Promise((resolve, reject) => {
        subscription = connection.stream("Counter", input.count, input.delayMs).subscribe({
            next: items.push,
            complete: resolve,
            error: reject,
        });
    });

    if (input.cancelAfter === undefined) {
        await withTimeout(completed, input.waitMs ?? 10000, "the stream to complete");
        await connection.stop();
        return { items: items.items, completed: true };
    }

    await items.waitFor((item) => item === input.cancelAfter - 1, 10000, `${input.cancelAfter} items`);
    subscription.dispose();
    const itemsBeforeCancel = [...items.items];
    const firstItem = tap.received.items.find((record) => record.type === 2);
    const streamId = firstItem.invocationId;
    const completion = await tap.received.waitFor(
        (record) => record.type === 3 && record.invocationId === streamId,
        input.waitMs ?? 10000,
        `the server's Completion of stream ${streamId}`,
    );
    await connection.invoke("Echo", "fence");
    const records = tap.received.items;
    const forStream = (record) => record.type === 2 && record.invocationId === streamId;
    const itemsAfterCompletion = records.slice(records.indexOf(completion)).filter(forStream).length;
    await connection.stop();
    return {
        itemsBeforeCancel,
        completion,
        itemsOnWire: records.filter(forStream).length,
        itemsAfterCompletion,
    };
});
