// How each server under test is spoken to: subscribe, publish, and find the
// publish timestamp in what a subscriber receives. One object per target.
//
// Every target delivers the same JSON payload, {"t":<microseconds>,"seq":n,"pad":"..."},
// where t is the publisher's monotonic clock (shared by every process on the machine).

const RS = 0x1e;

export function payload(seq, size) {
  const head = `{"t":${nowMicros()},"seq":${seq},"pad":"`;
  const pad = Math.max(0, size - head.length - 2);
  return head + "x".repeat(pad) + '"}';
}

export function nowMicros() {
  return Number(process.hrtime.bigint() / 1000n);
}

// The number after `"t":` starting at `from`; -1 if there is none.
export function stampAt(buffer, from) {
  const at = buffer.indexOf('"t":', from);
  if (at < 0) return -1;
  let value = 0;
  for (let i = at + 4; i < buffer.length; i++) {
    const c = buffer[i];
    if (c < 48 || c > 57) break;
    value = value * 10 + (c - 48);
  }
  return value;
}

// SignalR over voisnap's JSON hub protocol: skip negotiation, handshake, JoinGroup.
export const voisnap = {
  subscriberPath: (o) => `/hubs/playground?access_token=${o.token}`,
  publisherPath: (o) => `/hubs/playground?access_token=${o.token}`,
  async subscribe(client, o) {
    await this.handshake(client);
    await invoke(client, "JoinGroup", [o.group]);
  },
  async preparePublisher(client) {
    await this.handshake(client);
  },
  handshake(client) {
    return waitFor(client, (records) => records.some((r) => r === "{}"), () =>
      client.sendText('{"protocol":"json","version":1}\x1e'));
  },
  publish(client, o, text) {
    client.sendText(`{"type":1,"target":"SendToGroup","arguments":[${JSON.stringify(o.group)},${text}]}\x1e`);
  },
  // Calls found(stamp) for every delivered payload in one WebSocket message.
  scan(buffer, found) {
    let start = 0;
    while (start < buffer.length) {
      let end = buffer.indexOf(RS, start);
      if (end < 0) end = buffer.length;
      if (buffer[start + 8] === 0x31) {
        // {"type":1 — an Invocation: Receive(payload)
        const stamp = stampAt(buffer.subarray(start, end), 0);
        if (stamp >= 0) found(stamp);
      }
      start = end + 1;
    }
  },
};

// The `websockets` library's server, broadcasting every publisher message.
export const websockets = {
  subscriberPath: () => "/sub",
  publisherPath: () => "/pub",
  async subscribe() {},
  async preparePublisher() {},
  publish(client, o, text) {
    client.sendText(text);
  },
  scan(buffer, found) {
    const stamp = stampAt(buffer, 0);
    if (stamp >= 0) found(stamp);
  },
};

// python-socketio: Engine.IO 4 over WebSocket, Socket.IO packets inside.
export const socketio = {
  subscriberPath: () => "/socket.io/?EIO=4&transport=websocket",
  publisherPath: () => "/socket.io/?EIO=4&transport=websocket",
  async subscribe(client) {
    await this.preparePublisher(client);
  },
  preparePublisher(client) {
    // Server sends "0{...}" (open); we send "40" (connect); it answers "40{...}".
    return waitFor(client, (records) => records.some((r) => r.startsWith("40")), () => client.sendText("40"));
  },
  publish(client, o, text) {
    client.sendText(`42["publish",${text}]`);
  },
  scan(buffer, found) {
    if (buffer[0] === 0x32 && buffer.length === 1) return; // "2": ping, answered in onRecord
    const stamp = stampAt(buffer, 0);
    if (stamp >= 0) found(stamp);
  },
  onRecord(client, text) {
    if (text === "2") client.sendText("3"); // Engine.IO heartbeat
  },
};

export const TARGETS = { voisnap, websockets, socketio };

// -- helpers ---------------------------------------------------------------------------------

let invocationCounter = 0;

function invoke(client, target, args) {
  const id = `i${invocationCounter++}`;
  return waitFor(
    client,
    (records) => records.some((r) => r.includes(`"invocationId":"${id}"`) && r.startsWith('{"type":3')),
    () => client.sendText(`{"type":1,"invocationId":"${id}","target":"${target}","arguments":${JSON.stringify(args)}}\x1e`),
  );
}

// Send with `send`, then resolve once a received message's records satisfy `done`.
// While waiting, the client's messages go to this waiter instead of the scanner.
function waitFor(client, done, send) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("setup timed out")), 30000);
    client.waiter = (buffer) => {
      const records = buffer.toString().split("\x1e").filter((r) => r.length);
      if (done(records)) {
        clearTimeout(timer);
        client.waiter = null;
        resolve();
      }
    };
    send();
  });
}
