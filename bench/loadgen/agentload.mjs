// What the agent load generators (chat.mjs, stream.mjs) share: token latency
// recorded into a log-bucketed histogram, work in bounded lanes, the timed run's
// report, and the command loop over stdin/stdout (one JSON object per line).

import readline from "node:readline";
import { nowMicros } from "./targets.mjs";

const LOG_RATIO = Math.log(1.02);
const CONCURRENCY = 32;

// Token latencies since the last reset(): each token is the server's monotonic
// clock in microseconds (the synthetic agent), so its latency is now minus it.
export class Latencies {
  constructor() { this.reset(); }

  reset() {
    this.histogram = new Map();
    this.received = 0;
    this.maxLatency = 0;
  }

  record(stamp) {
    const latency = Math.max(1, nowMicros() - stamp);
    const bucket = Math.floor(Math.log(latency) / LOG_RATIO);
    this.histogram.set(bucket, (this.histogram.get(bucket) || 0) + 1);
    this.received++;
    if (latency > this.maxLatency) this.maxLatency = latency;
  }
}

export function reply(event) {
  process.stdout.write(JSON.stringify(event) + "\n");
}

// work(item) for every item, at most CONCURRENCY at a time.
export async function inLanes(items, work) {
  let next = 0;
  async function lane() { while (next < items.length) await work(items[next++]); }
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, items.length) }, lane));
}

// Wait for `finished` (or `timeoutMs`), then report the run: what arrived, how
// fast, and the generator's own CPU (to show it was not the bottleneck).
export async function reportRun(latencies, finished, timeoutMs, cpuBefore, started, extra) {
  let timer;
  const timeout = new Promise((resolve) => (timer = setTimeout(resolve, timeoutMs)));
  await Promise.race([Promise.all(finished), timeout]);
  clearTimeout(timer);
  const cpu = process.cpuUsage(cpuBefore);
  reply({
    event: "done", received: latencies.received, expected_completions: finished.length,
    histogram: Object.fromEntries(latencies.histogram), max_us: latencies.maxLatency,
    cpu_seconds: (cpu.user + cpu.system) / 1e6, elapsed: (Date.now() - started) / 1000,
    ...extra(),
  });
}

// Answer the harness's commands, one JSON line each, until stdin ends.
export function serveCommands(commands) {
  readline.createInterface({ input: process.stdin }).on("line", async (line) => {
    const message = JSON.parse(line);
    try {
      await commands[message.cmd](message);
    } catch (error) {
      reply({ event: "error", cmd: message.cmd, error: String((error && error.stack) || error) });
    }
  });
  process.stdin.on("end", () => process.exit(0));
}
