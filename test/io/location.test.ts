import { describe, expect, it } from 'vitest';
import { isInside, parentUri, parseLocation, resolveRef } from '../../src/io/location.js';

describe('parseLocation / resolveRef', () => {
  it('tells S3, http and local apart', () => {
    expect(parseLocation('s3://bkt/a/b.jsonl')).toEqual({ kind: 's3', bucket: 'bkt', key: 'a/b.jsonl' });
    expect(parseLocation('s3://bkt')).toEqual({ kind: 's3', bucket: 'bkt', key: '' });
    expect(parseLocation('https://x.org/i.jpg')).toEqual({ kind: 'http', url: 'https://x.org/i.jpg' });
    const local = parseLocation('rel/dir');
    expect(local.kind).toBe('local');
    expect(local.kind === 'local' && local.path.startsWith('/')).toBe(true);
  });

  it('resolves image references relative to the manifest, locally and on S3', () => {
    expect(resolveRef('img/1.jpg', 's3://b/data/m.jsonl')).toBe('s3://b/data/img/1.jpg');
    expect(resolveRef('1.jpg', 's3://b/m.jsonl')).toBe('s3://b/1.jpg');
    expect(resolveRef('img/1.jpg', '/d/m.jsonl')).toBe('/d/img/1.jpg');
    expect(resolveRef('/abs/1.jpg', '/d/m.jsonl')).toBe('/abs/1.jpg');
    expect(resolveRef('http://h/x.png', '/d/m.jsonl')).toBe('http://h/x.png');
    expect(resolveRef('s3://o/k.png', '/d/m.jsonl')).toBe('s3://o/k.png');
    expect(parentUri('s3://b/x/y/z.tar')).toBe('s3://b/x/y');
  });

  it('isInside judges parsed locations, whole segments, never `..`', () => {
    expect(isInside('/data/in/a/b.tar', '/data/in')).toBe(true);
    expect(isInside('/data/input.jsonl', '/data/in')).toBe(false);
    expect(isInside('/data/in/../x', '/data/in')).toBe(false);
    expect(isInside('s3://b/in/x.tar', 's3://b/in')).toBe(true);
    expect(isInside('s3://b/in', 's3://b/in')).toBe(true);
    expect(isInside('s3://b/inner/x.tar', 's3://b/in')).toBe(false);
    expect(isInside('s3://c/in/x.tar', 's3://b/in')).toBe(false);
    expect(isInside('s3://b/in/../secret', 's3://b/in')).toBe(false);
    expect(isInside('/data/in/x', 's3://b/in')).toBe(false);
    expect(isInside('https://h/d/x.tar', 'https://h/d')).toBe(true);
    expect(isInside('https://h/dx/x.tar', 'https://h/d')).toBe(false);
    expect(isInside('/data/in', '/data/in')).toBe(true);
    expect(isInside('/anything', '/')).toBe(true);
  });
});
