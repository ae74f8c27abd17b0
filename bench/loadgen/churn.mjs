// Clients that come and go, for the churn scenario.
//
// Each churning client connects, joins the group (so that the server builds
// everything a real member has: connection, outbox, group entry), stays
// `lifetime_ms`, and leaves with a WebSocket Close. The population is filled at
// once, each with a random part of a lifetime left, so that departures run at
// `rate` a second from the start; arrivals then come at `rate` a second. The
// steady subscribers (worker.mjs) measure what this does to delivery latency.
//
// Its deliveries are counted, not timed: a churner's latency is not the figure.

import { WsClient } from "./wsclient.mjs";
import { nowMicros } from "./targets.mjs";

const LOG_RATIO = Math.log(1.02);
const FILL_CONCURRENCY = 32;
const TICK_MS = 10;

export class Churn {
  constructor(target, options) {
    this.target = target;
    this.options = options;
    this.live = new Set();
    this.timers = new Set();
    this.stopped = false;
    this.tally = { opened: 0, failed: 0, left: 0, dropped: 0, received: 0, error: null };
    this.joinHistogram = new Map(); // time from connect to joined, log-scale like worker.mjs
    this.joinMax = 0;
  }

  async start({ population, rate, lifetime_ms }) {
    this.lifetime = lifetime_ms;
    let next = 0;
    const lane = async () => {
      while (next < population) {
        next++;
        await this.arrive(Math.random() * lifetime_ms);
      }
    };
    await Promise.all(Array.from({ length: Math.min(FILL_CONCURRENCY, population) }, lane));
    this.startedAt = Date.now();
    this.arrivals = 0;
    this.tick(rate);
    return this.live.size;
  }

  // Arrivals on a clock, catching up on timer lateness (as worker.mjs publishes).
  tick(rate) {
    if (this.stopped) return;
    const due = Math.floor(((Date.now() - this.startedAt) / 1000) * rate);
    while (this.arrivals < due) {
      this.arrivals++;
      this.arrive(this.lifetime);
    }
    this.timer = setTimeout(() => this.tick(rate), TICK_MS);
  }

  async arrive(stayMs) {
    const began = nowMicros();
    const client = this.newClient();
    try {
      await client.connect();
      await this.target.subscribe(client, this.options);
    } catch (error) {
      this.tally.failed++;
      this.tally.error = this.tally.error || String(error);
      client.close();
      return;
    }
    this.recordJoin(nowMicros() - began);
    this.tally.opened++;
    this.live.add(client);
    if (this.stopped) return this.leave(client);
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      this.leave(client);
    }, stayMs);
    this.timers.add(timer);
  }

  newClient() {
    const client = new WsClient({
      host: this.options.host,
      port: this.options.port,
      path: this.target.subscriberPath(this.options),
      onMessage: (buffer) => {
        if (client.waiter) return client.waiter(buffer);
        this.target.scan(buffer, () => this.tally.received++);
      },
      onClose: () => {
        // Closed before it chose to leave: the server dropped it.
        if (this.live.delete(client)) this.tally.dropped++;
      },
    });
    return client;
  }

  leave(client) {
    if (!this.live.delete(client)) return;
    this.tally.left++;
    client.leave();
  }

  recordJoin(micros) {
    const latency = Math.max(1, micros);
    const bucket = Math.floor(Math.log(latency) / LOG_RATIO);
    this.joinHistogram.set(bucket, (this.joinHistogram.get(bucket) || 0) + 1);
    if (latency > this.joinMax) this.joinMax = latency;
  }

  // Stop arrivals; everyone still here leaves now.
  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    const stillHere = this.live.size;
    for (const client of [...this.live]) this.leave(client);
    return {
      ...this.tally,
      still_here: stillHere,
      join: { histogram: Object.fromEntries(this.joinHistogram), max_us: this.joinMax },
    };
  }
}
