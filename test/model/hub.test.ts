import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ModelError } from '../../src/errors.js';
import { loadCheckpoint } from '../../src/model/checkpoint.js';
import { pullModel } from '../../src/model/hub.js';

const FIX = 'test/fixtures/blip-tiny';
const LFS = /\.(safetensors|bin)$/;

interface Repo {
  dir: string;
  /** Serve /api/models/<repo>/revision/<rev>; mirrors without the API make the client probe with HEAD. */
  api: boolean;
  sha: string;
  revisions: string[];
  /** Lie about a file (size or sha256) to check verification. */
  lie?: Record<string, { size?: number; sha256?: string }>;
}

interface Logged {
  method: string;
  url: string;
  range?: string;
  auth?: string;
}

/**
 * A local stand-in for the hub: `/<repo>/resolve/<rev>/<file>` answers small files directly
 * (ETag = git blob sha1) and redirects LFS files to `/cdn/...` with X-Linked-Size and
 * X-Linked-Etag (= sha256), as huggingface.co does; the CDN honours Range requests.
 */
class FakeHub {
  readonly repos = new Map<string, Repo>();
  readonly log: Logged[] = [];
  /** CDN paths whose next full GET is cut off halfway. */
  readonly interruptOnce = new Set<string>();
  private server?: Server;
  url = '';

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        res.statusCode = 500;
        res.end(String(err));
      });
    });
    await new Promise<void>((r) => this.server?.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((r) => this.server?.close(() => r()));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', this.url);
    this.log.push({
      method: req.method ?? '',
      url: url.pathname,
      range: req.headers.range,
      auth: req.headers.authorization,
    });
    const path = url.pathname.split('/').map(decodeURIComponent);
    // /api/models/<owner>/<name>/revision/<rev>
    if (path[1] === 'api' && path[2] === 'models' && path[5] === 'revision') {
      const repo = this.repos.get(`${path[3]}/${path[4]}`);
      if (!repo?.api || !repo.revisions.includes(path[6])) return this.notFound(res);
      const siblings = (await readdir(repo.dir)).map((rfilename) => ({ rfilename }));
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ id: `${path[3]}/${path[4]}`, sha: repo.sha, siblings }));
      return;
    }
    // /cdn/<owner>/<name>/<file>
    if (path[1] === 'cdn') {
      const repo = this.repos.get(`${path[2]}/${path[3]}`);
      if (!repo) return this.notFound(res);
      const body = await readFile(join(repo.dir, path[4])).catch(() => undefined);
      if (!body) return this.notFound(res);
      res.setHeader('accept-ranges', 'bytes');
      const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
      if (m) {
        const start = Number(m[1]);
        if (start >= body.length) {
          res.statusCode = 416;
          res.setHeader('content-range', `bytes */${body.length}`);
          res.end();
          return;
        }
        res.statusCode = 206;
        res.setHeader('content-range', `bytes ${start}-${body.length - 1}/${body.length}`);
        res.setHeader('content-length', body.length - start);
        res.end(body.subarray(start));
        return;
      }
      res.setHeader('content-length', body.length);
      if (this.interruptOnce.delete(url.pathname)) {
        res.flushHeaders();
        res.write(body.subarray(0, Math.floor(body.length / 2)), () => {
          // FIN, not RST: the client sees every byte sent, then a body shorter than Content-Length.
          res.socket?.end();
        });
        return;
      }
      res.end(body);
      return;
    }
    // /<owner>/<name>/resolve/<rev>/<file>
    if (path[3] !== 'resolve') return this.notFound(res);
    const repoId = `${path[1]}/${path[2]}`;
    const repo = this.repos.get(repoId);
    if (!repo?.revisions.includes(path[4])) return this.notFound(res);
    const file = path.slice(5).join('/');
    const body = await readFile(join(repo.dir, file)).catch(() => undefined);
    if (!body) return this.notFound(res);
    res.setHeader('x-repo-commit', repo.sha);
    if (LFS.test(file)) {
      const lie = repo.lie?.[file] ?? {};
      const sha256 = lie.sha256 ?? createHash('sha256').update(body).digest('hex');
      res.statusCode = 302;
      res.setHeader('x-linked-size', String(lie.size ?? body.length));
      res.setHeader('x-linked-etag', `"${sha256}"`);
      res.setHeader('etag', `"${sha256}"`);
      res.setHeader('location', `/cdn/${repoId}/${file}`);
      res.end();
      return;
    }
    const gitSha1 = createHash('sha1').update(`blob ${body.length}\0`).update(body).digest('hex');
    res.setHeader('etag', `"${gitSha1}"`);
    res.setHeader('content-length', body.length);
    res.end(req.method === 'HEAD' ? undefined : body);
  }

  private notFound(res: ServerResponse): void {
    res.statusCode = 404;
    res.setHeader('x-error-code', 'EntryNotFound');
    res.end('not found');
  }
}

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
});
