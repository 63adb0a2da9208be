import type { Readable } from 'node:stream';
import { NotFoundError } from '../../core/errors.js';
import { parseLocation } from '../location.js';
import type { S3Options } from '../s3.js';
import { checkRemoteSource } from '../sources.js';
import type {
  AtomicWriter,
  ObjectInfo,
  ObjectStat,
  ReadLimits,
  ReadOptions,
  StorageBackend,
} from './backend.js';
import { HttpBackend } from './http.js';
import { LocalBackend } from './local.js';
import { S3Backend } from './s3.js';

export interface StorageOptions {
  s3?: S3Options;
  /** Defaults for http(s) reads; a read's own limits win. */
  http?: ReadLimits;
  /** A remote stream (S3 manifest, tar, range) fails after this long without a byte; default 60 s. */
  idleTimeoutMs?: number;
}

/**
 * Local files, S3 objects and http(s) URLs behind one interface: every caller reads, lists,
 * stats and writes through it and never talks to a backend itself. Writes are atomic: temp
 * file + rename locally, one PUT or a completed multipart upload on S3.
 */
export class Storage {
  readonly options: StorageOptions;
  readonly #local = new LocalBackend();
  readonly #s3: S3Backend;
  readonly #http: HttpBackend;

  constructor(options: StorageOptions = {}) {
    this.options = options;
    this.#s3 = new S3Backend(options.s3, options.idleTimeoutMs);
    this.#http = new HttpBackend(options.http);
  }

  #backend(uri: string): StorageBackend {
    const kind = parseLocation(uri).kind;
    return kind === 'local' ? this.#local : kind === 's3' ? this.#s3 : this.#http;
  }

  close(): void {
    this.#s3.close();
  }

  /** What is at `uri`, or null when nothing is there (a prefix with no keys is nothing). */
  async stat(uri: string): Promise<ObjectStat | null> {
    return this.#backend(uri).stat(uri);
  }

  async list(uri: string): Promise<ObjectInfo[]> {
    return this.#backend(uri).list(uri);
  }

  /** 'file', 'folder' (a directory or a non-empty prefix) or null when nothing is there. */
  async kind(uri: string): Promise<'file' | 'folder' | null> {
    return (await this.stat(uri))?.kind ?? null;
  }

  async exists(uri: string): Promise<boolean> {
    return (await this.stat(uri))?.kind === 'file';
  }

  async size(uri: string): Promise<number> {
    const st = await this.stat(uri);
    if (!st) throw new NotFoundError(uri);
    return st.size;
  }

  /**
   * Whole object as bytes, counted as they arrive: more than `limits.maxBytes` fails (before
   * reading where a size is declared), and so does a read that stalls past `limits.fetchTimeoutMs`.
   * http(s) URLs are fetched with the given retries and address guard. With `sources` (image
   * references), a location the policy does not allow is refused before it is opened or asked.
   */
  async read(uri: string, options: ReadOptions = {}): Promise<Buffer> {
    if (options.sources) checkRemoteSource(uri, options.sources);
    return this.#backend(uri).read(uri, options);
  }

  async readRange(uri: string, start: number, end: number): Promise<Buffer> {
    if (end <= start) return Buffer.alloc(0);
    return this.#backend(uri).readRange(uri, start, end);
  }

  /** A regular file or object as a stream; a remote one fails when it stalls (idleTimeoutMs). */
  async readStream(uri: string): Promise<Readable> {
    return this.#backend(uri).readStream(uri);
  }

  async write(uri: string, data: string | Uint8Array): Promise<void> {
    return this.#backend(uri).write(uri, data);
  }

  /** A streaming write that appears under `uri` only when committed. */
  async createAtomicWriter(uri: string): Promise<AtomicWriter> {
    return this.#backend(uri).createAtomicWriter(uri);
  }

  async delete(uri: string): Promise<void> {
    return this.#backend(uri).delete(uri);
  }

  async removeTemps(folder: string): Promise<void> {
    return this.#backend(folder).removeTemps(folder);
  }

  async pruneEmpty(folder: string): Promise<void> {
    return this.#backend(folder).pruneEmpty(folder);
  }
}

export type { AtomicWriter, ObjectInfo, ObjectStat, ReadLimits, ReadOptions, StorageBackend };
