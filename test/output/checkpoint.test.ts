import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runOptions } from '../../src/core/options.js';
import type { OutputRecord } from '../../src/core/types.js';
import { Storage } from '../../src/io/storage/storage.js';
import { checkpointFolder, checkpointKey, ShardCheckpoint } from '../../src/output/checkpoint.js';

const record = (key: string) => ({ key }) as unknown as OutputRecord;
const models = { captioner: 'c', filter: 'f' };

describe('shard checkpoints: only pieces of the same shard input, options and models, from pair 0 on', () => {
  const out = mkdtempSync(join(tmpdir(), 'capfilt-pieces-'));
  const storage = new Storage();
  afterAll(() => {
    storage.close();
    rmSync(out, { recursive: true, force: true });
  });

  it('a key differs with the input fingerprint, a deciding option or a model, not with the batch size', () => {
    const o = runOptions({});
    const key = checkpointKey('fp', o, models);
    expect(checkpointKey('fp', runOptions({ batchSize: 3 }), models)).toBe(key);
    expect(checkpointKey('fp2', o, models)).not.toBe(key);
    expect(checkpointKey('fp', runOptions({ filter: { threshold: 0.9 } }), models)).not.toBe(key);
    expect(checkpointKey('fp', o, { ...models, filter: 'other' })).not.toBe(key);
  });

  it('resumes the run of pieces from pair 0; a gap, another key or a torn piece ends it and is removed', async () => {
    const cp = ShardCheckpoint.for(storage, out, 's1', 'k1');
    await cp.save(0, 2, [record('a'), record('b')]);
    await cp.save(2, 2, [record('c'), record('d')]);
    await cp.save(6, 1, [record('g')]); // after a gap: pairs 4-5 were never saved
    expect(await cp.resume()).toEqual({
      pairs: 4,
      batches: [
        [record('a'), record('b')],
        [record('c'), record('d')],
      ],
    });
    expect(readdirSync(checkpointFolder(out, 's1'))).toHaveLength(2);

    // Pieces of another input or setting are never resumed from.
    expect(await ShardCheckpoint.for(storage, out, 's1', 'k2').resume()).toEqual({ pairs: 0, batches: [] });
    expect(readdirSync(checkpointFolder(out, 's1'))).toEqual([]);

    const torn = ShardCheckpoint.for(storage, out, 's2', 'k1');
    await torn.save(0, 1, [record('a')]);
    writeFileSync(join(checkpointFolder(out, 's2'), '0000000001-1.jsonl'), '{"checkpoint":"k1","fir');
    expect(await torn.resume()).toEqual({ pairs: 1, batches: [[record('a')]] });
    await torn.clear();
    expect(existsSync(checkpointFolder(out, 's2')), 'the emptied folder goes too').toBe(false);
  });
});
