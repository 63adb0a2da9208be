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
import { NotFoundError, TooLargeError } from '../../core/errors.js';
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

/** S3 and S3-compatible stores; the client (credential chain, retries) is made on first use. */
export class S3Backend implements StorageBackend {
  #client: S3Client | undefined;

  constructor(private readonly options: S3Options = {}) {}

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

  async read(uri: string, options: ReadOptions): Promise<Buffer> {
    const { bucket, key } = objectOf(uri);
    const maxBytes = options.limits?.maxBytes;
    return mapped(uri, async () => {
      const res = await this.client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
      if (maxBytes !== undefined && (res.ContentLength ?? 0) > maxBytes) {
        (res.Body as Readable | undefined)?.destroy();
        throw new TooLargeError(uri, res.ContentLength ?? 0, maxBytes);
      }
      return Buffer.from((await res.Body?.transformToByteArray()) ?? new Uint8Array());
    });
  }

  async readRange(uri: string, start: number, end: number): Promise<Buffer> {
    const { bucket, key } = objectOf(uri);
    return mapped(uri, async () => {
      const res = await this.client.send(
        new GetObjectCommand({ Bucket: bucket, Key: key, Range: `bytes=${start}-${end - 1}` }),
      );
      return Buffer.from((await res.Body?.transformToByteArray()) ?? new Uint8Array());
    });
  }

  async readStream(uri: string): Promise<Readable> {
    const { bucket, key } = objectOf(uri);
    return mapped(uri, async () => {
      const res = await this.client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
      return res.Body as Readable;
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
}
