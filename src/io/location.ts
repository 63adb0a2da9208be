import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { PassThrough, Readable, type Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { DEFAULT_LIMITS } from '../core/defaults.js';
import { CapfiltError } from '../core/errors.js';
import { fetchUrl, type HttpFetchOptions } from './http.js';
import { createS3Client, type S3Options } from './s3.js';

export type Location =
  | { kind: 'local'; path: string }
  | { kind: 's3'; bucket: string; key: string }
  | { kind: 'http'; url: string };

/** Parses `s3://bucket/prefix`, an http(s) URL, a file:// URL or a local path (made absolute). */
export function parseLocation(input: string): Location {
  if (/^s3:\/\//i.test(input)) {
    const rest = input.slice(5);
    const slash = rest.indexOf('/');
    const bucket = slash < 0 ? rest : rest.slice(0, slash);
    if (!bucket) throw new CapfiltError('usage', `bad S3 location ${input}`);
    return { kind: 's3', bucket, key: slash < 0 ? '' : rest.slice(slash + 1) };
  }
  if (/^https?:\/\//i.test(input)) return { kind: 'http', url: input };
  if (/^file:\/\//i.test(input)) return { kind: 'local', path: fileURLToPath(input) };
  return { kind: 'local', path: resolve(input) };
}

export function formatLocation(loc: Location): string {
  if (loc.kind === 'local') return loc.path;
  if (loc.kind === 's3') return `s3://${loc.bucket}/${loc.key}`;
  return loc.url;
}

/** An S3 key naming a folder, as the prefix of the keys under it: '' (the bucket) or ending in '/'. */
function folderPrefix(key: string): string {
  return key === '' || key.endsWith('/') ? key : `${key}/`;
}

/** Appends a relative path ('/'-separated) to a folder or prefix location. */
export function joinUri(base: string, rel: string): string {
  const loc = parseLocation(base);
  if (loc.kind === 'local') return join(loc.path, ...rel.split('/'));
  if (loc.kind === 's3') {
    const prefix = folderPrefix(loc.key);
    return `s3://${loc.bucket}/${prefix}${rel}`;
  }
  return new URL(rel, loc.url.endsWith('/') ? loc.url : `${loc.url}/`).href;
}

/** The folder (or prefix) holding a file location. */
export function parentUri(uri: string): string {
  const loc = parseLocation(uri);
  if (loc.kind === 'local') return dirname(loc.path);
  if (loc.kind === 's3') {
    const i = loc.key.lastIndexOf('/');
    return `s3://${loc.bucket}/${i < 0 ? '' : loc.key.slice(0, i)}`;
  }
  return new URL('.', loc.url).href;
}

export function baseName(uri: string): string {
  const loc = parseLocation(uri);
  const p = loc.kind === 'local' ? loc.path : loc.kind === 's3' ? loc.key : new URL(loc.url).pathname;
  const parts = p.split(/[\\/]/).filter(Boolean);
  return parts[parts.length - 1] ?? '';
}

/**
 * Resolves an image reference found in a manifest: an absolute URI stays as it is, anything else
 * is a path relative to the manifest's folder (local or S3).
 */
export function resolveRef(ref: string, manifestUri: string): string {
  if (/^(s3|https?|file):\/\//i.test(ref)) return formatLocation(parseLocation(ref));
  const parent = parentUri(manifestUri);
  if (isAbsolute(ref) && parseLocation(manifestUri).kind === 'local') return resolve(ref);
  return joinUri(parent, ref.replace(/^\.\//, ''));
}

export class NotFoundError extends CapfiltError {
  readonly uri: string;
  constructor(uri: string, options?: { cause?: unknown }) {
    super('not_found', `${uri} does not exist`, options);
    this.uri = uri;
  }
}

export interface ObjectInfo {
  uri: string;
  /** Path relative to the listed folder/prefix, '/'-separated. */
  relPath: string;
  size: number;
}

/** A write that becomes visible under its final name only on commit (never a partial file). */
export interface AtomicWriter {
  readonly stream: Writable;
  commit(): Promise<void>;
  abort(): Promise<void>;
}

export interface StorageOptions {
  s3?: S3Options;
  http?: HttpFetchOptions;
}

const DEFAULT_HTTP: HttpFetchOptions = {
  timeoutMs: DEFAULT_LIMITS.fetchTimeoutMs,
  retries: DEFAULT_LIMITS.fetchRetries,
  maxBytes: DEFAULT_LIMITS.maxBytes,
  allowPrivateNetwork: DEFAULT_LIMITS.allowPrivateNetwork,
};

/** Code-unit order, the same on every platform and locale (shard plans depend on it). */
function byRelPath(a: ObjectInfo, b: ObjectInfo): number {
  return a.relPath < b.relPath ? -1 : a.relPath > b.relPath ? 1 : 0;
}

function isNotFound(err: unknown): boolean {
  const e = err as { code?: string; name?: string; $metadata?: { httpStatusCode?: number } };
  return (
    e?.code === 'ENOENT' ||
    e?.code === 'EISDIR' ||
    e?.name === 'NoSuchKey' ||
    e?.name === 'NotFound' ||
    e?.name === 'NoSuchBucket' ||
    e?.$metadata?.httpStatusCode === 404
  );
}

function tempName(path: string): string {
  const name = path.slice(path.lastIndexOf(sep) + 1);
  return join(dirname(path), `.${name}.${process.pid}-${randomBytes(4).toString('hex')}.tmp`);
}

/**
 * Local files, S3 objects and http(s) URLs behind one interface. Writes are atomic: temp file +
 * rename locally, one PUT or a completed multipart upload on S3.
 */
export class Storage {
  readonly options: StorageOptions;
  #s3: S3Client | undefined;

  constructor(options: StorageOptions = {}) {
    this.options = options;
  }

  get s3(): S3Client {
    this.#s3 ??= createS3Client(this.options.s3);
    return this.#s3;
  }

  close(): void {
    this.#s3?.destroy();
    this.#s3 = undefined;
  }

  /** Every file under a folder or prefix, recursively, sorted by relative path. */
  async list(uri: string): Promise<ObjectInfo[]> {
    const loc = parseLocation(uri);
    if (loc.kind === 'local') {
      const out: ObjectInfo[] = [];
      let entries: string[];
      try {
        entries = (await readdir(loc.path, { recursive: true })) as string[];
      } catch (err) {
        if (isNotFound(err)) throw new NotFoundError(uri, { cause: err });
        throw err;
      }
      for (const rel of entries) {
        const full = join(loc.path, rel);
        const st = await stat(full).catch(() => null);
        if (st?.isFile()) out.push({ uri: full, relPath: rel.split(sep).join('/'), size: st.size });
      }
      return out.sort(byRelPath);
    }
    if (loc.kind === 's3') {
      const prefix = folderPrefix(loc.key);
      const out: ObjectInfo[] = [];
      let token: string | undefined;
      do {
        const page = await this.s3.send(
          new ListObjectsV2Command({ Bucket: loc.bucket, Prefix: prefix, ContinuationToken: token }),
        );
        for (const o of page.Contents ?? []) {
          if (!o.Key || o.Key.endsWith('/')) continue;
          out.push({
            uri: `s3://${loc.bucket}/${o.Key}`,
            relPath: o.Key.slice(prefix.length),
            size: o.Size ?? 0,
          });
        }
        token = page.IsTruncated ? page.NextContinuationToken : undefined;
      } while (token);
      return out.sort(byRelPath);
    }
    throw new CapfiltError('usage', `cannot list ${uri}`);
  }

  /** 'file', 'folder' (a directory or a non-empty prefix) or null when nothing is there. */
  async kind(uri: string): Promise<'file' | 'folder' | null> {
    const loc = parseLocation(uri);
    if (loc.kind === 'local') {
      const st = await stat(loc.path).catch(() => null);
      return st ? (st.isDirectory() ? 'folder' : 'file') : null;
    }
    if (loc.kind === 's3') {
      if (loc.key !== '' && !loc.key.endsWith('/') && (await this.exists(uri))) return 'file';
      const prefix = folderPrefix(loc.key);
      const page = await this.s3.send(
        new ListObjectsV2Command({ Bucket: loc.bucket, Prefix: prefix, MaxKeys: 1 }),
      );
      return (page.KeyCount ?? 0) > 0 ? 'folder' : null;
    }
    return 'file';
  }

  async exists(uri: string): Promise<boolean> {
    const loc = parseLocation(uri);
    if (loc.kind === 'local') return (await stat(loc.path).catch(() => null))?.isFile() ?? false;
    if (loc.kind === 's3') {
      try {
        await this.s3.send(new HeadObjectCommand({ Bucket: loc.bucket, Key: loc.key }));
        return true;
      } catch (err) {
        if (isNotFound(err)) return false;
        throw err;
      }
    }
    throw new CapfiltError('usage', `exists() is not supported for ${uri}`);
  }

  async size(uri: string): Promise<number> {
    const loc = parseLocation(uri);
    try {
      if (loc.kind === 'local') return (await stat(loc.path)).size;
      if (loc.kind === 's3') {
        const head = await this.s3.send(new HeadObjectCommand({ Bucket: loc.bucket, Key: loc.key }));
        return head.ContentLength ?? 0;
      }
    } catch (err) {
      if (isNotFound(err)) throw new NotFoundError(uri, { cause: err });
      throw err;
    }
    throw new CapfiltError('usage', `size() is not supported for ${uri}`);
  }

  /**
   * Whole object as bytes. `key` names the sample for http errors. A local file or S3 object
   * larger than maxBytes is refused before reading.
   */
  async read(uri: string, opts: { key?: string; maxBytes?: number } = {}): Promise<Buffer> {
    const loc = parseLocation(uri);
    try {
      if (loc.kind === 'local') {
        if (opts.maxBytes !== undefined) {
          const st = await stat(loc.path);
          if (st.size > opts.maxBytes) throw new TooLargeError(uri, st.size, opts.maxBytes);
        }
        return await readFile(loc.path);
      }
      if (loc.kind === 's3') {
        const res = await this.s3.send(new GetObjectCommand({ Bucket: loc.bucket, Key: loc.key }));
        if (opts.maxBytes !== undefined && (res.ContentLength ?? 0) > opts.maxBytes) {
          (res.Body as Readable | undefined)?.destroy();
          throw new TooLargeError(uri, res.ContentLength ?? 0, opts.maxBytes);
        }
        const bytes = await res.Body?.transformToByteArray();
        return Buffer.from(bytes ?? new Uint8Array());
      }
    } catch (err) {
      if (isNotFound(err)) throw new NotFoundError(uri, { cause: err });
      throw err;
    }
    const http = { ...DEFAULT_HTTP, ...this.options.http };
    if (opts.maxBytes !== undefined) http.maxBytes = Math.min(http.maxBytes, opts.maxBytes);
    return fetchUrl(loc.url, opts.key ?? loc.url, http);
  }

  /** Bytes [start, end) of an object (Parquet footers and column chunks). */
  async readRange(uri: string, start: number, end: number): Promise<Buffer> {
    if (end <= start) return Buffer.alloc(0);
    const loc = parseLocation(uri);
    try {
      if (loc.kind === 'local') {
        const fh = await open(loc.path, 'r');
        try {
          const buf = Buffer.alloc(end - start);
          let off = 0;
          while (off < buf.length) {
            const { bytesRead } = await fh.read(buf, off, buf.length - off, start + off);
            if (bytesRead === 0) break;
            off += bytesRead;
          }
          return buf.subarray(0, off);
        } finally {
          await fh.close();
        }
      }
      if (loc.kind === 's3') {
        const res = await this.s3.send(
          new GetObjectCommand({ Bucket: loc.bucket, Key: loc.key, Range: `bytes=${start}-${end - 1}` }),
        );
        return Buffer.from((await res.Body?.transformToByteArray()) ?? new Uint8Array());
      }
    } catch (err) {
      if (isNotFound(err)) throw new NotFoundError(uri, { cause: err });
      throw err;
    }
    throw new CapfiltError('usage', `readRange() is not supported for ${uri}`);
  }

  async readStream(uri: string): Promise<Readable> {
    const loc = parseLocation(uri);
    try {
      if (loc.kind === 'local') {
        const st = await stat(loc.path);
        if (!st.isFile()) throw new NotFoundError(uri);
        return createReadStream(loc.path, { highWaterMark: 1 << 20 });
      }
      if (loc.kind === 's3') {
        const res = await this.s3.send(new GetObjectCommand({ Bucket: loc.bucket, Key: loc.key }));
        return res.Body as Readable;
      }
    } catch (err) {
      if (err instanceof NotFoundError) throw err;
      if (isNotFound(err)) throw new NotFoundError(uri, { cause: err });
      throw err;
    }
    return Readable.from([await this.read(uri)]);
  }

  /** Writes a whole object atomically. */
  async write(uri: string, data: string | Uint8Array): Promise<void> {
    const loc = parseLocation(uri);
    if (loc.kind === 'local') {
      await mkdir(dirname(loc.path), { recursive: true });
      const tmp = tempName(loc.path);
      try {
        await writeFile(tmp, data);
        await rename(tmp, loc.path);
      } catch (err) {
        await rm(tmp, { force: true });
        throw err;
      }
      return;
    }
    if (loc.kind === 's3') {
      await this.s3.send(new PutObjectCommand({ Bucket: loc.bucket, Key: loc.key, Body: data }));
      return;
    }
    throw new CapfiltError('usage', `cannot write to ${uri}`);
  }

  /** A streaming write that appears under `uri` only when committed. */
  async createAtomicWriter(uri: string): Promise<AtomicWriter> {
    const loc = parseLocation(uri);
    if (loc.kind === 'local') {
      await mkdir(dirname(loc.path), { recursive: true });
      const tmp = tempName(loc.path);
      const stream = createWriteStream(tmp);
      let done = false;
      return {
        stream,
        async commit() {
          stream.end();
          await finished(stream);
          await rename(tmp, loc.path);
          done = true;
        },
        async abort() {
          if (done) return;
          stream.destroy();
          await rm(tmp, { force: true });
        },
      };
    }
    if (loc.kind === 's3') {
      const body = new PassThrough();
      const upload = new Upload({
        client: this.s3,
        params: { Bucket: loc.bucket, Key: loc.key, Body: body },
        queueSize: 2,
        partSize: 8 << 20,
        leavePartsOnError: false,
      });
      const result = upload.done();
      // The upload's failure surfaces on commit; keep it from being an unhandled rejection meanwhile.
      result.catch(() => undefined);
      return {
        stream: body,
        async commit() {
          body.end();
          await result;
        },
        async abort() {
          await upload.abort().catch(() => undefined);
          body.destroy();
        },
      };
    }
    throw new CapfiltError('usage', `cannot write to ${uri}`);
  }

  async delete(uri: string): Promise<void> {
    const loc = parseLocation(uri);
    if (loc.kind === 'local') {
      await rm(loc.path, { force: true });
      return;
    }
    if (loc.kind === 's3') {
      await this.s3.send(new DeleteObjectCommand({ Bucket: loc.bucket, Key: loc.key }));
      return;
    }
    throw new CapfiltError('usage', `cannot delete ${uri}`);
  }
}

export class TooLargeError extends CapfiltError {
  constructor(uri: string, size: number, max: number) {
    super('too_large', `${uri}: ${size} bytes > cap ${max}`);
  }
}

/** Relative '/'-path of `uri` under `root` (both local or both S3). */
export function relativeUri(root: string, uri: string): string {
  const a = parseLocation(root);
  const b = parseLocation(uri);
  if (a.kind === 'local' && b.kind === 'local') return relative(a.path, b.path).split(sep).join('/');
  if (a.kind === 's3' && b.kind === 's3') {
    const prefix = folderPrefix(a.key);
    return b.key.startsWith(prefix) ? b.key.slice(prefix.length) : b.key;
  }
  return baseName(uri);
}
