import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, realpath, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Captioner } from '../../src/captioner/captioner.js';
import { runOptions } from '../../src/core/options.js';
import type { OutputRecord, SourcePolicy } from '../../src/core/types.js';
import { Filter } from '../../src/filter/filter.js';
import { Storage } from '../../src/io/storage/storage.js';
import { runLocal } from '../../src/pipeline/local-runner.js';
import { importTinyModels, type TinyModels } from '../helpers/models.js';
import { type S3Server, startS3 } from '../helpers/s3.js';
import { jsonl, makeImage } from '../io/fixtures.js';

/**
 * A dataset cannot reach beyond its run (issue 14), through the real local runner, the real S3
 * endpoint and real files. Before the source policy, an S3 manifest's `file://` reference read the
 * worker's own disk and was captioned (`ok`), a missing local path answered `missing_object` (an
 * existence oracle), another bucket was read, and a local manifest followed `../` anywhere.
 */
describe('source policy in a run', () => {
  let models: TinyModels;
  let engines: { captioner: Captioner; filter: Filter };
  let s3: S3Server;
  let storage: Storage;
  let base: string;
  let secretDir: string;

  beforeAll(async () => {
    [models, s3] = await Promise.all([importTinyModels(), startS3()]);
    engines = {
      captioner: await Captioner.load(models.captioner, { batchSize: 4 }),
      filter: await Filter.load(models.filter, { batchSize: 4 }),
    };
    storage = new Storage({ s3: { endpoint: s3.endpoint, forcePathStyle: true } });
    base = await realpath(await mkdtemp(join(tmpdir(), 'capfilt-policy-')));
    secretDir = join(base, 'private');
    await mkdir(secretDir);
    await writeFile(join(secretDir, 'secret.jpg'), await makeImage('jpeg', [10, 200, 10]));
  });
  afterAll(async () => {
    await engines?.captioner.close();
    await engines?.filter.close();
    storage?.close();
    await s3?.stop();
    models?.dispose();
    await rm(base, { recursive: true, force: true });
  });

  async function run(input: string, output: string, sources: Partial<SourcePolicy> = {}) {
    const result = await runLocal({
      input,
      output,
      captionerDir: '',
      filterDir: '',
      storage,
      options: runOptions({ batchSize: 4, decoding: { maxLength: 12, minLength: 4 }, sources }),
      progress: 'none',
      engines,
      log: () => {},
    });
    expect(result.failed).toEqual([]);
    const records: OutputRecord[] = [];
    for (const id of result.summary?.shardIds ?? []) {
      const text = (await storage.read(`${output}/part-${id}.jsonl`)).toString('utf8');
      records.push(
        ...text
          .trim()
          .split('\n')
          .map((l) => JSON.parse(l) as OutputRecord),
      );
    }
    return { result, byKey: Object.fromEntries(records.map((r) => [r.key, r])) };
  }
  const outcome = (r: OutputRecord) => (r.status === 'ok' ? 'ok' : r.reason);

  it('an S3 manifest reaches neither the local disk nor another bucket, unless the run names it', async () => {
    const bucket = await s3.createBucket('capfilt-data');
    const other = await s3.createBucket('capfilt-other');
    await storage.write(`s3://${bucket}/ds/img/a.jpg`, await makeImage('jpeg'));
    await storage.write(`s3://${other}/x.jpg`, await makeImage('jpeg', [40, 40, 200]));
    const rows = [
      { key: 'same-bucket', image: 'img/a.jpg', caption: 'a red square' },
      { key: 'local-file', image: `file://${join(secretDir, 'secret.jpg')}`, caption: 'a private image' },
      { key: 'passwd', image: 'file:///etc/passwd', caption: 'not an image' },
      { key: 'environ', image: 'file:///proc/self/environ', caption: 'the environment' },
      { key: 'missing', image: `file://${join(secretDir, 'no-such.jpg')}`, caption: 'probing' },
      { key: 'other-bucket', image: `s3://${other}/x.jpg`, caption: 'a blue square' },
    ];
    await storage.write(`s3://${bucket}/ds/m.jsonl`, jsonl(rows));

    const { result, byKey } = await run(`s3://${bucket}/ds/m.jsonl`, `s3://${bucket}/out`);
    expect(result.summary?.records).toBe(rows.length);
    expect(Object.fromEntries(Object.entries(byKey).map(([k, r]) => [k, outcome(r)]))).toEqual({
      'same-bucket': 'ok',
      'local-file': 'blocked_source',
      passwd: 'blocked_source',
      environ: 'blocked_source',
      missing: 'blocked_source',
      'other-bucket': 'blocked_source',
    });
    // A present and a missing local file get the same answer: no oracle.
    expect(byKey.missing.error?.replace('missing:', 'local-file:').replace('no-such', 'secret')).toBe(
      byKey['local-file'].error,
    );
    for (const r of Object.values(byKey)) expect(r.error ?? '').not.toMatch(/root:x|PATH=|HOME=/);

    const widened = await run(`s3://${bucket}/ds/m.jsonl`, `s3://${bucket}/out2`, { s3Buckets: [other] });
    expect(outcome(widened.byKey['other-bucket'])).toBe('ok');
    expect(outcome(widened.byKey['local-file'])).toBe('blocked_source');
  });

  it('a local manifest reads under its own folder only: ../ and absolute paths elsewhere are refused', async () => {
    const ds = join(base, 'dataset');
    await mkdir(join(ds, 'img'), { recursive: true });
    await writeFile(join(ds, 'img', 'a.png'), await makeImage('png'));
    await symlink(join(secretDir, 'secret.jpg'), join(ds, 'img', 'link.jpg'));
    const rows = [
      { key: 'inside', image: 'img/a.png', caption: 'a red square' },
      { key: 'climb', image: '../../../../../../../../etc/passwd', caption: 'climbing out' },
      { key: 'sibling', image: '../private/secret.jpg', caption: 'next door' },
      { key: 'absolute', image: join(secretDir, 'secret.jpg'), caption: 'anywhere' },
      { key: 'link-out', image: 'img/link.jpg', caption: 'a link out of the folder' },
    ];
    await writeFile(join(ds, 'm.jsonl'), jsonl(rows));
    const { byKey } = await run(join(ds, 'm.jsonl'), join(base, 'out-local'));
    expect(Object.fromEntries(Object.entries(byKey).map(([k, r]) => [k, outcome(r)]))).toEqual({
      inside: 'ok',
      climb: 'blocked_source',
      sibling: 'blocked_source',
      absolute: 'blocked_source',
      'link-out': 'blocked_source',
    });
    expect(JSON.parse(await readFile(join(base, 'out-local', '_summary.json'), 'utf8')).reasons).toEqual({
      blocked_source: 4,
    });

    const widened = await run(join(ds, 'm.jsonl'), join(base, 'out-widened'), { localRoots: [secretDir] });
    expect(outcome(widened.byKey.sibling)).toBe('ok');
    expect(outcome(widened.byKey.absolute)).toBe('ok');
    expect(outcome(widened.byKey['link-out'])).toBe('ok');
    expect(outcome(widened.byKey.climb)).toBe('blocked_source');
  });

  it('never reads a device or a FIFO, even with every folder allowed: refused at once, unread', async () => {
    const ds = join(base, 'devices');
    await mkdir(ds);
    execFileSync('mkfifo', [join(ds, 'pipe.jpg')]);
    await symlink('/dev/zero', join(ds, 'zero.jpg'));
    const rows = [
      { key: 'zero', image: '/dev/zero', caption: 'endless zeros' },
      { key: 'urandom', image: 'file:///dev/urandom', caption: 'endless noise' },
      { key: 'zero-link', image: 'zero.jpg', caption: 'zeros through a link' },
      { key: 'fifo', image: 'pipe.jpg', caption: 'a pipe nobody writes to' },
    ];
    await writeFile(join(ds, 'm.jsonl'), jsonl(rows));
    const started = Date.now();
    const { byKey } = await run(join(ds, 'm.jsonl'), join(base, 'out-devices'), { localRoots: ['/'] });
    expect(Object.fromEntries(Object.entries(byKey).map(([k, r]) => [k, outcome(r)]))).toEqual({
      zero: 'blocked_source',
      urandom: 'blocked_source',
      'zero-link': 'blocked_source',
      fifo: 'blocked_source',
    });
    expect(byKey.fifo.error).toMatch(/a FIFO, not a regular file$/);
    // Before, /dev/zero grew the process past 6 GB and the FIFO held the run for the 10-minute watchdog.
    expect(Date.now() - started).toBeLessThan(10_000);
  }, 20_000);
});
