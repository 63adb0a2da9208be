import type { Readable } from 'node:stream';
import { Readable as ReadableStream } from 'node:stream';
import { DEFAULT_LIMITS } from '../../core/defaults.js';
import { definedOnly } from '../../core/options.js';
import { fetchUrl } from '../http.js';
import {
  type AtomicWriter,
  type ObjectInfo,
  type ObjectStat,
  type ReadLimits,
  type ReadOptions,
  type StorageBackend,
  unsupported,
} from './backend.js';

/** http(s) URLs: read-only, fetched with the run's limits (timeouts, retries, byte cap, address guard). */
export class HttpBackend implements StorageBackend {
  constructor(private readonly defaults: ReadLimits = {}) {}

  /** A URL is taken to be a file; it has no cheap stamp, so its address stands for its content. */
  async stat(uri: string): Promise<ObjectStat | null> {
    return { kind: 'file', size: 0, stamp: `url=${uri}` };
  }

  async read(uri: string, options: ReadOptions): Promise<Buffer> {
    const l = { ...DEFAULT_LIMITS, ...definedOnly(this.defaults), ...definedOnly(options.limits ?? {}) };
    return fetchUrl(uri, options.key ?? uri, {
      timeoutMs: l.fetchTimeoutMs,
      retries: l.fetchRetries,
      maxBytes: l.maxBytes,
      allowPrivateNetwork: l.allowPrivateNetwork,
    });
  }

  async readStream(uri: string): Promise<Readable> {
    return ReadableStream.from([await this.read(uri, {})]);
  }

  async list(uri: string): Promise<ObjectInfo[]> {
    return unsupported('listing', uri);
  }
  async readRange(uri: string): Promise<Buffer> {
    return unsupported('a range read', uri);
  }
  async write(uri: string): Promise<void> {
    return unsupported('writing', uri);
  }
  async createAtomicWriter(uri: string): Promise<AtomicWriter> {
    return unsupported('writing', uri);
  }
  async delete(uri: string): Promise<void> {
    return unsupported('deleting', uri);
  }
  async removeTemps(): Promise<void> {}
  async pruneEmpty(): Promise<void> {}
  close(): void {}
}
