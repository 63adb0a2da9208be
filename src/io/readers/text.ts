/**
 * Manifest bytes as bounded streams: gunzipping stops at a decompression bomb, and lines are cut
 * out of the byte stream with a length limit enforced as the bytes arrive, so that no line or
 * value is ever held whole beyond the limit.
 */
import { pipeline, type Readable, Transform, type TransformCallback } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { BadInputError } from '../../core/errors.js';
import type { Storage } from '../storage/storage.js';

/**
 * Longest row of a text manifest (a JSONL line, a CSV record): an image reference, a caption and
 * some metadata take a few hundred bytes; anything longer is rejected as a row, unread.
 */
export const MAX_ROW_BYTES = 4 << 20;

/**
 * A .gz input may inflate to this many times the compressed bytes read so far (plus a first
 * 64 MiB): text manifests compress 3-20x, a decompression bomb about 1000x.
 */
const MAX_GUNZIP_RATIO = 200;
const GUNZIP_ALLOWANCE = 64 << 20;

/**
 * `raw` gunzipped, failing with a BadInputError past the ratio. Destroying the result (a reader
 * that stops early) also destroys `raw`, so its file descriptor or S3 socket is released, and an
 * error on `raw` reaches the result.
 */
export function gunzip(raw: Readable, uri: string): Readable {
  const inflate = createGunzip();
  let out = 0;
  const limit = new Transform({
    transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback) {
      out += chunk.length;
      if (out > GUNZIP_ALLOWANCE + MAX_GUNZIP_RATIO * inflate.bytesWritten) {
        done(
          new BadInputError(
            uri,
            `inflates to more than ${MAX_GUNZIP_RATIO} times its compressed size (${out} bytes from ${inflate.bytesWritten}): a decompression bomb?`,
          ),
        );
        return;
      }
      done(null, chunk);
    },
  });
  // The error is already on the returned stream (pipeline destroys every stream with it).
  return pipeline(raw, inflate, limit, () => undefined);
}

/** A byte stream of the file, gunzipped when its name ends in .gz. */
export async function openText(storage: Storage, uri: string): Promise<Readable> {
  const raw = await storage.readStream(uri);
  return /\.gz$/i.test(uri) ? gunzip(raw, uri) : raw;
}

/** One line of a text file: its text, or null when it is longer than the limit (then never read). */
export interface Line {
  text: string | null;
  /** 1-based line number, blank lines counted. */
  number: number;
  /** Byte offset of the line's first byte in the (decompressed) file. */
  offset: number;
  /** The line's length in bytes, without its line break. */
  bytes: number;
}

/**
 * Non-blank lines of a byte stream (all lines with `keepBlank`), split at \n (a \r before it
 * dropped, a leading BOM too). A line longer than `maxBytes` is yielded with text null, its bytes
 * skipped as they arrive. Blank lines cost a scan, not a string.
 */
export async function* splitLines(
  stream: Readable,
  maxBytes: number,
  keepBlank = false,
): AsyncGenerator<Line> {
  let parts: Buffer[] = [];
  let length = 0;
  let number = 1;
  let start = 0;
  let consumed = 0;
  const take = (): Line | null => {
    const at = { number, offset: start };
    const line =
      length === 0
        ? keepBlank
          ? { text: '', bytes: 0, ...at }
          : null
        : lineOf(parts, length, maxBytes, keepBlank, at);
    parts = [];
    length = 0;
    return line;
  };
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    let from = 0;
    for (;;) {
      const nl = chunk.indexOf(10, from);
      const end = nl < 0 ? chunk.length : nl;
      if (end > from) {
        if (length + (end - from) <= maxBytes) parts.push(chunk.subarray(from, end));
        else parts = [];
        length += end - from;
      }
      if (nl < 0) break;
      const line = take();
      if (line) yield line;
      number++;
      from = nl + 1;
      if (!keepBlank) {
        // A run of empty lines: skipped byte by byte, not line by line.
        while (chunk[from] === 10) {
          from++;
          number++;
        }
      }
      start = consumed + from;
    }
    consumed += chunk.length;
  }
  const last = take();
  if (last) yield last;
}

/** The line held in `parts`, or null when it is blank. */
function lineOf(
  parts: Buffer[],
  length: number,
  maxBytes: number,
  keepBlank: boolean,
  at: { number: number; offset: number },
): Line | null {
  if (length > maxBytes) return { text: null, bytes: length, ...at };
  let text = (parts.length === 1 ? parts[0] : Buffer.concat(parts, length)).toString('utf8');
  if (text.endsWith('\r')) text = text.slice(0, -1);
  if (at.offset === 0 && text.startsWith('\uFEFF')) text = text.slice(1);
  return !keepBlank && text.trim() === '' ? null : { text, bytes: length, ...at };
}
