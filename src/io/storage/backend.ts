import type { Readable, Writable } from 'node:stream';
import { UsageError } from '../../core/errors.js';
import type { FetchLimits, SourcePolicy } from '../../core/types.js';

export interface ObjectInfo {
  uri: string;
  /** Path relative to the listed folder/prefix, '/'-separated. */
  relPath: string;
  size: number;
}

/** What is at a location. */
export interface ObjectStat {
  kind: 'file' | 'folder';
  /** Bytes of a file (0 for a folder, or an http(s) URL, which is not asked). */
  size: number;
  /**
   * Changes when the file is rewritten: `etag=…;size=…` on S3, `mtime=…;size=…` locally, the URL
   * itself for http(s) (no cheap stamp). Empty for folders.
   */
  stamp: string;
}

/** A write that becomes visible under its final name only on commit (never a partial file). */
export interface AtomicWriter {
  readonly stream: Writable;
  commit(): Promise<void>;
  abort(): Promise<void>;
}

/**
 * The run's limits that apply to one read: every backend counts `maxBytes` as bytes arrive and
 * gives up after `fetchTimeoutMs`; http(s) reads also honour the retries and the address guard.
 */
export type ReadLimits = Partial<
  Pick<FetchLimits, 'maxBytes' | 'fetchTimeoutMs' | 'fetchRetries' | 'allowPrivateNetwork'>
>;

export interface ReadOptions {
  /** The sample the bytes are for: http(s) failures become SampleErrors carrying it. */
  key?: string;
  limits?: ReadLimits;
  /**
   * Reads an image reference names: the run's source policy, checked before anything is opened
   * or asked (a BlockedSourceError otherwise). Reads of the run's own inputs and outputs have none.
   */
  sources?: SourcePolicy;
}

/**
 * One kind of location (local files, S3, http(s)). An operation a backend cannot do (writing to
 * a URL) throws a UsageError.
 */
export interface StorageBackend {
  stat(uri: string): Promise<ObjectStat | null>;
  /** Every file under a folder or prefix, recursively, sorted by relative path (code-unit order). */
  list(uri: string): Promise<ObjectInfo[]>;
  read(uri: string, options: ReadOptions): Promise<Buffer>;
  /** Bytes [start, end) of an object (Parquet footers and column chunks). */
  readRange(uri: string, start: number, end: number): Promise<Buffer>;
  /** A regular file or object as a stream (links, devices and FIFOs refused). */
  readStream(uri: string): Promise<Readable>;
  /** Writes a whole object atomically. */
  write(uri: string, data: string | Uint8Array): Promise<void>;
  createAtomicWriter(uri: string): Promise<AtomicWriter>;
  delete(uri: string): Promise<void>;
  /** Removes temp files that a killed writer left in `folder` (never committed, never visible). */
  removeTemps(folder: string): Promise<void>;
  /** Removes `folder` and the folders under it when they hold no file (object stores have none). */
  pruneEmpty(folder: string): Promise<void>;
  close(): void;
}

/** For backends: an operation their kind of location does not support. */
export function unsupported(operation: string, uri: string): never {
  throw new UsageError(`${operation} is not supported for ${uri}`);
}

/** Code-unit order, the same on every platform and locale (shard plans depend on it). */
export function byRelPath(a: ObjectInfo, b: ObjectInfo): number {
  return a.relPath < b.relPath ? -1 : a.relPath > b.relPath ? 1 : 0;
}
