// The chat scenario's load generator: sessions with two devices each, on /hubs/chat.
//
// Driven by the harness over stdin/stdout, one JSON object per line:
//   {"cmd":"setup", host, ports, sessions:[{id, token}], devices, setup_agent}
//        every session is created (SendMessage to a zero-token agent), and each
//        of its devices joins it                              -> {"event":"ready"}
//   {"cmd":"run", agent, timeout_ms}
//        every session's first device sends one message; every device records
//        the latency of each StreamChunk token until its TaskCompleted
//                                                             -> {"event":"done", ...}
// Each token is the server's monotonic clock in microseconds (the synthetic agent).

import { WsClient } from "./wsclient.mjs";
import { Latencies, inLanes, reply, reportRun, serveCommands } from "./agentload.mjs";

const RS = "\x1e";

const latencies = new Latencies();
let devices = [];

// One device: a hub connection that waits for answers and watches its session's stream.
class Device {
  constructor(host, port, token, sessionId) {
    this.sessionId = sessionId;
    this.waiting = new Map(); // invocation id -> resolve
    this.completed = null; // resolve once TaskCompleted arrives
    this.next = 0;
    this.client = new WsClient({
      host, port, path: `/hubs/chat?access_token=${token}`,
      onMessage: (buffer) => this.onMessage(buffer),
    });
  }

  async open() {
    await this.client.connect();
    const handshake = new Promise((resolve) => (this.handshaken = resolve));
    this.client.sendText(`{"protocol":"json","version":1}${RS}`);
    await handshake;
  }

  invoke(target, args) {
    const id = String(this.next++);
    const answer = new Promise((resolve) => this.waiting.set(id, resolve));
    this.client.sendText(JSON.stringify({ type: 1, invocationId: id, target, arguments: args }) + RS);
    return answer;
  }

  taskCompleted() {
    return new Promise((resolve) => (this.completed = resolve));
  }

  onMessage(buffer) {
    const text = buffer.toString();
    for (const item of text.split(RS)) {
      if (!item) continue;
      if (this.handshaken && item === "{}") { this.handshaken(); this.handshaken = null; continue; }
      if (item.startsWith('{"type":1,"target":"StreamChunk"')) {
        const at = item.indexOf('"delta":"');
        const stamp = parseInt(item.slice(at + 9), 10);
        if (!Number.isNaN(stamp)) latencies.record(stamp); // the final chunk's delta is empty
      } else if (item.startsWith('{"type":1,"target":"TaskCompleted"') && this.completed) {
        const done = this.completed; this.completed = null; done();
      } else if (item.startsWith('{"type":3')) {
        const answer = JSON.parse(item);
        const resolve = this.waiting.get(answer.invocationId);
        if (resolve) { this.waiting.delete(answer.invocationId); resolve(answer); }
      }
    }
  }
}

async function setup(m) {
  devices = [];
  await inLanes(m.sessions, async ({ id, token }) => {
    const first = new Device(m.host, m.ports[0], token, id);
    await first.open();
    const done = first.taskCompleted();
    const answer = await first.invoke("SendMessage", [{ sessionId: id, agentId: m.setup_agent, content: "setup", isStreaming: true }]);
    if (answer.error) throw new Error(answer.error);
    await done;
    const group = [first];
    for (let d = 1; d < m.devices; d++) {
      const other = new Device(m.host, m.ports[d % m.ports.length], token, id);
      await other.open();
      group.push(other);
    }
    for (const device of group) {
      const joined = await device.invoke("JoinSession", [id]);
      if (joined.error) throw new Error(joined.error);
    }
    devices.push(group);
  });
  reply({ event: "ready", sessions: devices.length, devices: devices.flat().length });
}

async function run(m) {
  latencies.reset();
  const cpuBefore = process.cpuUsage();
  const started = Date.now();
  const finished = [];
  for (const group of devices) {
    for (const device of group) finished.push(device.taskCompleted());
  }
  for (const group of devices) {
    group[0].invoke("SendMessage", [{ sessionId: group[0].sessionId, agentId: m.agent, content: "go", isStreaming: true }]);
  }
  let completed = 0;
  for (const f of finished) f.then(() => completed++);
  await reportRun(latencies, finished, m.timeout_ms, cpuBefore, started, () => ({ completed }));
}

serveCommands({ setup, run, quit: () => process.exit(0) });
