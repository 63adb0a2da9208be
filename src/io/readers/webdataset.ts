import { extract, type Header } from 'tar-stream';
import { RECOGNISED_COLUMNS } from '../../core/defaults.js';
import { errorMessage, type RejectReason } from '../../core/errors.js';
import type { FetchLimits, InputOptions, PairRef, ShardRef } from '../../core/types.js';
import type { Storage } from '../storage/storage.js';
import { findColumn, firstPresent } from './columns.js';
import { invalidJson } from './row.js';
import { gunzip, MAX_ROW_BYTES } from './text.js';

export const IMAGE_EXTENSIONS = new Set([
  'jpg',
  'jpeg',
  'png',
  'webp',
  'gif',
  'tif',
  'tiff',
  'avif',
  'bmp',
  'heic',
  'jp2',
]);

/** WebDataset splits a member name at the first dot of its file name: key, then extension. */
export function splitMember(name: string): { key: string; ext: string } {
  const slash = name.lastIndexOf('/');
  const dot = name.indexOf('.', slash + 1);
  if (dot < 0) return { key: name, ext: '' };
  return { key: name.slice(0, dot), ext: name.slice(dot + 1).toLowerCase() };
}

interface Group {
  key: string;
  files: Map<string, Buffer>;
  /** The first member of the sample that was not read, and why: the sample is rejected for it. */
  refused?: { reason: RejectReason; message: string };
}

const TEXT_EXTENSIONS = new Set(['txt', 'caption', 'text', 'json']);

function isImage(ext: string): boolean {
  return IMAGE_EXTENSIONS.has(ext.slice(ext.lastIndexOf('.') + 1));
}

/**
 * Why a member is not read, or null for a regular file within its limit: links, devices and FIFOs
 * are never followed or opened, and a member over its limit is skipped unread (its declared size
 * is exact: tar-stream reads that many bytes or fails as truncated).
 */
function refusalOf(header: Header, ext: string, maxImageBytes: number): Group['refused'] | null {
  if (header.type !== 'file' && header.type !== 'contiguous-file') {
    return {
      reason: 'bad_row',
      message: `member ${header.name} is a ${header.type ?? 'member of unknown type'}, not a regular file`,
    };
  }
  const max = isImage(ext) ? maxImageBytes : MAX_ROW_BYTES;
  const size = header.size ?? 0;
  if (size > max)
    return {
      reason: 'too_large',
      message: `member ${header.name} is ${size} bytes, over the ${max}-byte limit`,
    };
  return null;
}

function parseMeta(
  json: Buffer | undefined,
  key: string,
): { meta: Record<string, unknown>; error: string | null } {
  if (!json) return { meta: {}, error: null };
  const text = json.toString('utf8');
  try {
    const parsed = JSON.parse(text) as unknown;
    if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) {
      return { meta: parsed as Record<string, unknown>, error: null };
    }
    return { meta: {}, error: `${key}.json is not a JSON object` };
  } catch (err) {
    return { meta: {}, error: `${key}.json is ${invalidJson(err, text, 0)}` };
  }
}

function groupToPair(group: Group, shard: ShardRef, index: number, input: InputOptions): PairRef {
  let imageExt: string | undefined;
  for (const ext of group.files.keys()) {
    if (isImage(ext)) {
      imageExt = ext;
      break;
    }
  }
  const { meta, error: metaError } = parseMeta(group.files.get('json'), group.key);
  const txt = group.files.get('txt') ?? group.files.get('caption') ?? group.files.get('text');
  const fields = Object.keys(meta);
  const textField =
    input.textColumn !== undefined
      ? findColumn(fields, input.textColumn)
      : firstPresent(fields, RECOGNISED_COLUMNS.text);
  const metaText = textField === null ? undefined : meta[textField];
  // Sidecar texts end with a newline when written by hand or by `echo`: not part of the caption.
  const text = txt ? txt.toString('utf8').trim() : typeof metaText === 'string' ? metaText : null;
  const pair: PairRef = {
    key: group.key,
    shardId: shard.id,
    index,
    source: `${shard.uri}#${group.key}${imageExt ? `.${imageExt}` : ''}`,
    image: imageExt
      ? { kind: 'inline', bytes: group.files.get(imageExt) as Buffer, name: `${group.key}.${imageExt}` }
      : null,
    text,
    meta: metaError ? { json_error: metaError } : meta,
  };
  if (group.refused) {
    pair.invalid = group.refused;
    pair.image = null;
  } else if (!imageExt) {
    pair.invalid = { reason: 'missing_image', message: `no image member for ${group.key} in ${shard.uri}` };
  } else if (text === null || text.trim() === '') {
    pair.invalid = { reason: 'empty_text', message: `no text for ${group.key}` };
  }
  return pair;
}

/**
 * Pairs of a WebDataset tar (img2dataset layout), streamed member by member: nothing is unpacked
 * to disk and at most one sample's members are held, each within its limit (an image within
 * `maxBytes`, a caption or JSON within MAX_ROW_BYTES). A member that is not read (a link, a
 * device, one over its limit) rejects its sample with the reason; hidden names and directories
 * are not samples. A truncated or corrupt tar ends the shard early without failing it: the
 * sample being read when it broke (or, between samples, a marker for the lost remainder) becomes
 * a rejected 'bad_row' record; earlier samples are kept.
 */
export async function* readWebDataset(
  storage: Storage,
  shard: ShardRef,
  input: InputOptions,
  limits: Pick<FetchLimits, 'maxBytes'>,
): AsyncGenerator<PairRef> {
  const raw = await storage.readStream(shard.uri);
  const source = /\.(tgz|tar\.gz)$/i.test(shard.uri) ? gunzip(raw, shard.uri) : raw;
  const ex = extract();
  source.on('error', (err) => ex.destroy(err));
  source.pipe(ex);
  let index = 0;
  let group: Group | null = null;
  let reading: string | null = null;
  try {
    for await (const entry of ex) {
      const header: Header = entry.header;
      const hidden = header.name.split('/').some((p: string) => p.startsWith('.') && p !== '.' && p !== '..');
      if (hidden || header.type === 'directory') {
        entry.resume();
        continue;
      }
      const { key, ext } = splitMember(header.name);
      if (group && group.key !== key) {
        yield groupToPair(group, shard, index++, input);
        group = null;
      }
      group ??= { key, files: new Map() };
      const refusal = refusalOf(header, ext, limits.maxBytes);
      if (refusal || !(isImage(ext) || TEXT_EXTENSIONS.has(ext))) {
        // Unread: refused, or a member no pair uses (.cls, .npy…), which is not held either.
        if (refusal) group.refused ??= refusal;
        entry.resume();
        continue;
      }
      reading = header.name;
      const chunks: Buffer[] = [];
      for await (const chunk of entry) chunks.push(chunk as Buffer);
      reading = null;
      group.files.set(ext, Buffer.concat(chunks));
    }
  } catch (err) {
    const message = `${shard.uri}: tar is truncated or corrupt at ${reading ?? 'a member header'} (${errorMessage(err)})`;
    if (group && reading === null) {
      yield groupToPair(group, shard, index++, input);
      group = null;
    }
    const broken: Group = group ?? { key: `${shard.id}-truncated-${index}`, files: new Map() };
    const pair = groupToPair(broken, shard, index++, input);
    pair.invalid = { reason: 'bad_row', message };
    pair.image = null;
    yield pair;
    return;
  } finally {
    source.destroy();
  }
  if (group) yield groupToPair(group, shard, index++, input);
}
