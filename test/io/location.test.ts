import { describe, expect, it } from 'vitest';
import { parentUri, parseLocation, resolveRef } from '../../src/io/location.js';

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
});
