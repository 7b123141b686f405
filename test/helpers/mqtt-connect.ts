import { createConnection } from 'node:net';

export interface ConnectFields {
  clientId: string;
  clean: boolean;
  username?: string;
  password?: string;
  keepalive?: number;
  /** 4: MQTT 3.1.1 (the default); 3: MQTT 3.1 (`MQIsdp`). */
  protocol?: 3 | 4;
}

/**
 * An MQTT CONNECT packet written by hand, so that a test can send what mqtt.js refuses to
 * (a zero-length ClientId with CleanSession 0).
 */
export function connectPacket(fields: ConnectFields): Buffer {
  const str = (s: string) => {
    const bytes = Buffer.from(s, 'utf8');
    const len = Buffer.alloc(2);
    len.writeUInt16BE(bytes.length);
    return Buffer.concat([len, bytes]);
  };
  let flags = fields.clean ? 0x02 : 0;
  const payload = [str(fields.clientId)];
  if (fields.username !== undefined) {
    flags |= 0x80;
    payload.push(str(fields.username));
  }
  if (fields.password !== undefined) {
    flags |= 0x40;
    payload.push(str(fields.password));
  }
  const keepalive = Buffer.alloc(2);
  keepalive.writeUInt16BE(fields.keepalive ?? 30);
  const name = fields.protocol === 3 ? 'MQIsdp' : 'MQTT';
  const level = fields.protocol ?? 4;
  const body = Buffer.concat([str(name), Buffer.from([level, flags]), keepalive, ...payload]);
  return Buffer.concat([Buffer.from([0x10]), remainingLength(body.length), body]);
}

function remainingLength(n: number): Buffer {
  const bytes: number[] = [];
  do {
    bytes.push((n % 128) | (n >= 128 ? 0x80 : 0));
    n = Math.floor(n / 128);
  } while (n > 0);
  return Buffer.from(bytes);
}

export interface ConnackAnswer {
  /** The CONNACK's four bytes, or null when the broker closed the connection without one. */
  connack: Buffer | null;
  returnCode: number | null;
  /** Milliseconds from writing the CONNECT to the CONNACK (or the close). */
  elapsedMs: number;
}

/**
 * Connects over TCP, sends one CONNECT and waits for the CONNACK (or the close), then closes.
 * `localAddress` picks the client's address (any of 127.0.0.0/8 on Linux).
 */
export function sendConnect(
  port: number,
  fields: ConnectFields,
  options: { localAddress?: string; timeoutMs?: number } = {},
): Promise<ConnackAnswer> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({
      port,
      host: '127.0.0.1',
      ...(options.localAddress ? { localAddress: options.localAddress } : {}),
    });
    let received = Buffer.alloc(0);
    let started = 0n;
    let settled = false;
    const finish = (connack: Buffer | null) => {
      if (settled) return;
      settled = true;
      const elapsedMs = Number(process.hrtime.bigint() - started) / 1e6;
      socket.destroy();
      resolve({ connack, returnCode: connack ? (connack[3] ?? null) : null, elapsedMs });
    };
    socket.setTimeout(options.timeoutMs ?? 5_000, () => {
      settled = true;
      socket.destroy();
      reject(new Error('no CONNACK and no close within the timeout'));
    });
    socket.once('connect', () => {
      started = process.hrtime.bigint();
      socket.write(connectPacket(fields));
    });
    socket.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      if (received.length >= 4) finish(received.subarray(0, 4));
    });
    socket.once('close', () => finish(null));
    socket.once('error', (err) => {
      if (!settled && started === 0n) {
        settled = true;
        reject(err);
      }
    });
  });
}
