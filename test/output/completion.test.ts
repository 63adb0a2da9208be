import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { recordOptions, runOptions } from '../../src/core/options.js';
import type { OutputRecord, ShardRef } from '../../src/core/types.js';
import { Storage } from '../../src/io/storage/storage.js';
import { completedShards, isShardComplete } from '../../src/output/completion.js';
import { ShardWriter } from '../../src/output/shard-writer.js';
import { emptyTimings } from '../../src/output/stats.js';
import { writeSummary } from '../../src/output/summary.js';

const options = recordOptions(runOptions());
const shard = (id: string): ShardRef => ({ id, format: 'jsonl', uri: `/in/${id}.jsonl` });
const record = (id: string): OutputRecord => ({
  key: `${id}-0`,
  source: '/in/0.jpg',
  shard: id,
  index: 0,
  width: 1,
  height: 1,
  web: { text: 'a dog', itm: 0.9, itc: 0.3, kept: true },
  synthetic: [{ text: 'a cat', token_ids: [1], itm: 0.2, itc: 0.1, kept: false }],
  texts: ['a dog'],
  status: 'ok',
  reason: null,
  error: null,
  human: false,
  meta: {},
  models: { captioner: 'c', filter: 'f' },
  options,
});

async function writeShard(storage: Storage, out: string, id: string): Promise<void> {
  const w = await ShardWriter.open(storage, out, shard(id));
  await w.append([record(id)]);
  await w.commit(emptyTimings(), new Date(), options);
}

describe('shard completion (one rule for the runner, the queue and refilter/export)', () => {
  it('a shard is complete when its marker parses and its data file is there', async () => {
    const out = await mkdtemp(join(tmpdir(), 'capfilt-complete-'));
    const storage = new Storage();
    await writeShard(storage, out, 'a');
    await writeShard(storage, out, 'b');
    await writeShard(storage, out, 'c');
    await writeFile(join(out, 'part-b.stats.json'), '{"truncated');
    await storage.delete(join(out, 'part-c.jsonl'));
    expect(await isShardComplete(storage, out, 'a', 'none')).toBe(true);
    expect(await isShardComplete(storage, out, 'a', 'gzip')).toBe(false);
    expect(await isShardComplete(storage, out, 'b', 'none')).toBe(false);
    expect(await isShardComplete(storage, out, 'c', 'none')).toBe(false);
    expect(await isShardComplete(storage, out, 'd', 'none')).toBe(false);
    expect((await completedShards(storage, out)).map((s) => s.shardId)).toEqual(['a']);
  });

  it('writes one _summary.json shape whoever writes it', async () => {
    const out = await mkdtemp(join(tmpdir(), 'capfilt-summary-'));
    const storage = new Storage();
    await writeShard(storage, out, 'a');
    const stats = (await completedShards(storage, out)).map((s) => s.stats);
    await writeSummary(storage, out, stats, { input: '/in' });
    const body = JSON.parse(await readFile(join(out, '_summary.json'), 'utf8'));
    expect(body).toMatchObject({
      shards: 1,
      records: 1,
      kept: { records: 1, web: 1, synthetic: 0, human: 0, texts: 1 },
      input: '/in',
      human: [],
      output: out,
      runId: null,
      refilteredFrom: null,
      shardIds: ['a'],
    });
  });
});
