import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnCli } from '../../tools/cli-process.js';
import { type RedisServer, startRedis } from '../../tools/redis-server.js';
import { uniqueName } from '../helpers/names.js';

/** Options are validated once, at entry, with the same message whichever command got them. */
describe('bad run options fail at once, before any work (real redis-server)', () => {
  let redis: RedisServer;
  const dir = mkdtempSync(join(tmpdir(), 'capfilt-options-'));
  const input = join(dir, 'in.jsonl');
  beforeAll(async () => {
    writeFileSync(input, '{"image": "a.jpg", "caption": "a"}\n');
    redis = await startRedis({ appendonly: false });
  });
  afterAll(async () => {
    await redis?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  async function fails(args: string[]): Promise<string> {
    const p = spawnCli(args);
    expect(await p.exited).toBe(2);
    return p.output();
  }

  it('capfilt produce --top-p 2 fails like capfilt run --top-p 2 and enqueues nothing', async () => {
    const prefix = uniqueName('badopts');
    const io = ['--input', input, '--output', join(dir, 'out')];
    const [run, produce, schedule] = await Promise.all([
      fails(['run', ...io, '--captioner', dir, '--filter', dir, '--top-p', '2']),
      fails(['produce', ...io, '--redis', redis.url, '--prefix', prefix, '--top-p', '2']),
      fails([
        'schedule',
        'add',
        'n',
        '--every',
        '1h',
        ...io,
        '--redis',
        redis.url,
        '--prefix',
        prefix,
        '--top-p',
        '2',
      ]),
    ]);
    expect(run).toBe('capfilt: --top-p must be in (0, 1]\n');
    expect(produce).toBe(run);
    expect(schedule).toBe(run);
    const client = new Redis(redis.port, '127.0.0.1');
    try {
      expect(await client.keys('*')).toEqual([]);
    } finally {
      client.disconnect();
    }
  });

  it('caption and score check their options with the same messages', async () => {
    const image = join(dir, 'x.png');
    const [caption, score] = await Promise.all([
      fails(['caption', '--captioner', dir, '--top-p', '2', image]),
      fails(['score', '--filter', dir, '--image', image, '--text', 't', '--max-text-length', '1']),
    ]);
    expect(caption).toBe('capfilt: --top-p must be in (0, 1]\n');
    expect(score).toBe('capfilt: --max-text-length must be in [2, 512] tokens\n');
  });
});
