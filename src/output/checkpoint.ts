/**
 * Checkpoints of an unfinished shard: each finished batch's records are saved as one piece,
 * `_capfilt-work/partial/<shard>/<first pair>-<pairs>.jsonl`, written atomically. A shard that is
 * interrupted (Ctrl-C, a crash, a lost worker) resumes after the last piece instead of from its
 * first pair. The shard's data file is still written whole and atomically at the end, from the
 * pieces and the new batches, so every pair is in it exactly once; the pieces go after its marker.
 *
 * A piece holds a key (digest of the shard's input fingerprint, the deciding options and the
 * models): pieces made from another input or with other settings are never resumed from.
 */
import { createHash } from 'node:crypto';
import { NotFoundError } from '../core/errors.js';
import { decidingOptions } from '../core/options.js';
import type { OutputRecord, RecordModels, RunOptions } from '../core/types.js';
import { joinUri } from '../io/location.js';
import type { Storage } from '../io/storage/storage.js';
import { WORK_DIR } from './layout.js';

/** Pieces sort by name in pair order: the first pair is zero-padded. */
const PIECE_NAME = /^(\d{10})-(\d+)\.jsonl$/;

export function checkpointFolder(output: string, shardId: string): string {
  return joinUri(output, `${WORK_DIR}/partial/${encodeURIComponent(shardId)}`);
}

/** What pieces must match to be resumed from. */
export function checkpointKey(
  fingerprint: string | undefined,
  options: RunOptions,
  models: RecordModels,
): string {
  const what = JSON.stringify({
    fingerprint: fingerprint ?? null,
    deciding: decidingOptions(options),
    models,
  });
  return createHash('sha256').update(what).digest('hex').slice(0, 32);
}

/** What a shard's pieces hold (records, or a split stage's per-pair results), in pair order. */
export interface Resumed<T = OutputRecord> {
  pairs: number;
  batches: T[][];
}

interface PieceHeader {
  checkpoint: string;
  first: number;
  pairs: number;
}

function parsePiece<T>(body: string, key: string, first: number, pairs: number): T[] | null {
  const lines = body.split('\n').filter(Boolean);
  try {
    const header = JSON.parse(lines[0] ?? '') as PieceHeader;
    if (header.checkpoint !== key || header.first !== first || header.pairs !== pairs) return null;
    return lines.slice(1).map((l) => JSON.parse(l) as T);
  } catch {
    return null;
  }
}

export class ShardCheckpoint<T = OutputRecord> {
  readonly #storage: Storage;
  readonly #folder: string;
  readonly #key: string;

  private constructor(storage: Storage, folder: string, key: string) {
    this.#storage = storage;
    this.#folder = folder;
    this.#key = key;
  }

  /**
   * The checkpoint of a shard's records, or with `stage` of one split-mode stage's results (in a
   * folder of their own inside the shard's, so that clearing the shard clears them too).
   */
  static for<T = OutputRecord>(
    storage: Storage,
    output: string,
    shardId: string,
    key: string,
    stage?: string,
  ): ShardCheckpoint<T> {
    const folder = checkpointFolder(output, shardId);
    return new ShardCheckpoint<T>(storage, stage ? joinUri(folder, stage) : folder, key);
  }

  /**
   * The pieces that continue one another from pair 0 with this key. Any other piece (another
   * key, a gap, one that does not parse) ends the run of pieces and is removed with those after it.
   */
  async resume(): Promise<Resumed<T>> {
    const files = await this.#storage.list(this.#folder).catch((err: unknown) => {
      if (err instanceof NotFoundError) return [];
      throw err;
    });
    const pieces = files
      .map((f) => ({ f, m: PIECE_NAME.exec(f.relPath) }))
      .filter((p): p is { f: (typeof files)[number]; m: RegExpExecArray } => p.m !== null)
      .sort((a, b) => a.f.relPath.localeCompare(b.f.relPath));
    const resumed: Resumed<T> = { pairs: 0, batches: [] };
    let i = 0;
    for (; i < pieces.length; i++) {
      const first = Number(pieces[i].m[1]);
      const pairs = Number(pieces[i].m[2]);
      if (first !== resumed.pairs) break;
      const records = parsePiece<T>(
        (await this.#storage.read(pieces[i].f.uri)).toString('utf8'),
        this.#key,
        first,
        pairs,
      );
      if (!records) break;
      resumed.batches.push(records);
      resumed.pairs += pairs;
    }
    for (const p of pieces.slice(i)) await this.#storage.delete(p.f.uri);
    return resumed;
  }

  /** Saves one finished batch: pairs [first, first + pairs) made `records`. */
  async save(first: number, pairs: number, records: readonly T[]): Promise<void> {
    const header: PieceHeader = { checkpoint: this.#key, first, pairs };
    const body = [header, ...records].map((r) => JSON.stringify(r)).join('\n');
    const name = `${String(first).padStart(10, '0')}-${pairs}.jsonl`;
    await this.#storage.write(joinUri(this.#folder, name), `${body}\n`);
  }

  /** Removes the pieces and their folder (once the shard's data file and marker are written). */
  async clear(): Promise<void> {
    const files = await this.#storage.list(this.#folder).catch(() => []);
    await Promise.all(files.map((f) => this.#storage.delete(f.uri).catch(() => undefined)));
    await this.#storage.pruneEmpty(this.#folder);
  }
}

/** Removes a shard's checkpoint, whatever its key (its data file and marker are written). */
export async function clearCheckpoint(storage: Storage, output: string, shardId: string): Promise<void> {
  await ShardCheckpoint.for(storage, output, shardId, '').clear();
}
