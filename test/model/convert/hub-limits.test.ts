import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ModelError } from '../../../src/core/errors.js';
import { pullModel } from '../../../src/model/convert/hub.js';
import { FakeHub, type Repo } from '../../helpers/fake-hub.js';

const FIX = 'test/fixtures/blip-tiny';
const hub = new FakeHub();
let dir: string;

function repo(name: string, extra: Partial<Repo>): string {
  const sha = name
    .replace(/[^a-f]/g, '')
    .padEnd(40, '0')
    .slice(0, 40);
  hub.repos.set(name, { dir: join(FIX, 'captioner'), api: true, sha, revisions: ['main', sha], ...extra });
  return name;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'capfilt-hub-limits-'));
  await hub.start();
});
afterAll(async () => {
  await hub.stop();
  await rm(dir, { recursive: true, force: true });
});

async function failure(p: Promise<unknown>): Promise<{ message: string; ms: number }> {
  const t0 = performance.now();
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ModelError);
  return { message: (err as Error).message, ms: performance.now() - t0 };
}

describe('models pull against a hub that misbehaves', () => {
  it('caps a file whose size the hub does not report (64 MiB for a config) and keeps none of it', async () => {
    const name = repo('endless/config', { endless: ['config.json'] });
    const out = join(dir, 'endless');
    const { message } = await failure(pullModel({ repo: name, out, endpoint: hub.url, retries: 0 }));
    expect(message).toMatch(
      /config\.json: the hub reported no size and sent more than the 67108864-byte cap/,
    );
    expect(existsSync(join(out, 'config.json'))).toBe(false);
    const part = join(out, 'config.json.part');
    expect(existsSync(part) ? (await stat(part)).size : 0).toBeLessThanOrEqual(64 << 20);
  });

  it('applies the cap to weights too, and to a size the hub reports', async () => {
    const name = repo('endless/weights', { endless: ['model.safetensors'] });
    const { message } = await failure(
      pullModel({ repo: name, out: join(dir, 'weights'), endpoint: hub.url, retries: 0, maxBytes: 1 << 20 }),
    );
    expect(message).toMatch(
      /model\.safetensors: the hub reported no size and sent more than the 1048576-byte cap/,
    );
    const big = repo('liar/huge', { lie: { 'model.safetensors': { size: 2 ** 40 } } });
    const huge = await failure(pullModel({ repo: big, out: join(dir, 'huge'), endpoint: hub.url }));
    expect(huge.message).toMatch(
      /model\.safetensors: the hub reports 1099511627776 bytes, over the 8589934592-byte cap/,
    );
  });

  it('gives up on a transfer that stops sending, after its resumes, instead of hanging', async () => {
    const name = repo('stall/body', { stall: { body: ['model.safetensors'] } });
    const out = join(dir, 'stalled');
    const { message, ms } = await failure(
      pullModel({ repo: name, out, endpoint: hub.url, retries: 1, stallTimeoutMs: 300 }),
    );
    expect(message).toMatch(
      /transfer of model\.safetensors broke off at byte \d+: the server sent nothing for 300 ms \(after 1 resumes\)/,
    );
    expect(ms).toBeLessThan(10_000);
    expect(existsSync(join(out, 'model.safetensors'))).toBe(false);
  });

  it('resumes a transfer that stalled once and verifies the whole file', async () => {
    const name = repo('stall/once', {});
    hub.stallOnce.add(`/cdn/${name}/model.safetensors`);
    const out = join(dir, 'resumed');
    // Long enough that only the planted stall trips it on a loaded machine (300 ms did not always).
    const result = await pullModel({ repo: name, out, endpoint: hub.url, stallTimeoutMs: 2_000 });
    expect(result.files.find((f) => f.name === 'model.safetensors')?.verified).toBe('sha256');
    expect(
      (await readFile(join(out, 'model.safetensors'))).equals(
        await readFile(join(FIX, 'captioner', 'model.safetensors')),
      ),
    ).toBe(true);
    expect(hub.log.filter((l) => l.url === `/cdn/${name}/model.safetensors` && l.range).length).toBe(1);
  });

  it('gives up on a listing or a HEAD that never answers', async () => {
    const api = repo('stall/api', { stall: { api: true } });
    const listing = await failure(
      pullModel({ repo: api, out: join(dir, 'api'), endpoint: hub.url, stallTimeoutMs: 300 }),
    );
    expect(listing.message).toMatch(/\/api\/models\/stall\/api\/revision\/main: no response within 300 ms/);
    const head = repo('stall/head', { stall: { head: ['config.json'] } });
    const probe = await failure(
      pullModel({ repo: head, out: join(dir, 'head'), endpoint: hub.url, stallTimeoutMs: 300 }),
    );
    expect(probe.message).toMatch(/resolve\/[0-9a-f]{40}\/config\.json: no response within 300 ms/);
    expect(listing.ms + probe.ms).toBeLessThan(10_000);
  });
});
