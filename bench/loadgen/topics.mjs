// The topics scenario's load generator: /v1/events connections holding wildcard
// subscriptions, and (worker 0) a producer of tenant-wide events, on NATS or over REST.
//
// Driven by the harness over stdin/stdout, one JSON object per line:
//   {"cmd":"subscribe", host, port, token, connections: [[pattern, ...], ...]}
//        open one connection per list, subscribe it to each pattern, and wait for
//        every "subscribed"                 -> {"event":"subscribed", count, subscriptions, failed, error}
//   {"cmd":"producer", kind: "nats", host, port, topics}
//        one TCP connection to the NATS server, publishing on the topics as subjects
//   {"cmd":"producer", kind: "rest", host, port, token, topics, inflight}
//        the producer's keep-alive connections and the topics it cycles through
//                                           -> {"event":"producer"}
//   {"cmd":"begin"}                         -> {"event":"begun"}
//   {"cmd":"publish", rate, duration}       -> {"event":"published", count, seconds, failed, error}
//   {"cmd":"end", quiet_ms, max_wait_ms}    -> {"event":"step", received, histogram, ...}
// Each event's data is {"t": <monotonic µs when it was written or its POST sent>, "seq": n}:
// the latency of a delivery runs from the producer to the subscriber's frame.

import http from "node:http";
import net from "node:net";
import { once } from "node:events";
import { setTimeout as sleep } from "node:timers/promises";
import { WsClient } from "./wsclient.mjs";
import { Latencies, inLanes, reply, serveCommands } from "./agentload.mjs";
import { nowMicros, stampAt } from "./targets.mjs";

const EVENT = '{"type":"event"';
const SUBSCRIBE_TIMEOUT_MS = 30000;

const latencies = new Latencies();
const connections = [];
let producer = null;
let lastReceiveAt = 0;
let cpuAtBegin = process.cpuUsage();

// One /v1/events connection: its subscriptions, then the events they match.
class EventsConnection {
  constructor(host, port, token) {
    this.waiting = null; // {left, resolve, reject} while subscribing
    this.client = new WsClient({
      host, port, path: "/v1/events",
      headers: { "Sec-WebSocket-Protocol": `Bearer.${token}` },
      onMessage: (buffer) => this.onMessage(buffer),
      onClose: () => this.fail(new Error("the server closed the connection")),
    });
  }

  // Resolves once every pattern has its "subscribed" (an "error" rejects).
  async subscribe(patterns) {
    await this.client.connect();
    const done = new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("no answer to subscribe")), SUBSCRIBE_TIMEOUT_MS);
      this.waiting = {
        left: patterns.length,
        resolve: () => { clearTimeout(timer); resolve(); },
        reject: (error) => { clearTimeout(timer); reject(error); },
      };
    });
    patterns.forEach((topic, index) =>
      this.client.sendText(JSON.stringify({ type: "subscribe", id: `s${index}`, topic })));
    return done;
  }

  fail(error) {
    if (this.waiting) { const { reject } = this.waiting; this.waiting = null; reject(error); }
  }

  onMessage(buffer) {
    if (buffer.subarray(0, EVENT.length).toString() === EVENT) { // the hot path: no JSON.parse
      lastReceiveAt = Date.now();
      const stamp = stampAt(buffer, 0);
      if (stamp >= 0) latencies.record(stamp);
      return;
    }
    const frame = JSON.parse(buffer.toString());
    if (frame.type === "error") this.fail(new Error(`${frame.code}: ${frame.message}`));
    else if (frame.type === "subscribed" && this.waiting && --this.waiting.left === 0) {
      const { resolve } = this.waiting; this.waiting = null; resolve();
    }
  }
}

async function subscribe(m) {
  let failed = 0;
  let error = null;
  await inLanes(m.connections, async (patterns) => {
    const connection = new EventsConnection(m.host, m.port, m.token);
    try {
      await connection.subscribe(patterns);
      connections.push({ connection, patterns: patterns.length });
    } catch (reason) {
      failed++;
      error = error || String(reason);
      connection.client.close();
    }
  });
  const subscriptions = connections.reduce((sum, c) => sum + c.patterns, 0);
  reply({ event: "subscribed", count: connections.length, subscriptions, failed, error });
}

function openProducer(m) {
  return m.kind === "nats" ? openNats(m) : openRest(m);
}

// The REST producer: `inflight` keep-alive connections, each with one POST at a time,
// so that a request's cost is the server's handling, not a TCP handshake.
function openRest(m) {
  producer = {
    ...m,
    publish: publishRest,
    agent: new http.Agent({ keepAlive: true, maxSockets: m.inflight }),
  };
  reply({ event: "producer" });
}

// The NATS producer: the text protocol on a plain TCP connection, as another service
// would publish its events without a client library. The server's INFO is read and
// dropped, its PING answered; our PING's PONG tells that it has read all we wrote.
function openNats(m) {
  const socket = net.createConnection({ host: m.host, port: m.port });
  socket.setNoDelay(true);
  producer = { ...m, publish: publishNats, socket, pongs: [], error: null };
  let partial = "";
  socket.on("data", (chunk) => {
    const lines = (partial + chunk.toString("latin1")).split("\r\n");
    partial = lines.pop();
    lines.forEach(onNatsLine);
  });
  socket.on("error", (error) => { producer.error = producer.error || String(error); });
  socket.on("close", () => { producer.error = producer.error || "NATS closed the connection"; });
  return new Promise((resolve, reject) => {
    socket.once("error", reject);
    socket.once("connect", () => {
      socket.write('CONNECT {"verbose":false,"pedantic":false}\r\n');
      reply({ event: "producer" });
      resolve();
    });
  });
}

function onNatsLine(line) {
  if (line === "PING") producer.socket.write("PONG\r\n");
  else if (line === "PONG") producer.pongs.shift()?.();
  else if (line.startsWith("-ERR")) producer.error = producer.error || line;
}

// Resolves once the NATS server has answered a PING: it has read every PUB before it.
function natsFlushed() {
  return new Promise((resolve) => {
    producer.pongs.push(resolve);
    producer.socket.write("PING\r\n");
  });
}

function natsPub(seq) {
  const subject = producer.topics[seq % producer.topics.length];
  const payload = JSON.stringify({ t: nowMicros(), seq });
  return `PUB ${subject} ${payload.length}\r\n${payload}\r\n`;
}

// `rate` events a second for `duration` seconds: each tick writes the events due by
// then in one write; while the socket's buffer is full, none (the step shows the rate
// taken). `seconds` runs to the PONG after the last, so count / seconds is the rate
// the NATS server took.
async function publishNats({ rate, duration }) {
  const total = Math.round(rate * duration);
  const started = Date.now();
  let sent = 0;
  while (sent < total && !producer.error) {
    const due = Math.min(total, Math.floor(((Date.now() - started) / 1000) * rate) + 1);
    let batch = "";
    while (sent < due) batch += natsPub(sent++);
    if (batch && !producer.socket.write(batch)) await once(producer.socket, "drain");
    else await sleep(1);
  }
  if (!producer.error) await natsFlushed();
  const failed = producer.error ? total - sent : 0;
  reply({ event: "published", count: sent, seconds: (Date.now() - started) / 1000,
          failed, error: producer.error });
}

function publish(m) {
  return producer.publish(m);
}

// POST the `seq`-th event; calls done(error or null) when its answer has been read.
function post(seq, done) {
  const topic = producer.topics[seq % producer.topics.length];
  const body = JSON.stringify({ t: nowMicros(), seq });
  const request = http.request({
    host: producer.host, port: producer.port, method: "POST", agent: producer.agent,
    path: `/v1/events/${topic}`,
    headers: {
      Authorization: `Bearer ${producer.token}`,
      "Content-Type": "application/json",
      "Content-Length": Buffer.byteLength(body),
    },
  }, (response) => {
    response.resume();
    response.on("end", () => done(response.statusCode === 202 ? null : `HTTP ${response.statusCode}`));
  });
  request.on("error", (error) => done(String(error)));
  request.end(body);
}

// `rate` events a second for `duration` seconds, at most `inflight` at a time; a
// request that cannot start when due starts as soon as one ends. Resolves when
// every answer is in: `seconds` runs to the last one, so count / seconds is the
// rate the server took, whatever was asked.
function publishRest({ rate, duration }) {
  const total = Math.round(rate * duration);
  const started = Date.now();
  let sent = 0, answered = 0, active = 0, failed = 0, error = null, timer = null;
  return new Promise((resolve) => {
    const pump = () => {
      clearTimeout(timer);
      const due = Math.min(total, Math.floor(((Date.now() - started) / 1000) * rate) + 1);
      while (sent < due && active < producer.inflight) {
        active++;
        post(sent++, answeredOne);
      }
      if (sent < total) timer = setTimeout(pump, 1);
    };
    const answeredOne = (problem) => {
      active--;
      answered++;
      if (problem) { failed++; error = error || problem; }
      if (answered === total) {
        resolve();
        reply({ event: "published", count: sent, seconds: (Date.now() - started) / 1000, failed, error });
      } else pump();
    };
    pump();
  });
}

function begin() {
  latencies.reset();
  cpuAtBegin = process.cpuUsage();
  reply({ event: "begun" });
}

// Report once nothing has arrived for `quiet_ms` since both the last event and the
// question (or after `max_wait_ms`).
function end({ quiet_ms = 300, max_wait_ms = 5000 }) {
  const asked = Date.now();
  const check = () => {
    const now = Date.now();
    if (now - Math.max(lastReceiveAt, asked) < quiet_ms && now - asked < max_wait_ms) {
      setTimeout(check, 20);
      return;
    }
    const cpu = process.cpuUsage(cpuAtBegin);
    reply({
      event: "step", received: latencies.received,
      histogram: Object.fromEntries(latencies.histogram), max_us: latencies.maxLatency,
      cpu_seconds: (cpu.user + cpu.system) / 1e6,
      open: connections.filter((c) => !c.connection.client.closed).length,
    });
  };
  check();
}

serveCommands({
  subscribe, producer: openProducer, begin, publish, end, quit: () => process.exit(0),
});
