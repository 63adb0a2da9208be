import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ModelError } from '../../../src/core/errors.js';
import { loadCheckpoint } from '../../../src/model/convert/checkpoint.js';
import { pullModel } from '../../../src/model/convert/hub.js';
import { FakeHub } from '../../helpers/fake-hub.js';

const FIX = 'test/fixtures/blip-tiny';
async function sha256(path: string): Promise<string> {
  return createHash('sha256')
    .update(await readFile(path))
    .digest('hex');
}

const SHA = 'a'.repeat(40);
const hub = new FakeHub();
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'capfilt-hub-'));
  await hub.start();
  hub.repos.set('Salesforce/blip-tiny-captioner', {
    dir: join(FIX, 'captioner'),
    api: true,
    sha: SHA,
    revisions: ['main', SHA],
  });
  hub.repos.set('mirror/blip-tiny-bin', {
    dir: join(FIX, 'captioner-bin'),
    api: false,
    sha: 'b'.repeat(40),
    revisions: ['refs/pr/7', 'b'.repeat(40)],
  });
  hub.repos.set('liar/wrong-hash', {
    dir: join(FIX, 'filter'),
    api: true,
    sha: 'c'.repeat(40),
    revisions: ['main', 'c'.repeat(40)],
    lie: { 'model.safetensors': { sha256: 'f'.repeat(64) } },
  });
  hub.repos.set('liar/too-long', {
    dir: join(FIX, 'filter'),
    api: true,
    sha: 'e'.repeat(40),
    revisions: ['main', 'e'.repeat(40)],
    lie: { 'model.safetensors': { size: 1000 } },
  });
  hub.repos.set('liar/wrong-size', {
    dir: join(FIX, 'filter'),
    api: true,
    sha: 'd'.repeat(40),
    revisions: ['main', 'd'.repeat(40)],
    lie: { 'model.safetensors': { size: 4260040 + 100 } },
  });
});
afterAll(async () => {
  await hub.stop();
  await rm(dir, { recursive: true, force: true });
});
beforeEach(() => {
  hub.log.length = 0;
});

describe('pullModel', () => {
  it('downloads the BLIP files, resumes an interrupted transfer and verifies hashes', async () => {
    const out = join(dir, 'captioner');
    hub.interruptOnce.add('/cdn/Salesforce/blip-tiny-captioner/model.safetensors');
    const progress: number[] = [];
    const res = await pullModel({
      repo: 'Salesforce/blip-tiny-captioner',
      out,
      endpoint: `${hub.url}/`,
      token: 'hf_test',
      onProgress: (p) => {
        if (p.file === 'model.safetensors') progress.push(p.received);
      },
    });
    expect(res.commit).toBe(SHA);
    expect(res.weights).toBe('model.safetensors');
    const names = res.files.map((f) => f.name).sort();
    expect(names).toEqual(
      [
        'added_tokens.json',
        'config.json',
        'generation_config.json',
        'model.safetensors',
        'preprocessor_config.json',
        'special_tokens_map.json',
        'tokenizer_config.json',
        'vocab.txt',
      ].sort(),
    );
    for (const f of names)
      expect(await sha256(join(out, f)), f).toBe(await sha256(join(FIX, 'captioner', f)));
    expect(res.files.find((f) => f.name === 'model.safetensors')?.verified).toBe('sha256');
    expect(res.files.find((f) => f.name === 'config.json')?.verified).toBe('git-sha1');
    expect((await readdir(out)).some((f) => f.endsWith('.part'))).toBe(false);

    // The cut-off transfer was resumed from where it stopped, not restarted.
    const cdn = hub.log.filter((l) => l.method === 'GET' && l.url.startsWith('/cdn/'));
    const half = Math.floor(8289696 / 2);
    expect(cdn.length).toBe(2);
    expect(cdn[0].range).toBeUndefined();
    const resumedAt = Number(/^bytes=(\d+)-$/.exec(cdn[1].range ?? '')?.[1]);
    expect(resumedAt).toBeGreaterThan(0);
    expect(resumedAt).toBeLessThanOrEqual(half);
    expect(progress.at(-1)).toBe(8289696);
    // Files are resolved at the listed commit; the token goes to the hub.
    const resolves = hub.log.filter((l) => l.url.includes('/resolve/'));
    expect(resolves.every((l) => l.url.includes(`/resolve/${SHA}/`) && l.auth === 'Bearer hf_test')).toBe(
      true,
    );

    const ckpt = await loadCheckpoint(out);
    expect(ckpt.sha256).toBe(await sha256(join(FIX, 'captioner', 'model.safetensors')));

    // A second pull finds everything in place and downloads nothing.
    hub.log.length = 0;
    const again = await pullModel({ repo: 'Salesforce/blip-tiny-captioner', out, endpoint: hub.url });
    expect(again.files.every((f) => f.cached)).toBe(true);
    expect(hub.log.filter((l) => l.method === 'GET' && !l.url.startsWith('/api/'))).toEqual([]);
  });

  it('resumes a .part file left by an earlier run', async () => {
    const out = join(dir, 'resume');
    await mkdir(out, { recursive: true });
    const full = await readFile(join(FIX, 'captioner', 'model.safetensors'));
    await writeFile(join(out, 'model.safetensors.part'), full.subarray(0, 1_000_000));
    await pullModel({
      repo: 'Salesforce/blip-tiny-captioner',
      out,
      endpoint: hub.url,
      files: ['model.safetensors'],
    });
    expect(await sha256(join(out, 'model.safetensors'))).toBe(
      createHash('sha256').update(full).digest('hex'),
    );
    const cdn = hub.log.filter((l) => l.method === 'GET' && l.url.startsWith('/cdn/'));
    expect(cdn.map((l) => l.range)).toEqual(['bytes=1000000-']);
  });

  it('probes with HEAD where there is no API, honours HF_ENDPOINT and falls back to pytorch_model.bin', async () => {
    const out = join(dir, 'bin');
    const saved = process.env.HF_ENDPOINT;
    process.env.HF_ENDPOINT = hub.url;
    try {
      const res = await pullModel({ repo: 'mirror/blip-tiny-bin', revision: 'refs/pr/7', out });
      expect(res.weights).toBe('pytorch_model.bin');
      expect(res.commit).toBe('b'.repeat(40));
    } finally {
      if (saved === undefined) delete process.env.HF_ENDPOINT;
      else process.env.HF_ENDPOINT = saved;
    }
    expect(existsSync(join(out, 'model.safetensors'))).toBe(false);
    expect(await sha256(join(out, 'pytorch_model.bin'))).toBe(
      await sha256(join(FIX, 'captioner-bin', 'pytorch_model.bin')),
    );
    // The revision travels URL-encoded, as the hub expects refs/pr/N.
    expect(hub.log.some((l) => l.url === '/mirror/blip-tiny-bin/resolve/refs%2Fpr%2F7/config.json')).toBe(
      true,
    );
    expect(hub.log.some((l) => l.method === 'HEAD' && l.url.endsWith('/model.safetensors'))).toBe(true);
  });

  it('fails on a sha256 mismatch and keeps nothing of the bad file', async () => {
    const out = join(dir, 'badhash');
    const err = await pullModel({ repo: 'liar/wrong-hash', out, endpoint: hub.url }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModelError);
    expect((err as Error).message).toMatch(/model\.safetensors: sha256 mismatch/);
    expect(existsSync(join(out, 'model.safetensors'))).toBe(false);
    expect(existsSync(join(out, 'model.safetensors.part'))).toBe(false);
  });

  it('fails on a size mismatch', async () => {
    const out = join(dir, 'badsize');
    await expect(pullModel({ repo: 'liar/wrong-size', out, endpoint: hub.url })).rejects.toThrow(
      /model\.safetensors: size mismatch: got 4260040 bytes, the hub reports 4260140/,
    );
    expect(existsSync(join(out, 'model.safetensors'))).toBe(false);
  });

  it('stops reading a body longer than the hub reported', async () => {
    const out = join(dir, 'toolong');
    await expect(pullModel({ repo: 'liar/too-long', out, endpoint: hub.url })).rejects.toThrow(
      /model\.safetensors: the server sent more than the 1000 bytes the hub reports/,
    );
    expect(existsSync(join(out, 'model.safetensors'))).toBe(false);
    const part = join(out, 'model.safetensors.part');
    expect(existsSync(part) ? (await readFile(part)).length : 0).toBeLessThanOrEqual(1000);
  });

  it('reports a missing repo or revision clearly', async () => {
    await expect(
      pullModel({ repo: 'nobody/nothing', out: join(dir, 'none'), endpoint: hub.url }),
    ).rejects.toThrow(/nobody\/nothing@main: config\.json not found/);
    await expect(
      pullModel({
        repo: 'Salesforce/blip-tiny-captioner',
        revision: 'v9',
        out: join(dir, 'none'),
        endpoint: hub.url,
      }),
    ).rejects.toThrow(/config\.json not found/);
    await expect(pullModel({ repo: '../etc', out: join(dir, 'none'), endpoint: hub.url })).rejects.toThrow(
      /bad repo id/,
    );
  });

  it('never sends the token to a host the hub redirects to', async () => {
    const listen = async (server: Server): Promise<string> => {
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    };
    const body = await readFile(join(FIX, 'captioner', 'config.json'));
    const elsewhere: (string | undefined)[] = [];
    const other = createServer((req, res) => {
      elsewhere.push(req.headers.authorization);
      res.setHeader('content-length', body.length);
      res.end(req.method === 'HEAD' ? undefined : body);
    });
    const otherUrl = await listen(other);
    const atHub: (string | undefined)[] = [];
    // A plain redirect (no X-Linked-* headers), which head() follows itself.
    const redirecting = createServer((req, res) => {
      atHub.push(req.headers.authorization);
      if (!req.url?.includes('/resolve/')) {
        res.statusCode = 404;
        res.end();
        return;
      }
      res.statusCode = 302;
      res.setHeader('location', `${otherUrl}/config.json`);
      res.end();
    });
    const hubUrl = await listen(redirecting);
    try {
      const out = join(dir, 'redirected');
      await pullModel({ repo: 'o/n', out, endpoint: hubUrl, token: 'hf_secret', files: ['config.json'] });
      expect(await readFile(join(out, 'config.json'))).toEqual(body);
      expect(atHub.length).toBeGreaterThan(0);
      expect(atHub.every((a) => a === 'Bearer hf_secret')).toBe(true);
      expect(elsewhere.length).toBeGreaterThanOrEqual(2);
      expect(elsewhere).toEqual(elsewhere.map(() => undefined));
    } finally {
      other.closeAllConnections();
      redirecting.closeAllConnections();
      await Promise.all([new Promise((r) => other.close(r)), new Promise((r) => redirecting.close(r))]);
    }
  });
});
