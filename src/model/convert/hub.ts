import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, rename, rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import pRetry from 'p-retry';
import { ModelError } from '../../core/errors.js';

/*
 * Written on Node's fetch rather than @huggingface/hub: that client honours a custom `hubUrl`, but
 * its downloadFile returns a Blob (whole file in memory, no resume) and downloadFileToCacheDir
 * writes the HF cache layout without Range resume; we need resumable `.part` files in `out`.
 * Nor on io/http.ts: that client is for untrusted image URLs (address guard, whole small bodies);
 * docs/architecture.md says why the two HTTP clients stay apart and share only p-retry.
 */

export interface PullProgress {
  file: string;
  /** Bytes of this file on disk so far (resumed bytes included). */
  received: number;
  total?: number;
}

export interface PullOptions {
  /** `owner/name` on the hub. */
  repo: string;
  /** Branch, tag, commit or `refs/pr/N`; default `main`. */
  revision?: string;
  /** Directory the files land in (created if missing). */
  out: string;
  /** Hub base URL; default `$HF_ENDPOINT` or https://huggingface.co. */
  endpoint?: string;
  /** Access token; default `$HF_TOKEN`. */
  token?: string;
  /** Exact files to fetch (all required) instead of the BLIP set. */
  files?: string[];
  onProgress?: (p: PullProgress) => void;
  /** Times an interrupted transfer is resumed before giving up; default 5. */
  retries?: number;
  /**
   * A request that gets no response, or a transfer that receives nothing, for this long is
   * abandoned (a stalled transfer is resumed like a broken one); default 30 s.
   */
  stallTimeoutMs?: number;
  /** Largest file accepted, reported or not; default 8 GiB for weights, 64 MiB for other files. */
  maxBytes?: number;
}

export interface PulledFile {
  name: string;
  size: number;
  /** What the downloaded bytes were checked against. */
  verified: 'sha256' | 'git-sha1' | 'size' | 'none';
  sha256?: string;
  /** True when a complete, verified file was already there. */
  cached: boolean;
}

export interface PullResult {
  out: string;
  repo: string;
  revision: string;
  /** Commit the files were resolved at, when the hub said. */
  commit?: string;
  /** The weights file fetched (model.safetensors or pytorch_model.bin). */
  weights?: string;
  files: PulledFile[];
}

const REQUIRED = ['config.json'];
const OPTIONAL = [
  'preprocessor_config.json',
  'vocab.txt',
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'added_tokens.json',
  'generation_config.json',
];
const WEIGHTS = ['model.safetensors', 'pytorch_model.bin'];

/**
 * Byte caps for a file whose size the hub does not report (and for sizes it reports): BLIP large's
 * fp32 weights are about 1.9 GB, configs and vocabularies a few hundred KB.
 */
const MAX_WEIGHTS_BYTES = 8 * 1024 ** 3;
const MAX_OTHER_BYTES = 64 << 20;

function capFor(file: string, maxBytes: number | undefined): number {
  return maxBytes ?? (/\.(safetensors|bin)$/.test(file) ? MAX_WEIGHTS_BYTES : MAX_OTHER_BYTES);
}

const DEFAULT_STALL_MS = 30_000;

/** An abort signal that fires once `touch` has not been called for `ms`: a hub that stops sending. */
class StallGuard {
  readonly #controller = new AbortController();
  readonly #timer: NodeJS.Timeout;
  constructor(readonly ms: number) {
    this.#timer = setTimeout(() => this.#controller.abort(), ms);
  }
  get signal(): AbortSignal {
    return this.#controller.signal;
  }
  get stalled(): boolean {
    return this.#controller.signal.aborted;
  }
  touch(): void {
    this.#timer.refresh();
  }
  clear(): void {
    clearTimeout(this.#timer);
  }
}

interface RemoteInfo {
  size?: number;
  sha256?: string;
  gitSha1?: string;
  commit?: string;
}

class Hub {
  readonly base: string;
  private readonly origin: string;
  private readonly auth: Record<string, string>;
  constructor(
    endpoint: string,
    token: string | undefined,
    readonly repo: string,
    readonly stallMs: number,
  ) {
    this.base = endpoint.replace(/\/+$/, '');
    try {
      this.origin = new URL(this.base).origin;
    } catch (err) {
      throw new ModelError(`bad hub endpoint ${JSON.stringify(endpoint)}`, { cause: err });
    }
    this.auth = token ? { authorization: `Bearer ${token}` } : {};
  }

  resolveUrl(revision: string, file: string): string {
    const path = file.split('/').map(encodeURIComponent).join('/');
    return `${this.base}/${encodeRepo(this.repo)}/resolve/${encodeURIComponent(revision)}/${path}`;
  }

  /**
   * One request. Without a `guard` the whole exchange (headers and the small body of an API or
   * HEAD answer) must finish within stallMs; a transfer passes its own guard instead.
   */
  async fetch(
    url: string,
    init: RequestInit & { headers?: Record<string, string> } = {},
    guard = new StallGuard(this.stallMs),
  ): Promise<Response> {
    // head() follows redirects by hand, and LFS redirects point at another host: the token stays with the hub.
    const auth = new URL(url).origin === this.origin ? this.auth : {};
    try {
      return await fetch(url, { ...init, signal: guard.signal, headers: { ...auth, ...init.headers } });
    } catch (err) {
      if (guard.stalled) throw new ModelError(`${url}: no response within ${guard.ms} ms`, { cause: err });
      throw new ModelError(`cannot reach ${url}: ${(err as Error).message}`, { cause: err });
    }
  }

  /** A small JSON or empty answer read whole under one stall guard. */
  async exchange(url: string, init: RequestInit & { headers?: Record<string, string> } = {}) {
    const guard = new StallGuard(this.stallMs);
    try {
      const res = await this.fetch(url, init, guard);
      let body: unknown;
      try {
        if (res.ok && init.method !== 'HEAD') body = await res.json();
        else await res.body?.cancel();
      } catch (err) {
        if (guard.stalled) throw new ModelError(`${url}: no response within ${guard.ms} ms`, { cause: err });
        body = undefined;
      }
      return { res, body };
    } finally {
      guard.clear();
    }
  }

  /** Repo listing at a revision, or undefined when the endpoint has no API (plain file servers, mirrors). */
  async listFiles(revision: string): Promise<{ files: Set<string>; sha?: string } | undefined> {
    const url = `${this.base}/api/models/${encodeRepo(this.repo)}/revision/${encodeURIComponent(revision)}`;
    const { res, body } = await this.exchange(url, { headers: { accept: 'application/json' } });
    if (res.status === 401 || res.status === 403) throw authError(this.repo, res.status);
    if (!res.ok || body === undefined || body === null) return undefined;
    const siblings = (body as { siblings?: unknown }).siblings;
    if (!Array.isArray(siblings)) return undefined;
    const files = new Set<string>();
    for (const s of siblings) {
      const name = (s as { rfilename?: unknown }).rfilename;
      if (typeof name === 'string') files.add(name);
    }
    const sha = (body as { sha?: unknown }).sha;
    return { files, sha: typeof sha === 'string' && /^[0-9a-f]{40}$/.test(sha) ? sha : undefined };
  }

  /**
   * HEAD a file without following the hub's redirect to its LFS store: the redirect response
   * carries the real size and sha256 (`X-Linked-Size`, `X-Linked-Etag`). Undefined on 404.
   */
  async head(revision: string, file: string): Promise<RemoteInfo | undefined> {
    let url = this.resolveUrl(revision, file);
    for (let hop = 0; hop < 5; hop++) {
      const { res } = await this.exchange(url, { method: 'HEAD', redirect: 'manual' });
      const h = res.headers;
      if (res.status === 404) return undefined;
      if (res.status === 401 || res.status === 403) throw authError(this.repo, res.status);
      const info: RemoteInfo = { commit: h.get('x-repo-commit') ?? undefined };
      const linkedSize = h.get('x-linked-size');
      const linkedEtag = h.get('x-linked-etag');
      if (res.status >= 300 && res.status < 400 && !linkedSize && !linkedEtag) {
        const location = h.get('location');
        if (!location) throw new ModelError(`${url}: redirect without a location`);
        url = new URL(location, url).toString();
        continue;
      }
      if (!(res.ok || (res.status >= 300 && res.status < 400))) {
        throw new ModelError(`${this.repo}: HEAD ${file} failed with HTTP ${res.status}`);
      }
      const size = Number(linkedSize ?? h.get('content-length') ?? Number.NaN);
      if (Number.isSafeInteger(size) && size >= 0) info.size = size;
      const etag = normaliseEtag(linkedEtag ?? h.get('etag'));
      if (etag && /^[0-9a-f]{64}$/.test(etag)) info.sha256 = etag;
      else if (etag && /^[0-9a-f]{40}$/.test(etag)) info.gitSha1 = etag;
      return info;
    }
    throw new ModelError(`${this.repo}: too many redirects for ${file}`);
  }
}

function encodeRepo(repo: string): string {
  return repo.split('/').map(encodeURIComponent).join('/');
}

function authError(repo: string, status: number): ModelError {
  return new ModelError(
    `${repo}: HTTP ${status}: the hub refused access (gated or private repo?); set HF_TOKEN to a token that can read it`,
  );
}

function normaliseEtag(etag: string | null): string | undefined {
  if (!etag) return undefined;
  return etag
    .replace(/^W\//, '')
    .replace(/^"(.*)"$/, '$1')
    .toLowerCase();
}

async function fileSize(path: string): Promise<number | undefined> {
  try {
    const s = await stat(path);
    return s.isFile() ? s.size : undefined;
  } catch {
    return undefined;
  }
}

/** sha256 of the file, and the git blob sha1 (`blob <size>\0` + bytes) that the hub's ETag of small files is. */
async function digests(path: string, size: number): Promise<{ sha256: string; gitSha1: string }> {
  const sha256 = createHash('sha256');
  const sha1 = createHash('sha1').update(`blob ${size}\0`);
  for await (const chunk of createReadStream(path, { highWaterMark: 4 * 1024 * 1024 })) {
    sha256.update(chunk as Buffer);
    sha1.update(chunk as Buffer);
  }
  return { sha256: sha256.digest('hex'), gitSha1: sha1.digest('hex') };
}

/** Check a complete file against what the hub reported; returns the kind of check made. */
async function verify(
  path: string,
  file: string,
  info: RemoteInfo,
): Promise<Pick<PulledFile, 'size' | 'verified' | 'sha256'>> {
  const size = (await fileSize(path)) ?? 0;
  if (info.size !== undefined && size !== info.size) {
    throw new ModelError(`${file}: size mismatch: got ${size} bytes, the hub reports ${info.size}`);
  }
  if (!info.sha256 && !info.gitSha1) return { size, verified: info.size !== undefined ? 'size' : 'none' };
  const d = await digests(path, size);
  if (info.sha256 && d.sha256 !== info.sha256) {
    throw new ModelError(`${file}: sha256 mismatch: got ${d.sha256}, the hub reports ${info.sha256}`);
  }
  if (info.gitSha1 && d.gitSha1 !== info.gitSha1) {
    throw new ModelError(`${file}: git sha1 mismatch: got ${d.gitSha1}, the hub reports ${info.gitSha1}`);
  }
  return { size, verified: info.sha256 ? 'sha256' : 'git-sha1', sha256: d.sha256 };
}

class Interrupted extends Error {}

/**
 * One GET into `part`, appending from `have` when the server honours the Range. A server that
 * sends nothing for the stall timeout is cut off (and resumed by the caller like a broken one).
 */
async function transfer(
  hub: Hub,
  url: string,
  part: string,
  have: number,
  file: string,
  info: RemoteInfo & { cap: number },
  guard: StallGuard,
  onProgress?: (p: PullProgress) => void,
): Promise<void> {
  let res: Response;
  try {
    res = await hub.fetch(url, { headers: have > 0 ? { range: `bytes=${have}-` } : {} }, guard);
  } catch (err) {
    // A connection that fails outright (or never answers) is retried like one that breaks off.
    throw new Interrupted((err as Error).message, { cause: err });
  }
  if (res.status === 416 && have > 0) {
    await res.body?.cancel();
    // Nothing left to send: the part is as long as the file (verify() judges it).
    return;
  }
  if (res.status === 401 || res.status === 403) throw authError(hub.repo, res.status);
  if (res.status === 404) throw new ModelError(`${hub.repo}: ${file} not found at ${url}`);
  if (res.status !== 200 && res.status !== 206) {
    await res.body?.cancel();
    throw new ModelError(`${hub.repo}: GET ${file} failed with HTTP ${res.status}`);
  }
  let start = 0;
  if (res.status === 206) {
    const m = /^bytes (\d+)-\d+\/(\d+|\*)$/.exec(res.headers.get('content-range') ?? '');
    start = m ? Number(m[1]) : -1;
    if (start !== have) {
      await res.body?.cancel();
      throw new Interrupted(`server answered range ${res.headers.get('content-range')} for bytes=${have}-`);
    }
  }
  const fh = await open(part, start > 0 ? 'r+' : 'w');
  let pos = start;
  try {
    await fh.truncate(start);
    if (!res.body) return;
    try {
      for await (const chunk of res.body) {
        guard.touch();
        const bytes = chunk as Uint8Array;
        // Stop a server that sends more than the hub reported (or, unreported, than the cap) before it fills the disk.
        if (info.size !== undefined && pos + bytes.byteLength > info.size) {
          throw new ModelError(`${file}: the server sent more than the ${info.size} bytes the hub reports`);
        }
        if (pos + bytes.byteLength > info.cap) {
          throw new ModelError(
            `${file}: the hub reported no size and sent more than the ${info.cap}-byte cap`,
          );
        }
        let done = 0;
        while (done < bytes.byteLength) {
          const { bytesWritten } = await fh.write(bytes, done, bytes.byteLength - done, pos + done);
          done += bytesWritten;
        }
        pos += bytes.byteLength;
        onProgress?.({ file, received: pos, total: info.size });
      }
    } catch (err) {
      if (err instanceof ModelError) throw err;
      const why = guard.stalled ? `the server sent nothing for ${guard.ms} ms` : (err as Error).message;
      throw new Interrupted(`transfer of ${file} broke off at byte ${pos}: ${why}`, { cause: err });
    }
  } finally {
    await fh.close();
  }
}

async function download(
  hub: Hub,
  revision: string,
  file: string,
  info: RemoteInfo & { cap: number },
  out: string,
  retries: number,
  onProgress?: (p: PullProgress) => void,
): Promise<PulledFile> {
  if (info.size !== undefined && info.size > info.cap) {
    throw new ModelError(`${file}: the hub reports ${info.size} bytes, over the ${info.cap}-byte cap`);
  }
  const dest = join(out, file);
  const part = `${dest}.part`;
  await mkdir(dirname(dest), { recursive: true });
  if ((await fileSize(dest)) !== undefined && (info.size !== undefined || info.sha256 || info.gitSha1)) {
    try {
      return { name: file, cached: true, ...(await verify(dest, file, info)) };
    } catch {
      await rm(dest, { force: true });
    }
  }
  const url = hub.resolveUrl(revision, file);
  // Each retry resumes from what the .part file already holds (a Range request), at once.
  await pRetry(
    async () => {
      let have = (await fileSize(part)) ?? 0;
      if ((info.size !== undefined && have > info.size) || have > info.cap) {
        await rm(part, { force: true });
        have = 0;
      }
      if (info.size !== undefined && have === info.size && have > 0) return;
      const guard = new StallGuard(hub.stallMs);
      try {
        await transfer(hub, url, part, have, file, info, guard, onProgress);
      } finally {
        guard.clear();
      }
    },
    { retries, minTimeout: 0, maxTimeout: 0, shouldRetry: ({ error }) => error instanceof Interrupted },
  ).catch((err: unknown) => {
    throw err instanceof Interrupted
      ? new ModelError(`${err.message} (after ${retries} resumes)`, { cause: err })
      : err;
  });
  let checked: Pick<PulledFile, 'size' | 'verified' | 'sha256'>;
  try {
    checked = await verify(part, file, info);
  } catch (err) {
    // A wrong file must not be resumed next time either.
    await rm(part, { force: true });
    throw err;
  }
  await rename(part, dest);
  return { name: file, cached: false, ...checked };
}

function checkRelative(file: string): void {
  if (!file || file.startsWith('/') || file.split(/[\\/]/).some((s) => s === '..' || s === '')) {
    throw new ModelError(`refusing file name ${JSON.stringify(file)}`);
  }
}

/**
 * Download a BLIP checkpoint from a Hugging Face hub (or any server with the hub's
 * `/<repo>/resolve/<revision>/<file>` layout) into `out`: config, tokenizer and preprocessor
 * files, and model.safetensors if the revision has it, else pytorch_model.bin. Transfers resume
 * from `.part` files; sizes and hashes the hub reports are verified.
 */
export async function pullModel(opts: PullOptions): Promise<PullResult> {
  if (!/^[A-Za-z0-9][\w.-]*(\/[A-Za-z0-9][\w.-]*)?$/.test(opts.repo) || opts.repo.includes('..')) {
    throw new ModelError(`bad repo id ${JSON.stringify(opts.repo)} (expected owner/name)`);
  }
  const endpoint = opts.endpoint ?? process.env.HF_ENDPOINT ?? 'https://huggingface.co';
  const token = opts.token ?? process.env.HF_TOKEN ?? undefined;
  const revision = opts.revision ?? 'main';
  const hub = new Hub(endpoint, token || undefined, opts.repo, opts.stallTimeoutMs ?? DEFAULT_STALL_MS);
  const retries = opts.retries ?? 5;

  const listing = await hub.listFiles(revision);
  // Later files come from the commit the listing resolved, so a push mid-pull cannot mix revisions.
  let at = listing?.sha ?? revision;
  let commit = listing?.sha;

  const infos = new Map<string, RemoteInfo>();
  const probe = async (file: string): Promise<RemoteInfo | undefined> => {
    if (listing && !listing.files.has(file)) return undefined;
    const info = await hub.head(at, file);
    if (info && !commit && info.commit && /^[0-9a-f]{40}$/.test(info.commit)) {
      commit = info.commit;
      at = info.commit;
    }
    if (info) infos.set(file, info);
    return info;
  };

  let wanted: string[];
  let weights: string | undefined;
  if (opts.files) {
    for (const f of opts.files) checkRelative(f);
    for (const f of opts.files) {
      if (!(await probe(f))) throw new ModelError(`${opts.repo}@${revision}: ${f} not found`);
    }
    wanted = [...opts.files];
    weights = opts.files.find((f) => WEIGHTS.includes(f));
  } else {
    for (const f of REQUIRED) {
      if (!(await probe(f)))
        throw new ModelError(`${opts.repo}@${revision}: ${f} not found (wrong repo or revision?)`);
    }
    wanted = [...REQUIRED];
    for (const f of OPTIONAL) if (await probe(f)) wanted.push(f);
    if (!wanted.includes('vocab.txt') && !wanted.includes('tokenizer.json')) {
      throw new ModelError(`${opts.repo}@${revision}: has neither vocab.txt nor tokenizer.json`);
    }
    for (const f of WEIGHTS) {
      if (await probe(f)) {
        weights = f;
        break;
      }
    }
    if (!weights) {
      throw new ModelError(
        `${opts.repo}@${revision}: no model.safetensors or pytorch_model.bin (sharded checkpoints are not supported)`,
      );
    }
    wanted.push(weights);
  }

  await mkdir(opts.out, { recursive: true });
  const files: PulledFile[] = [];
  for (const f of wanted) {
    const info = { ...(infos.get(f) as RemoteInfo), cap: capFor(f, opts.maxBytes) };
    files.push(await download(hub, at, f, info, opts.out, retries, opts.onProgress));
  }
  return { out: opts.out, repo: opts.repo, revision, commit, weights, files };
}
