// The stream scenario's load generator: sessions on /v1/stream (seed 004), one
// plain JSON WebSocket connection each. It answers the harness as chat.mjs does,
// so that ChatLoad drives either one.
//
// Driven by the harness over stdin/stdout, one JSON object per line:
//   {"cmd":"setup", host, ports, sessions:[{id, token}], setup_agent}
//        every connection submits a task without a session_id to a zero-token
//        agent: the server makes the session (session.ready) and runs the task
//        to its task:done                                     -> {"event":"ready"}
//   {"cmd":"run", agent, timeout_ms}
//        every connection submits one task to its session at once, and records
//        the latency of each task:token until its task:done  -> {"event":"done", ...}
// Each token is the server's monotonic clock in microseconds (the synthetic agent).
// The set-up mirrors the chat scenario's (a session made, then one message timed),
// so that the two measure the same work, each through its own face.

import { WsClient } from "./wsclient.mjs";
import { Latencies, inLanes, reply, reportRun, serveCommands } from "./agentload.mjs";

const TOKEN = '{"type":"task:token"';
const TEXT = '"text":"';

const latencies = new Latencies();
let sessions = [];

// One session: its own connection, the token in the subprotocol (echoed by the server).
class StreamSession {
  constructor(host, port, token) {
    this.sessionId = null;
    this.ended = null; // {resolve, reject} until the task's task:done (or a refusal)
    this.client = new WsClient({
      host, port, path: "/v1/stream",
      headers: { "Sec-WebSocket-Protocol": `Bearer.${token}` },
      onMessage: (buffer) => this.onMessage(buffer),
      onClose: () => this.fail(new Error("the server closed the connection")),
    });
  }

  open() {
    return this.client.connect();
  }

  // Submit a task; resolves at its task:done, rejects on an error frame or task:failed.
  submit(body) {
    const done = new Promise((resolve, reject) => (this.ended = { resolve, reject }));
    this.client.sendText(JSON.stringify({ type: "task.submit", mode: "session", ...body }));
    return done;
  }

  fail(error) {
    if (this.ended) { const { reject } = this.ended; this.ended = null; reject(error); }
  }

  onMessage(buffer) {
    const text = buffer.toString();
    if (text.startsWith(TOKEN)) { // the hot path: no JSON.parse per token
      const stamp = parseInt(text.slice(text.indexOf(TEXT) + TEXT.length), 10);
      if (!Number.isNaN(stamp)) latencies.record(stamp);
      return;
    }
    const event = JSON.parse(text);
    if (event.type === "session.ready") this.sessionId = event.session_id;
    else if (event.type === "task:done" && this.ended) {
      const { resolve } = this.ended; this.ended = null; resolve(event.status);
    } else if (event.type === "error" || event.type === "task:failed") {
      this.fail(new Error(`${event.type}: ${event.code || ""} ${event.message || event.error || ""}`));
    }
  }
}

async function setup(m) {
  sessions = [];
  await inLanes(m.sessions, async ({ token }) => {
    const session = new StreamSession(m.host, m.ports[0], token);
    await session.open();
    await session.submit({ profile_id: m.setup_agent, prompt: "setup" });
    if (!session.sessionId) throw new Error("no session.ready before task:done");
    sessions.push(session);
  });
  reply({ event: "ready", sessions: sessions.length, devices: sessions.length });
}

async function run(m) {
  latencies.reset();
  const cpuBefore = process.cpuUsage();
  const started = Date.now();
  let completed = 0;
  let failed = 0;
  let error = null;
  const finished = sessions.map((session) =>
    session.submit({ session_id: session.sessionId, profile_id: m.agent, prompt: "go" }).then(
      () => completed++,
      (reason) => { failed++; error = error || String(reason); },
    ));
  await reportRun(latencies, finished, m.timeout_ms, cpuBefore, started,
    () => ({ completed, failed, error }));
}

serveCommands({ setup, run, quit: () => process.exit(0) });
