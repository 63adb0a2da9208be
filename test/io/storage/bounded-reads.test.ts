import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BlockedSourceError, ReadTimeoutError, TooLargeError } from '../../../src/core/errors.js';
import { readWhole, stallTimer } from '../../../src/io/storage/bounded.js';
import { Storage } from '../../../src/io/storage/storage.js';

/**
 * Every read is bounded while it happens (issue 14): devices and FIFOs are never read, bytes are
 * counted on the stream rather than trusted from stat or a header, and a stalled source fails.
 * Each case hung or grew without bound before (an image reference to /dev/zero grew the process
 * past 6 GB; a FIFO held its run for the 10-minute watchdog).
 */
describe('bounded local reads', () => {
  let dir: string;
  const storage = new Storage();
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'capfilt-bounded-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('refuses /dev/zero and /dev/urandom unread (stat says 0 bytes for a device)', async () => {
    for (const device of ['/dev/zero', '/dev/urandom']) {
      const before = process.memoryUsage().rss;
      const err = await storage.read(device, { limits: { maxBytes: 1 << 20 } }).catch((e: unknown) => e);
      expect(err, device).toBeInstanceOf(BlockedSourceError);
      expect((err as Error).message).toBe(`${device}: a device, not a regular file`);
      expect(process.memoryUsage().rss - before).toBeLessThan(64 << 20);
    }
  }, 5_000);

  it('refuses a FIFO at once instead of blocking on it (read, stream and range)', async () => {
    const fifo = join(dir, 'pipe.jpg');
    execFileSync('mkfifo', [fifo]);
    await expect(storage.read(fifo, { limits: { maxBytes: 1000 } })).rejects.toThrow(
      `${fifo}: a FIFO, not a regular file`,
    );
    await expect(storage.readStream(fifo)).rejects.toBeInstanceOf(BlockedSourceError);
    await expect(storage.readRange(fifo, 0, 10)).rejects.toBeInstanceOf(BlockedSourceError);
  }, 5_000);

  it('counts bytes on the stream: a source that says nothing about its size is cut at the cap', async () => {
    const endless = Readable.from(
      (function* () {
        for (;;) yield Buffer.alloc(64 << 10);
      })(),
    );
    const err = await readWhole(endless, 'endless', { maxBytes: 1 << 20 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TooLargeError);
    expect((err as Error).message).toBe('endless: more than 1048576 bytes (cap)');
    expect(endless.destroyed).toBe(true);
  });

  it('fails a read that stops making progress, and not one that is merely slow', async () => {
    const stalled = new Readable({ read() {} });
    stalled.push(Buffer.from('some bytes'));
    await expect(readWhole(stalled, 'stalled', { timeoutMs: 200 })).rejects.toThrow(
      'stalled: read did not finish within 200 ms',
    );
    const slow = Readable.from(
      (async function* () {
        for (let i = 0; i < 5; i++) {
          await new Promise((r) => setTimeout(r, 100));
          yield Buffer.from('x');
        }
      })(),
    );
    expect((await readWhole(slow, 'slow', { timeoutMs: 300 })).toString()).toBe('xxxxx');
  });

  it('a stall check does not blame the source for time the event loop was blocked', async () => {
    let stalled = false;
    const timer = stallTimer(50, () => {
      stalled = true;
    });
    // onnxruntime blocks the loop like this for a whole model call.
    const until = Date.now() + 300;
    while (Date.now() < until) {}
    timer.progress();
    await new Promise((r) => setTimeout(r, 30));
    expect(stalled).toBe(false);
    await new Promise((r) => setTimeout(r, 150));
    expect(stalled).toBe(true);
  });

  it('a regular file over the cap is refused before it is read; under it, read whole', async () => {
    const file = join(dir, 'a.bin');
    await writeFile(file, Buffer.alloc(2000, 1));
    await expect(storage.read(file, { limits: { maxBytes: 1000 } })).rejects.toThrow('2000 bytes > cap 1000');
    expect((await storage.read(file, { limits: { maxBytes: 2000 } })).length).toBe(2000);
  });
});

/** An S3 endpoint that answers every GET the way a broken or hostile store might. */
function fakeS3(answer: (res: import('node:http').ServerResponse) => void): Promise<Server> {
  const server = createServer((req, res) => {
    req.resume();
    answer(res);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

describe('bounded S3 reads', () => {
  const servers: Server[] = [];
  const storageFor = (server: Server, idleTimeoutMs?: number) =>
    new Storage({
      s3: {
        endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
        forcePathStyle: true,
        maxAttempts: 1,
      },
      ...(idleTimeoutMs ? { idleTimeoutMs } : {}),
    });
  beforeAll(() => {
    process.env.AWS_ACCESS_KEY_ID ??= 'test';
    process.env.AWS_SECRET_ACCESS_KEY ??= 'test';
  });
  afterAll(async () => {
    for (const s of servers) {
      s.closeAllConnections();
      await new Promise((r) => s.close(r));
    }
  });

  it('an object sent without a length is counted as it arrives and cut at the cap', async () => {
    const server = await fakeS3((res) => {
      res.writeHead(200, { 'content-type': 'image/jpeg', etag: '"x"' });
      for (let i = 0; i < 64; i++) res.write(Buffer.alloc(1024, 7));
      res.end();
    });
    servers.push(server);
    const storage = storageFor(server);
    const err = await storage.read('s3://b/k.jpg', { limits: { maxBytes: 4096 } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TooLargeError);
    storage.close();
  });

  it('a body that stalls fails the read after the read timeout', async () => {
    const server = await fakeS3((res) => {
      res.writeHead(200, { 'content-type': 'image/jpeg', 'content-length': '100000', etag: '"x"' });
      res.write(Buffer.alloc(10));
    });
    servers.push(server);
    const storage = storageFor(server, 300);
    const err = await storage
      .read('s3://b/k.jpg', { limits: { maxBytes: 1 << 20, fetchTimeoutMs: 300 } })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ReadTimeoutError);
    // A manifest or tar streamed from S3 fails the same way when it stalls.
    const stream = await storage.readStream('s3://b/m.jsonl');
    const consumed = (async () => {
      for await (const _ of stream) {
      }
    })();
    await expect(consumed).rejects.toThrow('s3://b/m.jsonl: no data for 300 ms; read did not finish');
    storage.close();
  }, 10_000);
});
