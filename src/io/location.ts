import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { UsageError } from '../core/errors.js';

/** Where bytes live: a local path, an S3 object or prefix, or an http(s) URL. */
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
    if (!bucket) throw new UsageError(`bad S3 location ${input}`);
    return { kind: 's3', bucket, key: slash < 0 ? '' : rest.slice(slash + 1) };
  }
  if (/^https?:\/\//i.test(input)) return { kind: 'http', url: input };
  if (/^file:\/\//i.test(input)) return { kind: 'local', path: fileURLToPath(input) };
  return { kind: 'local', path: resolve(input) };
}

/**
 * A location that means the same thing in every process: a local path made absolute (a worker
 * resolving `data/in.jsonl` in its own working folder would read something else), the rest as is.
 */
export function absoluteLocation(input: string): string {
  return formatLocation(parseLocation(input));
}

export function formatLocation(loc: Location): string {
  if (loc.kind === 'local') return loc.path;
  if (loc.kind === 's3') return `s3://${loc.bucket}/${loc.key}`;
  return loc.url;
}

/** An S3 key naming a folder, as the prefix of the keys under it: '' (the bucket) or ending in '/'. */
export function folderPrefix(key: string): string {
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

/**
 * Whether `uri` is `folder` or lies below it, judged on parsed locations: a local path resolved
 * (`..` and all), an S3 key under the folder's prefix in the same bucket (a `..` segment never
 * is: some stores normalise it), a URL under the folder's URL. Lexical: where links lead is the
 * local backend's business.
 */
export function isInside(uri: string, folder: string): boolean {
  const a = parseLocation(uri);
  const b = parseLocation(folder);
  if (a.kind === 'local' && b.kind === 'local') {
    const rel = relative(b.path, a.path);
    return rel === '' || (rel !== '..' && !rel.startsWith(`..${sep}`) && !isAbsolute(rel));
  }
  if (a.kind === 's3' && b.kind === 's3' && a.bucket === b.bucket) {
    return !a.key.split('/').includes('..') && folderPrefix(a.key).startsWith(folderPrefix(b.key));
  }
  if (a.kind === 'http' && b.kind === 'http') {
    const u = new URL(a.url).href;
    const base = new URL(b.url).href;
    return u === base || u.startsWith(base.endsWith('/') ? base : `${base}/`);
  }
  return false;
}
