/**
 * Reads bounded while they happen: bytes are counted as they arrive (a size from stat or a header
 * is a claim: a device says 0, a server may say nothing or lie) and a read that stops making
 * progress fails instead of holding its shard forever.
 */
import { type Readable, Transform, type TransformCallback } from 'node:stream';
import { ReadTimeoutError, TooLargeError } from '../../core/errors.js';

/** A stall check: a loop turn that takes longer than this means the event loop was blocked. */
const BLOCKED_TURN_MS = 250;

/**
 * Calls `onStall` once no progress has been reported for `ms` while the event loop was free to
 * deliver some. onnxruntime blocks the loop for whole model calls (seconds), during which bytes
 * that did arrive cannot be delivered; a check that finds the loop was blocked waits another turn
 * rather than blaming the source.
 */
export function stallTimer(ms: number, onStall: () => void): { progress(): void; stop(): void } {
  let last = Date.now();
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  const arm = (delay: number) => {
    timer = setTimeout(check, Math.max(1, delay));
  };
  const check = () => {
    if (stopped) return;
    if (Date.now() - last < ms) return arm(ms - (Date.now() - last));
    const t = Date.now();
    // One more turn of the loop (an I/O poll phase) before deciding.
    timer = setTimeout(() => {
      if (stopped) return;
      if (Date.now() - last < ms || Date.now() - t > BLOCKED_TURN_MS) return arm(10);
      stopped = true;
      onStall();
    }, 10);
  };
  arm(ms);
  return {
    progress() {
      last = Date.now();
    },
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}

export interface StreamBounds {
  /** Fail once more than this many bytes have arrived. */
  maxBytes?: number;
  /** Fail when no byte arrives for this long (0 or unset: never). */
  timeoutMs?: number;
}

/** The whole stream as one buffer, failing past `maxBytes` or a stall of `timeoutMs`; destroyed on failure. */
export function readWhole(stream: Readable, uri: string, bounds: StreamBounds): Promise<Buffer> {
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const stall = bounds.timeoutMs
      ? stallTimer(bounds.timeoutMs, () => fail(new ReadTimeoutError(uri, bounds.timeoutMs ?? 0)))
      : null;
    const fail = (err: Error) => {
      stall?.stop();
      stream.destroy();
      reject(err);
    };
    stream.on('data', (chunk: Buffer) => {
      stall?.progress();
      size += chunk.length;
      if (bounds.maxBytes !== undefined && size > bounds.maxBytes) {
        fail(new TooLargeError(uri, null, bounds.maxBytes));
        return;
      }
      chunks.push(chunk);
    });
    stream.once('error', (err) => fail(err));
    stream.once('end', () => {
      stall?.stop();
      resolve(Buffer.concat(chunks, size));
    });
  });
}

/**
 * `source` passed through, failing with a ReadTimeoutError when no byte arrives for `idleMs` while
 * the reader waits for one (a stalled S3 socket); a reader that pauses is not a stall. Destroying
 * the result destroys `source`.
 */
export function withIdleTimeout(source: Readable, uri: string, idleMs: number): Readable {
  let stall: ReturnType<typeof stallTimer> | null = null;
  let over = false;
  const out: Transform = new Transform({
    transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback) {
      stall?.stop();
      stall = null;
      done(null, chunk);
    },
    read(size) {
      if (!over)
        stall ??= stallTimer(idleMs, () =>
          out.destroy(new ReadTimeoutError(uri, idleMs, `no data for ${idleMs} ms; read`)),
        );
      Transform.prototype._read.call(this, size);
    },
    flush(done) {
      over = true;
      stall?.stop();
      done();
    },
    destroy(err, done) {
      over = true;
      stall?.stop();
      source.destroy();
      done(err);
    },
  });
  source.once('error', (err) => out.destroy(err));
  source.pipe(out);
  return out;
}
