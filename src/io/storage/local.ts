import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join, sep } from 'node:path';
import type { Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { NotFoundError, TooLargeError } from '../../core/errors.js';
import { parseLocation } from '../location.js';
import {
  type AtomicWriter,
  byRelPath,
  type ObjectInfo,
  type ObjectStat,
  type ReadOptions,
  type StorageBackend,
} from './backend.js';

function pathOf(uri: string): string {
  const loc = parseLocation(uri);
  if (loc.kind !== 'local') throw new Error(`not a local path: ${uri}`);
  return loc.path;
}

function isNotFound(err: unknown): boolean {
  const code = (err as { code?: string })?.code;
  return code === 'ENOENT' || code === 'EISDIR';
}

/** Rethrows a missing file as NotFoundError. */
async function mapped<T>(uri: string, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    if (err instanceof NotFoundError || !isNotFound(err)) throw err;
    throw new NotFoundError(uri, { cause: err });
  }
}

/** `.<name>.<pid>-<8 hex>.tmp` beside the final file: never matched by a reader, removed by removeTemps. */
function tempName(path: string): string {
  const name = path.slice(path.lastIndexOf(sep) + 1);
  return join(dirname(path), `.${name}.${process.pid}-${randomBytes(4).toString('hex')}.tmp`);
}
const TEMP_NAME = /^\..+\.\d+-[0-9a-f]{8}\.tmp$/;

export class LocalBackend implements StorageBackend {
  async stat(uri: string): Promise<ObjectStat | null> {
    const st = await stat(pathOf(uri)).catch(() => null);
    if (!st) return null;
    if (st.isDirectory()) return { kind: 'folder', size: 0, stamp: '' };
    return { kind: 'file', size: st.size, stamp: `mtime=${st.mtimeMs};size=${st.size}` };
  }

  async list(uri: string): Promise<ObjectInfo[]> {
    const root = pathOf(uri);
    const entries = (await mapped(uri, () => readdir(root, { recursive: true }))) as string[];
    const out: ObjectInfo[] = [];
    for (const rel of entries) {
      const full = join(root, rel);
      const st = await stat(full).catch(() => null);
      if (st?.isFile()) out.push({ uri: full, relPath: rel.split(sep).join('/'), size: st.size });
    }
    return out.sort(byRelPath);
  }

  async read(uri: string, options: ReadOptions): Promise<Buffer> {
    const path = pathOf(uri);
    return mapped(uri, async () => {
      const maxBytes = options.limits?.maxBytes;
      if (maxBytes !== undefined) {
        const st = await stat(path);
        if (st.size > maxBytes) throw new TooLargeError(uri, st.size, maxBytes);
      }
      return await readFile(path);
    });
  }

  async readRange(uri: string, start: number, end: number): Promise<Buffer> {
    return mapped(uri, async () => {
      const fh = await open(pathOf(uri), 'r');
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
    });
  }

  async readStream(uri: string): Promise<Readable> {
    const path = pathOf(uri);
    return mapped(uri, async () => {
      if (!(await stat(path)).isFile()) throw new NotFoundError(uri);
      return createReadStream(path, { highWaterMark: 1 << 20 });
    });
  }

  async write(uri: string, data: string | Uint8Array): Promise<void> {
    const path = pathOf(uri);
    await mkdir(dirname(path), { recursive: true });
    const tmp = tempName(path);
    try {
      await writeFile(tmp, data);
      await rename(tmp, path);
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
  }

  async createAtomicWriter(uri: string): Promise<AtomicWriter> {
    const path = pathOf(uri);
    await mkdir(dirname(path), { recursive: true });
    const tmp = tempName(path);
    const stream = createWriteStream(tmp);
    let done = false;
    return {
      stream,
      async commit() {
        stream.end();
        await finished(stream);
        await rename(tmp, path);
        done = true;
      },
      async abort() {
        if (done) return;
        stream.destroy();
        await rm(tmp, { force: true });
      },
    };
  }

  async delete(uri: string): Promise<void> {
    await rm(pathOf(uri), { force: true });
  }

  async removeTemps(folder: string): Promise<void> {
    const root = pathOf(folder);
    const names = await readdir(root).catch(() => [] as string[]);
    await Promise.all(names.filter((n) => TEMP_NAME.test(n)).map((n) => rm(join(root, n), { force: true })));
  }

  close(): void {}
}
