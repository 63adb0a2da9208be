import { DEFAULT_QUEUE } from '../core/defaults.js';
import { joinUri } from '../io/location.js';
import type { Storage } from '../io/storage/storage.js';
import { WORK_DIR } from '../output/layout.js';
import { sanitizeId } from './names.js';

/**
 * A stage's result as its job returns it: inline when small, otherwise written next to the output
 * and referenced, so large shards do not put megabytes of captions and records into Redis.
 */
export type Carried<T> = { inline: T } | { spilled: string; bytes: number };

/** Results above this many bytes of JSON are spilled (CAPFILT_INLINE_RESULT_BYTES; DEFAULT_QUEUE.inlineResultBytes). */
export function inlineLimit(env: NodeJS.ProcessEnv = process.env): number {
  const v = Number(env.CAPFILT_INLINE_RESULT_BYTES);
  return Number.isFinite(v) && v >= 0 && env.CAPFILT_INLINE_RESULT_BYTES !== undefined
    ? v
    : DEFAULT_QUEUE.inlineResultBytes;
}

/** Deterministic, so a redelivered job overwrites its own spill file. */
export function spillUri(output: string, runId: string, stage: string, shardId: string): string {
  return joinUri(output, `${WORK_DIR}/${sanitizeId(runId)}/${stage}-${sanitizeId(shardId)}.json`);
}

export async function carry<T>(
  storage: Storage,
  uri: string,
  value: T,
  limit = inlineLimit(),
): Promise<Carried<T>> {
  const json = JSON.stringify(value);
  if (Buffer.byteLength(json) <= limit) return { inline: value };
  await storage.write(uri, json);
  return { spilled: uri, bytes: Buffer.byteLength(json) };
}

export async function unwrap<T>(storage: Storage, carried: Carried<T>): Promise<T> {
  if ('inline' in carried) return carried.inline;
  return JSON.parse((await storage.read(carried.spilled)).toString('utf8')) as T;
}

/** Best effort: a leftover spill file is harmless (it is overwritten or ignored). */
export async function discard(storage: Storage, carried: Carried<unknown>[]): Promise<void> {
  await Promise.all(
    carried.map((c) => ('spilled' in c ? storage.delete(c.spilled).catch(() => undefined) : undefined)),
  );
}
