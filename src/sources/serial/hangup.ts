import { read } from 'node:fs';
import { promisify } from 'node:util';

const readAsync = promisify(read);

/** The parts of serialport's Linux/macOS port binding (`port.port`) that reading needs. */
interface UnixPortBinding {
  fd: number | null;
  readonly isOpen: boolean;
  poller: { once(event: 'readable', callback: (err: Error | null) => void): unknown };
  read(buffer: Buffer, offset: number, length: number): Promise<{ buffer: Buffer; bytesRead: number }>;
}

function isUnixPortBinding(x: unknown): x is UnixPortBinding {
  if (typeof x !== 'object' || x === null) return false;
  const b = x as Partial<UnixPortBinding>;
  return typeof b.fd === 'number' && typeof b.read === 'function' && typeof b.poller?.once === 'function';
}

function canceled(): Error {
  return Object.assign(new Error('Port is not open'), { canceled: true });
}

const RETRY = new Set(['EAGAIN', 'EWOULDBLOCK', 'EINTR']);

/**
 * Makes an unplug visible. A tty whose device went away (a USB adapter pulled, the master of a
 * pty closed) is hung up: read() returns 0 bytes for ever. serialport's binding (bindings-cpp 13)
 * answers 0 bytes by reading again at once, so the port spins on the thread pool and never
 * reports the loss. This replaces `read` of the open port's binding by the same non-blocking
 * read-or-wait loop, except that 0 bytes (end of file: the port never returns 0 otherwise) is a
 * disconnect error, which serialport turns into a `close` event with `disconnected: true`.
 * Bindings without a file descriptor (Windows) are left as they are. Call before the first read
 * (before attaching a `data` listener).
 */
export function reportHangups(binding: unknown): boolean {
  if (!isUnixPortBinding(binding)) return false;
  const port = binding;
  const readable = () =>
    new Promise<void>((resolve, reject) =>
      port.poller.once('readable', (err) => (err ? reject(err) : resolve())),
    );
  port.read = async (buffer, offset, length) => {
    for (;;) {
      const fd = port.fd;
      if (!port.isOpen || fd === null) throw canceled();
      try {
        const { bytesRead } = await readAsync(fd, buffer, offset, length, null);
        if (bytesRead === 0)
          throw Object.assign(new Error('the port hung up (device unplugged)'), { disconnect: true });
        return { buffer, bytesRead };
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === undefined || !RETRY.has(code)) throw err;
        if (!port.isOpen) throw canceled();
        await readable();
      }
    }
  };
  return true;
}
