import { spawn } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { OutputRecord } from '../../src/core/types.js';
import { Storage } from '../../src/io/storage/storage.js';
import { importTinyModels, type TinyModels } from '../helpers/models.js';
import { type S3Server, startS3 } from '../helpers/s3.js';

const ROOT = join(import.meta.dirname, '../..');

function capfilt(
  args: string[],
  env: NodeJS.ProcessEnv,
): Promise<{ code: number | null; out: string; err: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli/main.ts'), ...args], {
    cwd: ROOT,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (c) => {
    out += c;
  });
  child.stderr.on('data', (c) => {
    err += c;
  });
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, out, err })));
}

describe('capfilt run against an S3 endpoint', () => {
  let models: TinyModels;
  let s3: S3Server;
  let storage: Storage;
  beforeAll(async () => {
    models = await importTinyModels();
    s3 = await startS3();
    storage = new Storage({ s3: { endpoint: s3.endpoint, forcePathStyle: true } });
  });
  afterAll(async () => {
    storage?.close();
    await s3?.stop();
    models?.dispose();
  });

  it('reads tars from s3://, writes gzip shards to s3://, with the endpoint from --s3-endpoint or AWS_ENDPOINT_URL', async () => {
    const bucket = await s3.createBucket();
    for (const name of await readdir(join(ROOT, 'examples/webdataset'))) {
      await storage.write(
        `s3://${bucket}/wds/${name}`,
        await readFile(join(ROOT, 'examples/webdataset', name)),
      );
    }
    const common = [
      '--captioner',
      models.captioner,
      '--filter',
      models.filter,
      '--max-length',
      '12',
      '--min-length',
      '6',
      '--progress',
      'none',
      '--gzip',
    ];
    const env = {
      ...process.env,
      AWS_ACCESS_KEY_ID: 'test',
      AWS_SECRET_ACCESS_KEY: 'test',
      AWS_REGION: 'us-east-1',
    };
    const viaFlag = await capfilt(
      [
        'run',
        '--input',
        `s3://${bucket}/wds`,
        '--output',
        `s3://${bucket}/out`,
        '--s3-endpoint',
        s3.endpoint,
        '--s3-path-style',
        ...common,
      ],
      env,
    );
    expect(viaFlag.code, viaFlag.err).toBe(0);
    expect(viaFlag.out).toMatch(/done\. 16 pairs in 2 shards/);
    const recs = gunzipSync(await storage.read(`s3://${bucket}/out/part-00000.jsonl.gz`))
      .toString('utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as OutputRecord);
    expect(recs.map((r) => r.key)).toEqual(Array.from({ length: 8 }, (_, i) => String(i).padStart(9, '0')));
    expect(await storage.exists(`s3://${bucket}/out/_summary.json`)).toBe(true);

    const viaEnv = await capfilt(
      ['run', '--input', `s3://${bucket}/wds`, '--output', `s3://${bucket}/out`, ...common],
      {
        ...env,
        AWS_ENDPOINT_URL: s3.endpoint,
      },
    );
    expect(viaEnv.code, viaEnv.err).toBe(0);
    expect(viaEnv.err).toMatch(/2 of 2 shards already complete/);
  });
});
