import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { makeTar } from '../../tools/tar.js';
import { FIXTURE, IMAGE_NAMES } from '../helpers/models.js';

const TEXTS = [
  'a red square on a blue background',
  'two shapes next to each other',
  'static noise on an old television',
  'stripes of a zebra crossing',
  'a grey photograph of a wall',
  'a logo with a transparent background',
  'my cat sleeping on the sofa',
  'buy cheap watches online now',
];

/** Keys of the pairs of tar `t` (with `n` pairs): every one must appear exactly once in the output. */
export function tarKeys(t: number, n: number): string[] {
  return Array.from({ length: n }, (_, i) => `t${t}-${String(i).padStart(3, '0')}`);
}

/**
 * A WebDataset tar (img2dataset layout) of `n` pairs made from the fixture images and our own
 * texts; the last pair of tar 0 has no image, so rejected records travel through the queue too.
 */
export async function makeInputTar(t: number, n: number): Promise<Buffer> {
  const members: { name: string; data: Buffer | string }[] = [];
  tarKeys(t, n).forEach((key, i) => {
    const name = IMAGE_NAMES[(i + t) % IMAGE_NAMES.length];
    const ext = i % 2 === 0 ? 'png' : 'jpg';
    if (!(t === 0 && i === n - 1)) {
      members.push({ name: `${key}.${ext}`, data: readFileSync(join(FIXTURE, 'images', `${name}.${ext}`)) });
    }
    members.push({ name: `${key}.txt`, data: TEXTS[(i * 3 + t) % TEXTS.length] });
    members.push({ name: `${key}.json`, data: JSON.stringify({ key, tar: t }) });
  });
  return await makeTar(members);
}

export async function putTar(
  s3: S3Client,
  bucket: string,
  prefix: string,
  t: number,
  n: number,
): Promise<void> {
  await s3.send(
    new PutObjectCommand({
      Bucket: bucket,
      Key: `${prefix}/${String(t).padStart(5, '0')}.tar`,
      Body: await makeInputTar(t, n),
    }),
  );
}

export interface OutputRecordLine {
  key: string;
  shard: string;
  status: string;
  [k: string]: unknown;
}

/** part-<shard>.jsonl files under an S3 prefix, parsed, by shard id. */
export async function readS3Parts(
  s3: S3Client,
  bucket: string,
  prefix: string,
): Promise<Map<string, OutputRecordLine[]>> {
  const out = new Map<string, OutputRecordLine[]>();
  const list = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: `${prefix}/` }));
  for (const o of list.Contents ?? []) {
    const m = /\/part-(.+)\.jsonl$/.exec(o.Key ?? '');
    if (!m) continue;
    const res = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: o.Key }));
    const text = (await res.Body?.transformToString()) ?? '';
    out.set(
      m[1],
      text
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as OutputRecordLine),
    );
  }
  return out;
}

export async function s3Keys(s3: S3Client, bucket: string, prefix: string): Promise<string[]> {
  const list = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: `${prefix}/` }));
  return (list.Contents ?? []).map((o) => (o.Key ?? '').slice(prefix.length + 1)).sort();
}

/** Every key once, nothing else. */
export function keyCounts(parts: Map<string, OutputRecordLine[]>): Map<string, number> {
  const counts = new Map<string, number>();
  for (const records of parts.values())
    for (const r of records) counts.set(r.key, (counts.get(r.key) ?? 0) + 1);
  return counts;
}
