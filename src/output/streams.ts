import { once } from 'node:events';
import type { Writable } from 'node:stream';

/** Resolves once the chunk is written, or after 'drain' when the stream's buffer is full. */
export function writeChunk(stream: Writable, chunk: string | Uint8Array): Promise<void> {
  return new Promise((resolve, reject) => {
    const ok = stream.write(chunk, (err) => {
      if (err) reject(err);
      else if (ok) resolve();
    });
    // once() rejects if the stream errors while the write waits for room.
    if (!ok) once(stream, 'drain').then(() => resolve(), reject);
  });
}
