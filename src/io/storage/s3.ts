import { PassThrough, type Readable } from 'node:stream';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { NotFoundError, ReadTimeoutError, TooLargeError } from '../../core/errors.js';
import { folderPrefix, parseLocation } from '../location.js';
import { createS3Client, type S3Options } from '../s3.js';
import {
  type AtomicWriter,
  byRelPath,
  type ObjectInfo,
  type ObjectStat,
  type ReadOptions,
  type StorageBackend,
} from './backend.js';
import { readWhole, withIdleTimeout } from './bounded.js';

function objectOf(uri: string): { bucket: string; key: string } {
  const loc = parseLocation(uri);
  if (loc.kind !== 's3') throw new Error(`not an S3 location: ${uri}`);
  return loc;
}

function isNotFound(err: unknown): boolean {
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
  return (
    e?.name === 'NoSuchKey' ||
    e?.name === 'NotFound' ||
    e?.name === 'NoSuchBucket' ||
    e?.$metadata?.httpStatusCode === 404
  );
}

async function mapped<T>(uri: string, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    if (!isNotFound(err)) throw err;
    throw new NotFoundError(uri, { cause: err });
  }
}

/** A stalled response stream fails after this long without a byte (range reads, streams). */
export const STREAM_IDLE_TIMEOUT_MS = 60_000;

/** S3 and S3-compatible stores; the client (credential chain, retries) is made on first use. */
export class S3Backend implements StorageBackend {
  #client: S3Client | undefined;

  constructor(
    private readonly options: S3Options = {},
    private readonly idleTimeoutMs = STREAM_IDLE_TIMEOUT_MS,
  ) {}

  get client(): S3Client {
    this.#client ??= createS3Client(this.options);
    return this.#client;
  }

  close(): void {
    this.#client?.destroy();
    this.#client = undefined;
  }

  async stat(uri: string): Promise<ObjectStat | null> {
    const { bucket, key } = objectOf(uri);
    if (key !== '' && !key.endsWith('/')) {
      try {
        const head = await this.client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
        const size = head.ContentLength ?? 0;
        return { kind: 'file', size, stamp: `etag=${head.ETag ?? ''};size=${size}` };
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
    }
    const page = await this.client.send(
      new ListObjectsV2Command({ Bucket: bucket, Prefix: folderPrefix(key), MaxKeys: 1 }),
    );
    return (page.KeyCount ?? 0) > 0 ? { kind: 'folder', size: 0, stamp: '' } : null;
  }

  async list(uri: string): Promise<ObjectInfo[]> {
    const { bucket, key } = objectOf(uri);
    const prefix = folderPrefix(key);
    const out: ObjectInfo[] = [];
    let token: string | undefined;
    do {
      const page = await mapped(uri, () =>
        this.client.send(
          new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }),
        ),
      );
      for (const o of page.Contents ?? []) {
        if (!o.Key || o.Key.endsWith('/')) continue;
        out.push({ uri: `s3://${bucket}/${o.Key}`, relPath: o.Key.slice(prefix.length), size: o.Size ?? 0 });
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return out.sort(byRelPath);
  }

  /**
   * The whole object, counted as it arrives (ContentLength is a claim); the answer must come and
   * the body keep flowing within the read timeout.
   */
  async read(uri: string, options: ReadOptions): Promise<Buffer> {
    const { bucket, key } = objectOf(uri);
    const maxBytes = options.limits?.maxBytes;
    const timeoutMs = options.limits?.fetchTimeoutMs;
    return mapped(uri, async () => {
      const ac = new AbortController();
      const timer = timeoutMs ? setTimeout(() => ac.abort(), timeoutMs) : undefined;
      const res = await this.client
        .send(new GetObjectCommand({ Bucket: bucket, Key: key }), { abortSignal: ac.signal })
        .catch((err: unknown) => {
          throw ac.signal.aborted ? new ReadTimeoutError(uri, timeoutMs ?? 0) : err;
        })
        .finally(() => clearTimeout(timer));
      const body = res.Body as Readable | undefined;
      if (maxBytes !== undefined && (res.ContentLength ?? 0) > maxBytes) {
        body?.destroy();
        throw new TooLargeError(uri, res.ContentLength ?? 0, maxBytes);
      }
      if (!body) return Buffer.alloc(0);
      return await readWhole(body, uri, { maxBytes, timeoutMs });
    });
  }

  /** Bytes [start, end): a server that ignores the Range header is cut off, not read whole. */
  async readRange(uri: string, start: number, end: number): Promise<Buffer> {
    const { bucket, key } = objectOf(uri);
    return mapped(uri, async () => {
      const res = await this.client.send(
        new GetObjectCommand({ Bucket: bucket, Key: key, Range: `bytes=${start}-${end - 1}` }),
      );
      const body = res.Body as Readable | undefined;
      if (!body) return Buffer.alloc(0);
      return await readWhole(withIdleTimeout(body, uri, this.idleTimeoutMs), uri, { maxBytes: end - start });
    });
  }

  /** The object as a stream that fails when it stalls (manifests and tars are read this way). */
  async readStream(uri: string): Promise<Readable> {
    const { bucket, key } = objectOf(uri);
    return mapped(uri, async () => {
      const res = await this.client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
      return withIdleTimeout(res.Body as Readable, uri, this.idleTimeoutMs);
    });
  }

  async write(uri: string, data: string | Uint8Array): Promise<void> {
    const { bucket, key } = objectOf(uri);
    await this.client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: data }));
  }

  async createAtomicWriter(uri: string): Promise<AtomicWriter> {
    const { bucket, key } = objectOf(uri);
    const body = new PassThrough();
    const upload = new Upload({
      client: this.client,
      params: { Bucket: bucket, Key: key, Body: body },
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

  async delete(uri: string): Promise<void> {
    const { bucket, key } = objectOf(uri);
    await this.client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
  }

  /** An uncommitted upload leaves no object (its parts are aborted), so there is nothing to remove. */
  async removeTemps(): Promise<void> {}
  /** A prefix exists only while objects carry it. */
  async pruneEmpty(): Promise<void> {}
}
