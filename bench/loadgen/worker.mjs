// One load-generator process: some subscribers, and maybe the publisher.
//
// Driven by the Python harness over stdin/stdout, one JSON object per line:
//   {"cmd":"connect", ...}       open subscribers           -> {"event":"connected"}
//   {"cmd":"publisher", ...}     open the publisher         -> {"event":"publisher"}
//   {"cmd":"begin"}              start a measurement step   -> {"event":"begun"}
//   {"cmd":"publish", rate, duration, size}                 -> {"event":"published"}
//   {"cmd":"end", quiet_ms}      wait until quiet, report   -> {"event":"step", ...}
//   {"cmd":"stall", count}       stop reading on N sockets  -> {"event":"stalled"}
//   {"cmd":"churn", population, rate, lifetime_ms}
//                                clients come and go (churn.mjs) -> {"event":"churning"}
//   {"cmd":"churn_stop"}         the churners leave, report -> {"event":"churned", ...}
//   {"cmd":"quit"}
// Latencies go into a log-scale histogram (2% buckets), merged by the harness;
// `begin` with `timeline: true` also keeps the highest latency of every second.

import readline from "node:readline";
import { Churn } from "./churn.mjs";
import { WsClient } from "./wsclient.mjs";
import { TARGETS, nowMicros, payload } from "./targets.mjs";

const LOG_RATIO = Math.log(1.02);
const CONNECT_CONCURRENCY = 64;

const state = {
  target: null,
  options: null,
  subscribers: [],
  publisher: null,
  histogram: new Map(),
  received: 0,
  maxLatency: 0,
  lastReceiveAt: 0,
  closed: 0,
  cpuAtBegin: process.cpuUsage(),
  timeline: null, // highest latency (µs) per second since `begin`, when asked for
  begunAt: 0,
  churn: null,
};

function reply(event) {
  process.stdout.write(JSON.stringify(event) + "\n");
}

function record(stamp) {
  const now = nowMicros();
  const latency = Math.max(1, now - stamp);
  if (state.timeline) {
    const second = Math.floor((now - state.begunAt) / 1e6);
    if (!(state.timeline[second] >= latency)) state.timeline[second] = latency;
  }
  const bucket = Math.floor(Math.log(latency) / LOG_RATIO);
  state.histogram.set(bucket, (state.histogram.get(bucket) || 0) + 1);
  state.received++;
  if (latency > state.maxLatency) state.maxLatency = latency;
}

// A subscriber counts what it receives; the publisher (a member of the room on
// some targets) only answers heartbeats.
function newClient(path, { counts = true } = {}) {
  const o = state.options;
  const client = new WsClient({
    host: o.host,
    port: o.port,
    path,
    onMessage: (buffer) => {
      if (client.waiter) return client.waiter(buffer);
      if (state.target.onRecord && buffer.length < 4) return state.target.onRecord(client, buffer.toString());
      if (!counts) return;
      state.lastReceiveAt = Date.now();
      state.target.scan(buffer, record);
    },
    onClose: () => {
      state.closed++;
    },
  });
  return client;
}

async function connectSubscribers({ count }) {
  let next = 0;
  let failed = 0;
  let firstError = null;
  async function lane() {
    while (next < count) {
      next++;
      const client = newClient(state.target.subscriberPath(state.options));
      try {
        await client.connect();
        await state.target.subscribe(client, state.options);
        state.subscribers.push(client);
      } catch (error) {
        failed++;
        firstError = firstError || String(error);
        client.close();
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(CONNECT_CONCURRENCY, count) }, lane));
  reply({ event: "connected", count: state.subscribers.length, failed, error: firstError });
}

async function openPublisher() {
  const client = newClient(state.target.publisherPath(state.options), { counts: false });
  await client.connect();
  await state.target.preparePublisher(client, state.options);
  state.publisher = client;
  reply({ event: "publisher" });
}

function begin({ timeline = false }) {
  state.histogram = new Map();
  state.timeline = timeline ? [] : null;
  state.begunAt = nowMicros();
  state.received = 0;
  state.maxLatency = 0;
  state.cpuAtBegin = process.cpuUsage();
  reply({ event: "begun" });
}

// Publish `rate` messages a second for `duration` seconds, catching up on any
// timer lateness so that the average rate is exact.
function publish({ rate, duration, size }) {
  const started = Date.now();
  const total = Math.round(rate * duration);
  let sent = 0;
  const tick = () => {
    const due = Math.min(total, Math.floor(((Date.now() - started) / 1000) * rate) + 1);
    while (sent < due) {
      state.target.publish(state.publisher, state.options, payload(sent, size));
      sent++;
    }
    if (sent < total) setTimeout(tick, 1);
    else reply({ event: "published", count: sent, seconds: (Date.now() - started) / 1000 });
  };
  tick();
}

// Report once nothing has arrived for `quiet_ms` (or after `max_wait_ms`).
function end({ quiet_ms = 300, max_wait_ms = 5000 }) {
  const asked = Date.now();
  const check = () => {
    const now = Date.now();
    // Quiet since both the last delivery and the question: a slow publish rate
    // leaves long gaps that must not be mistaken for the end.
    const quietFor = now - Math.max(state.lastReceiveAt, asked);
    if (quietFor >= quiet_ms || now - asked >= max_wait_ms) {
      const cpu = process.cpuUsage(state.cpuAtBegin);
      reply({
        event: "step",
        received: state.received,
        histogram: Object.fromEntries(state.histogram),
        max_us: state.maxLatency,
        cpu_seconds: (cpu.user + cpu.system) / 1e6,
        closed: state.closed,
        open: state.subscribers.filter((c) => !c.closed).length,
        timeline_max_us: state.timeline && Array.from(state.timeline, (v) => v || 0),
      });
    } else {
      setTimeout(check, 20);
    }
  };
  check();
}

function stall({ count }) {
  const victims = state.subscribers.slice(0, count);
  for (const client of victims) client.pause();
  reply({ event: "stalled", count: victims.length, at_us: nowMicros() });
}

const commands = {
  connect: (m) => {
    state.target = TARGETS[m.target];
    state.options = m;
    return connectSubscribers(m);
  },
  publisher: (m) => {
    state.target = TARGETS[m.target];
    state.options = m;
    return openPublisher();
  },
  begin,
  publish,
  end,
  stall,
  churn: async (m) => {
    state.churn = new Churn(state.target, state.options);
    reply({ event: "churning", count: await state.churn.start(m) });
  },
  churn_stop: () => reply({ event: "churned", ...state.churn.stop() }),
  quit: () => process.exit(0),
};

readline.createInterface({ input: process.stdin }).on("line", async (line) => {
  const message = JSON.parse(line);
  try {
    await commands[message.cmd](message);
  } catch (error) {
    reply({ event: "error", cmd: message.cmd, error: String(error && error.stack || error) });
  }
});
process.stdin.on("end", () => process.exit(0));
