import { extract, type Header } from 'tar-stream';
import { errorMessage } from '../../core/errors.js';
import type { InputOptions, PairRef, ShardRef } from '../../core/types.js';
import type { Storage } from '../storage/storage.js';
import { gunzip } from './jsonl.js';

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
}

function parseMeta(json: Buffer | undefined): { meta: Record<string, unknown>; error: string | null } {
  if (!json) return { meta: {}, error: null };
  try {
    const parsed = JSON.parse(json.toString('utf8')) as unknown;
    if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) {
      return { meta: parsed as Record<string, unknown>, error: null };
    }
    return { meta: {}, error: 'not a JSON object' };
  } catch (err) {
    return { meta: {}, error: errorMessage(err) };
  }
}

function groupToPair(group: Group, shard: ShardRef, index: number, input: InputOptions): PairRef {
  let imageExt: string | undefined;
  for (const ext of group.files.keys()) {
    if (IMAGE_EXTENSIONS.has(ext.slice(ext.lastIndexOf('.') + 1))) {
      imageExt = ext;
      break;
    }
  }
  const { meta, error: metaError } = parseMeta(group.files.get('json'));
  const txt = group.files.get('txt') ?? group.files.get('caption') ?? group.files.get('text');
  const metaText = meta[input.textColumn] ?? meta.caption ?? meta.text;
  const text = txt ? txt.toString('utf8') : typeof metaText === 'string' ? metaText : null;
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
  if (!imageExt) {
    pair.invalid = { reason: 'missing_image', message: `no image member for ${group.key} in ${shard.uri}` };
  } else if (text === null || text.trim() === '') {
    pair.invalid = { reason: 'empty_text', message: `no text for ${group.key}` };
  }
  return pair;
}

/**
 * Pairs of a WebDataset tar (img2dataset layout), streamed member by member: nothing is unpacked
 * to disk and at most one sample's members are held. A truncated or corrupt tar ends the shard
 * early without failing it: the sample being read when it broke (or, between samples, a marker
 * for the lost remainder) becomes a rejected 'bad_row' record; earlier samples are kept.
 */
export async function* readWebDataset(
  storage: Storage,
  shard: ShardRef,
  input: InputOptions,
): AsyncGenerator<PairRef> {
  const raw = await storage.readStream(shard.uri);
  const source = /\.(tgz|tar\.gz)$/i.test(shard.uri) ? gunzip(raw) : raw;
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
      if (header.type !== 'file' || hidden) {
        entry.resume();
        continue;
      }
      const { key, ext } = splitMember(header.name);
      if (group && group.key !== key) {
        yield groupToPair(group, shard, index++, input);
        group = null;
      }
      group ??= { key, files: new Map() };
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
