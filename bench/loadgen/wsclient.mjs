// A minimal WebSocket client on raw TCP sockets, built for receiving fast.
//
// Node's `ws` costs more per message than the servers we measure can send, so the
// load generator parses frames itself (RFC 6455 5.2): one Buffer.concat-free scan
// per chunk, payloads handed out as subarrays (no copies). It offers no
// extensions, so permessage-deflate is never negotiated.

import net from "node:net";
import crypto from "node:crypto";

const OPCODE_TEXT = 0x1;
const OPCODE_BINARY = 0x2;
const OPCODE_CLOSE = 0x8;
const OPCODE_PING = 0x9;

export class WsClient {
  // onMessage(payload: Buffer, opcode) is called for every complete data message.
  constructor({ host, port, path, headers = {}, onMessage, onClose }) {
    this.host = host;
    this.port = port;
    this.path = path;
    this.headers = headers;
    this.onMessage = onMessage;
    this.onClose = onClose || (() => {});
    this.socket = null;
    this.open = false;
    this.closed = false;
    this._pending = null; // bytes of an incomplete frame
    this._fragments = null;
  }

  connect() {
    return new Promise((resolve, reject) => {
      const key = crypto.randomBytes(16).toString("base64");
      const socket = net.connect({ host: this.host, port: this.port });
      this.socket = socket;
      socket.setNoDelay(true);
      let head = Buffer.alloc(0);
      const onHead = (chunk) => {
        head = Buffer.concat([head, chunk]);
        const end = head.indexOf("\r\n\r\n");
        if (end < 0) return;
        socket.off("data", onHead);
        const status = head.subarray(0, end).toString("latin1").split("\r\n")[0];
        if (!status.includes(" 101 ")) {
          socket.destroy();
          reject(new Error(`upgrade refused: ${status}`));
          return;
        }
        this.open = true;
        socket.on("data", (data) => this._receive(data));
        const rest = head.subarray(end + 4);
        if (rest.length) this._receive(rest);
        resolve();
      };
      socket.on("data", onHead);
      socket.once("error", (error) => {
        if (!this.open) reject(error);
      });
      socket.on("close", () => {
        this.closed = true;
        this.onClose();
      });
      const lines = [
        `GET ${this.path} HTTP/1.1`,
        `Host: ${this.host}:${this.port}`,
        "Upgrade: websocket",
        "Connection: Upgrade",
        `Sec-WebSocket-Key: ${key}`,
        "Sec-WebSocket-Version: 13",
        ...Object.entries(this.headers).map(([k, v]) => `${k}: ${v}`),
        "",
        "",
      ];
      socket.write(lines.join("\r\n"));
    });
  }

  sendText(text) {
    this._sendFrame(OPCODE_TEXT, Buffer.from(text));
  }

  _sendFrame(opcode, payload) {
    // Client frames must be masked (RFC 6455 5.3).
    const mask = crypto.randomBytes(4);
    const length = payload.length;
    let header;
    if (length < 126) {
      header = Buffer.from([0x80 | opcode, 0x80 | length]);
    } else if (length < 65536) {
      header = Buffer.alloc(4);
      header[0] = 0x80 | opcode;
      header[1] = 0x80 | 126;
      header.writeUInt16BE(length, 2);
    } else {
      header = Buffer.alloc(10);
      header[0] = 0x80 | opcode;
      header[1] = 0x80 | 127;
      header.writeBigUInt64BE(BigInt(length), 2);
    }
    const masked = Buffer.allocUnsafe(length);
    for (let i = 0; i < length; i++) masked[i] = payload[i] ^ mask[i & 3];
    this.socket.write(Buffer.concat([header, mask, masked]));
  }

  pause() {
    this.socket.pause();
  }

  close() {
    if (!this.closed) this.socket.destroy();
  }

  // A clean leave: a Close frame with 1000, normal closure (RFC 6455 5.5.1,
  // 7.4.1), then the end of our side; the server's Close in reply finishes it.
  leave() {
    if (this.closed) return;
    this._sendFrame(OPCODE_CLOSE, Buffer.from([0x03, 0xe8]));
    this.socket.end();
  }

  _receive(chunk) {
    let data = this._pending ? Buffer.concat([this._pending, chunk]) : chunk;
    let offset = 0;
    while (data.length - offset >= 2) {
      const first = data[offset];
      const second = data[offset + 1];
      let length = second & 0x7f;
      let start = offset + 2;
      if (length === 126) {
        if (data.length - offset < 4) break;
        length = data.readUInt16BE(offset + 2);
        start = offset + 4;
      } else if (length === 127) {
        if (data.length - offset < 10) break;
        length = Number(data.readBigUInt64BE(offset + 2));
        start = offset + 10;
      }
      if (data.length < start + length) break;
      this._frame(first, data.subarray(start, start + length));
      offset = start + length;
    }
    this._pending = offset < data.length ? data.subarray(offset) : null;
    if (this._pending && offset > 0) this._pending = Buffer.from(this._pending);
  }

  _frame(first, payload) {
    const opcode = first & 0x0f;
    const fin = (first & 0x80) !== 0;
    if (opcode === OPCODE_PING) {
      this._sendFrame(0xa, payload);
      return;
    }
    if (opcode === OPCODE_CLOSE) {
      this.close();
      return;
    }
    if (opcode === OPCODE_TEXT || opcode === OPCODE_BINARY) {
      if (fin) this.onMessage(payload, opcode);
      else this._fragments = [Buffer.from(payload)];
      return;
    }
    if (opcode === 0 && this._fragments) {
      this._fragments.push(Buffer.from(payload));
      if (fin) {
        const whole = Buffer.concat(this._fragments);
        this._fragments = null;
        this.onMessage(whole, OPCODE_TEXT);
      }
    }
  }
}
