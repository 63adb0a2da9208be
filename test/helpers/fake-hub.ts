import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';

const LFS = /\.(safetensors|bin)$/;

export interface Repo {
  dir: string;
  /** Serve /api/models/<repo>/revision/<rev>; mirrors without the API make the client probe with HEAD. */
  api: boolean;
  sha: string;
  revisions: string[];
  /** Lie about a file (size or sha256) to check verification. */
  lie?: Record<string, { size?: number; sha256?: string }>;
  /** Files served with no size and no hash (chunked), the file's bytes followed by zeros without end. */
  endless?: string[];
  /** Never answer the API listing, or a file's HEAD, or send half of a file's GET body and then nothing. */
  stall?: { api?: boolean; head?: string[]; body?: string[] };
}

export interface Logged {
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
export class FakeHub {
  readonly repos = new Map<string, Repo>();
  readonly log: Logged[] = [];
  /** CDN paths whose next full GET is cut off halfway. */
  readonly interruptOnce = new Set<string>();
  /** CDN paths whose next full GET sends half the body, then nothing (the connection stays open). */
  readonly stallOnce = new Set<string>();
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
      if (repo.stall?.api) return; // no answer at all
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
        if (repo.stall?.body?.includes(path[4])) return this.hang(res, body.subarray(start));
        res.end(body.subarray(start));
        return;
      }
      res.setHeader('content-length', body.length);
      if (this.stallOnce.delete(url.pathname) || repo.stall?.body?.includes(path[4]))
        return this.hang(res, body);
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
    if (req.method === 'HEAD' && repo.stall?.head?.includes(file)) return;
    if (repo.endless?.includes(file)) return this.endless(req, res, body);
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

  /** Half of `body`, then nothing: the connection stays open until the client gives up. */
  private hang(res: ServerResponse, body: Buffer): void {
    res.flushHeaders();
    res.write(body.subarray(0, Math.floor(body.length / 2)));
  }

  /** The bytes, then zeros until the client goes away; chunked, so no size is ever stated. */
  private endless(req: IncomingMessage, res: ServerResponse, body: Buffer): void {
    if (req.method === 'HEAD') return void res.end();
    const zeros = Buffer.alloc(1 << 20);
    const more = (): void => {
      while (!res.destroyed && res.write(zeros));
      if (!res.destroyed) res.once('drain', more);
    };
    res.write(body);
    more();
  }

  private notFound(res: ServerResponse): void {
    res.statusCode = 404;
    res.setHeader('x-error-code', 'EntryNotFound');
    res.end('not found');
  }
}
