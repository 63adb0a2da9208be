/**
 * The source policy: which locations a run's image references may name. Decided once per run
 * from its inputs (sourcePolicyFor), recorded with it, and checked on every image read before
 * anything is opened or asked, so a refused location reveals nothing (not even whether it exists).
 */
import { lstat, realpath } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { BlockedSourceError } from '../core/errors.js';
import type { SourcePolicy } from '../core/types.js';
import { isInside, parseLocation } from './location.js';

/** Kernel-made files: never sources, whatever the roots (they claim sizes they do not have). */
const PSEUDO_ROOTS = ['/proc', '/sys', '/dev'];

/** Real path of a folder (symlinks resolved), or the path itself, resolved, when it does not exist. */
async function realFolder(path: string): Promise<string> {
  return await realpath(path).catch(() => resolve(path));
}

/**
 * The policy of a run reading `inputs` (the input and its human inputs): `widen`, plus each local
 * input's folder (a file's parent, a folder itself) and each S3 input's bucket. Roots are stored
 * as real paths, so that a real path read later can be compared with them.
 */
export async function sourcePolicyFor(
  storage: { kind(uri: string): Promise<'file' | 'folder' | null> },
  inputs: readonly string[],
  widen: SourcePolicy,
): Promise<SourcePolicy> {
  const roots = new Set(await Promise.all(widen.localRoots.map(realFolder)));
  const buckets = new Set(widen.s3Buckets);
  for (const input of inputs) {
    const loc = parseLocation(input);
    if (loc.kind === 's3') buckets.add(loc.bucket);
    if (loc.kind !== 'local') continue;
    const folder = (await storage.kind(input)) === 'folder' ? loc.path : dirname(loc.path);
    roots.add(await realFolder(folder));
  }
  return { localRoots: [...roots].sort(), s3Buckets: [...buckets].sort() };
}

/** S3 objects of an allowed bucket and http(s) URLs pass; local paths are checked by checkLocalSource. */
export function checkRemoteSource(uri: string, policy: SourcePolicy): void {
  const loc = parseLocation(uri);
  if (loc.kind === 's3' && !policy.s3Buckets.includes(loc.bucket)) {
    throw new BlockedSourceError(
      uri,
      `bucket ${loc.bucket} is not a source of this run (allowed: ${policy.s3Buckets.join(', ') || 'none'}; --allow-bucket adds one)`,
    );
  }
}

/**
 * Where `path` really is: its real path, or, when it does not exist, the real path of its deepest
 * existing folder joined with the rest. A dangling symbolic link gives null: where it would lead
 * cannot be told without following it.
 */
export async function whereIs(path: string): Promise<{ real: string | null; exists: boolean }> {
  const rest: string[] = [];
  let p = resolve(path);
  for (;;) {
    try {
      const real = await realpath(p);
      return { real: join(real, ...rest.reverse()), exists: rest.length === 0 };
    } catch {
      if (rest.length === 0 && (await lstat(p).catch(() => null))?.isSymbolicLink()) {
        return { real: null, exists: false };
      }
      const parent = dirname(p);
      if (parent === p) return { real: p, exists: false };
      rest.push(basename(p));
      p = parent;
    }
  }
}

/** Why a real path may not be read under `roots`, or null. */
export function refusalOf(real: string, roots: readonly string[]): string | null {
  if (PSEUDO_ROOTS.some((r) => isInside(real, r))) return `${real} is a kernel or device file`;
  if (!roots.some((r) => isInside(real, r))) {
    return `outside this run's local sources (${roots.join(', ') || 'none: the input is not local; --allow-root adds one'})`;
  }
  return null;
}

/**
 * A local path an image reference names: allowed when its real path (every link resolved) lies
 * in one of the policy's roots. Returns whether it exists; throws BlockedSourceError otherwise,
 * the same whether or not anything is there.
 */
export async function checkLocalSource(
  uri: string,
  path: string,
  roots: readonly string[],
): Promise<boolean> {
  const { real, exists } = await whereIs(path);
  if (real === null) throw new BlockedSourceError(uri, 'a symbolic link whose target does not exist');
  const refused = refusalOf(real, roots);
  if (refused) throw new BlockedSourceError(uri, refused);
  return exists;
}
