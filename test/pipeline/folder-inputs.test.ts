import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { recordOptions, runOptions } from '../../src/core/options.js';
import type { OutputRecord, PairRef, ShardRef } from '../../src/core/types.js';
import { readShard } from '../../src/io/readers/index.js';
import { Storage } from '../../src/io/storage/storage.js';
import { ShardWriter } from '../../src/output/shard-writer.js';
import { emptyTimings } from '../../src/output/stats.js';
import { writeSummary } from '../../src/output/summary.js';
import { planRun, planShards } from '../../src/pipeline/plan.js';
import { type S3Server, startS3 } from '../helpers/s3.js';
import { makeImage } from '../io/fixtures.js';

const options = runOptions();

/** An earlier run's output, written by capfilt's own writer: records, marker, summary. */
async function writeEarlierOutput(storage: Storage, output: string): Promise<void> {
  const shard: ShardRef = { id: 'captions-0-2', format: 'jsonl', uri: '/elsewhere/captions.jsonl' };
  const writer = await ShardWriter.open(storage, output, shard);
  const record = (i: number): OutputRecord => ({
    key: `k${i}`,
    source: `/elsewhere/${i}.png`,
    shard: shard.id,
    index: i,
    width: 24,
    height: 24,
    web: { text: `caption ${i}`, itm: 0.9, itc: 0.2, kept: true },
    synthetic: [],
    texts: [`caption ${i}`],
    status: 'ok',
    reason: null,
    error: null,
    human: false,
    meta: {},
    models: { captioner: null, filter: null },
    options: recordOptions(options),
  });
  await writer.append([record(0), record(1)]);
  const stats = await writer.commit(emptyTimings(), new Date(), recordOptions(options));
  await writeSummary(storage, output, [stats], { input: '/elsewhere/captions.jsonl' });
}

let s3: S3Server | undefined;
afterAll(async () => {
  await s3?.stop();
});

describe.each(['local', 'S3'])('folder inputs (%s)', (where) => {
  let storage: Storage;
  let root: string;
  beforeAll(async () => {
    if (where === 'local') {
      storage = new Storage();
      root = await mkdtemp(join(tmpdir(), 'capfilt-folder-'));
    } else {
      s3 ??= await startS3();
      storage = new Storage({ s3: { endpoint: s3.endpoint, forcePathStyle: true } });
      root = `s3://${await s3.createBucket()}`;
    }
  });
  afterAll(() => storage.close());

  it('skips capfilt output folders inside it; sidecar captions are trimmed', async () => {
    const images = `${root}/images`;
    await storage.write(`${images}/a.png`, await makeImage('png'));
    await storage.write(`${images}/a.txt`, 'a red square\n');
    await storage.write(`${images}/b.png`, await makeImage('png', [20, 200, 20]));
    await storage.write(`${images}/b.txt`, '  a green square \r\n');
    // Earlier runs written into the folder (one nested deeper): never read as manifests.
    await writeEarlierOutput(storage, `${images}/out`);
    await writeEarlierOutput(storage, `${images}/runs/2024/out`);
    await storage.write(`${images}/runs/2024/out/b.png`, await makeImage('png'));
    const planned = await planShards(storage, images, { shardSize: 10 });
    expect(planned.map((p) => [p.shard.format, p.pairs])).toEqual([['folder', 2]]);
    const pairs: PairRef[] = [];
    for await (const p of readShard(storage, planned[0].shard, { shardSize: 10 })) pairs.push(p);
    expect(pairs.map((p) => [p.key, p.text, p.invalid ?? null])).toEqual([
      ['a', 'a red square', null],
      ['b', 'a green square', null],
    ]);
  });

  it('refuses a folder input that is itself a capfilt output, and an output inside the input', async () => {
    await writeEarlierOutput(storage, `${root}/done`);
    await expect(planShards(storage, `${root}/done`, { shardSize: 10 })).rejects.toThrow(
      /done is a capfilt output folder \(it holds shard markers or _summary\.json\), not an input/,
    );
    const input = `${root}/in`;
    await storage.write(`${input}/m.jsonl`, '{"image": "a.png", "caption": "a caption"}\n');
    for (const output of [`${input}/out`, input]) {
      await expect(planRun(storage, { input, output, shardSize: 10 })).rejects.toThrow(
        `the output ${output} lies inside the input folder ${input}; write it outside the input`,
      );
    }
    // Beside the input (even sharing its name as a prefix) is fine, and so is a file input's folder.
    await expect(planRun(storage, { input, output: `${root}/in-out`, shardSize: 10 })).resolves.toHaveLength(
      1,
    );
    await expect(
      planRun(storage, { input: `${input}/m.jsonl`, output: `${input}/out`, shardSize: 10 }),
    ).resolves.toHaveLength(1);
  });
});
