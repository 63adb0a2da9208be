import { randomBytes } from 'node:crypto';
import { constants, createWriteStream, type Stats } from 'node:fs';
import {
  type FileHandle,
  mkdir,
  open,
  readdir,
  realpath,
  rename,
  rm,
  rmdir,
  stat,
  writeFile,
} from 'node:fs/promises';
import { dirname, join, sep } from 'node:path';
import type { Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { BlockedSourceError, NotFoundError, TooLargeError } from '../../core/errors.js';
import { isInside, parseLocation } from '../location.js';
import { checkLocalSource, refusalOf } from '../sources.js';
import {
  type AtomicWriter,
  byRelPath,
  type ObjectInfo,
  type ObjectStat,
  type ReadOptions,
  type StorageBackend,
} from './backend.js';
import { readWhole } from './bounded.js';

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

function typeOf(st: Stats): string {
  if (st.isFIFO()) return 'a FIFO';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'a device';
  return 'not a regular file';
}

/**
 * Opens a regular file for reading, and nothing else: O_NONBLOCK so that a FIFO cannot block the
 * open, then fstat on what was opened (a device, FIFO or socket is refused unread). With `roots`,
 * the real path of the opened descriptor must lie in one of them, so that a link swapped in
 * between the check and the open is caught too.
 */
async function openRegular(
  uri: string,
  path: string,
  roots?: readonly string[],
): Promise<{ fh: FileHandle; size: number }> {
  if (roots && !(await checkLocalSource(uri, path, roots))) throw new NotFoundError(uri);
  const fh = await open(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  try {
    const st = await fh.stat();
    if (st.isDirectory()) throw new NotFoundError(uri);
    if (!st.isFile()) throw new BlockedSourceError(uri, `${typeOf(st)}, not a regular file`);
    if (roots) {
      const opened = await realpath(`/proc/self/fd/${fh.fd}`).catch(() => null);
      const refused = opened === null ? null : refusalOf(opened, roots);
      if (refused) throw new BlockedSourceError(uri, refused);
    }
    return { fh, size: st.size };
  } catch (err) {
    await fh.close();
    throw err;
  }
}

/**
 * Every regular file under `root`, walked without following links to folders (a `loop -> ..` link
 * would list the tree again and again); a link to a file counts only when its real path stays
 * inside the root.
 */
async function walk(root: string): Promise<ObjectInfo[]> {
  const realRoot = await realpath(root);
  const out: ObjectInfo[] = [];
  const visit = async (dir: string, rel: string): Promise<void> => {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const full = join(dir, entry.name);
      const relPath = rel === '' ? entry.name : `${rel}/${entry.name}`;
      if (entry.isDirectory()) {
        await visit(full, relPath);
        continue;
      }
      if (!entry.isFile() && !entry.isSymbolicLink()) continue;
      if (entry.isSymbolicLink()) {
        const real = await realpath(full).catch(() => null);
        if (real === null || !isInside(real, realRoot)) continue;
      }
      const st = await stat(full).catch(() => null);
      if (st?.isFile()) out.push({ uri: full, relPath, size: st.size });
    }
  };
  await visit(root, '');
  return out;
}

export class LocalBackend implements StorageBackend {
  async stat(uri: string): Promise<ObjectStat | null> {
    const st = await stat(pathOf(uri)).catch(() => null);
    if (!st) return null;
    if (st.isDirectory()) return { kind: 'folder', size: 0, stamp: '' };
    return { kind: 'file', size: st.size, stamp: `mtime=${st.mtimeMs};size=${st.size}` };
  }

  async list(uri: string): Promise<ObjectInfo[]> {
    return (await mapped(uri, () => walk(pathOf(uri)))).sort(byRelPath);
  }

  /**
   * The whole file, counted as it is read (a size from stat is a claim: a device says 0). With a
   * source policy, the file's real path must lie in one of its roots.
   */
  async read(uri: string, options: ReadOptions): Promise<Buffer> {
    const path = pathOf(uri);
    return mapped(uri, async () => {
      const { fh, size } = await openRegular(uri, path, options.sources?.localRoots);
      const maxBytes = options.limits?.maxBytes;
      if (maxBytes !== undefined && size > maxBytes) {
        await fh.close();
        throw new TooLargeError(uri, size, maxBytes);
      }
      const stream = fh.createReadStream({ highWaterMark: 1 << 20 });
      return await readWhole(stream, uri, { maxBytes, timeoutMs: options.limits?.fetchTimeoutMs });
    });
  }

  async readRange(uri: string, start: number, end: number): Promise<Buffer> {
    return mapped(uri, async () => {
      const { fh } = await openRegular(uri, pathOf(uri));
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
    return mapped(uri, async () => {
      const { fh } = await openRegular(uri, pathOf(uri));
      return fh.createReadStream({ highWaterMark: 1 << 20 });
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

  async pruneEmpty(folder: string): Promise<void> {
    await pruneEmptyDirs(pathOf(folder));
  }

  close(): void {}
}

/** rmdir of `dir` after its empty sub-folders; a folder that holds a file stays (ENOTEMPTY). */
async function pruneEmptyDirs(dir: string): Promise<void> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  for (const e of entries) if (e.isDirectory()) await pruneEmptyDirs(join(dir, e.name));
  await rmdir(dir).catch(() => undefined);
}
