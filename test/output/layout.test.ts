import { describe, expect, it } from 'vitest';
import { datasetName, parsePartName, shardOutputNames } from '../../src/output/layout.js';

describe('output layout', () => {
  it('parses part names', () => {
    expect(parsePartName('part-a-0-5.jsonl')).toEqual({ shardId: 'a-0-5', kind: 'data', gzip: false });
    expect(parsePartName('part-00001.jsonl.gz')).toEqual({ shardId: '00001', kind: 'data', gzip: true });
    expect(parsePartName('part-x.stats.json')).toEqual({ shardId: 'x', kind: 'stats', gzip: false });
    expect(parsePartName('part-00001.tar')).toEqual({ shardId: '00001', kind: 'dataset', gzip: false });
    expect(parsePartName('part-a-0-5.parquet')).toEqual({ shardId: 'a-0-5', kind: 'dataset', gzip: false });
    expect(parsePartName(datasetName('a-0-5', 'webdataset'))?.shardId).toBe('a-0-5');
    expect(parsePartName('_summary.json')).toBeNull();
    expect(parsePartName('.part-x.jsonl.1-ab.tmp')).toBeNull();
  });

  it('names shard files after the shard id alone', () => {
    expect(shardOutputNames('/o', 'a-0-5', 'gzip')).toEqual({
      data: '/o/part-a-0-5.jsonl.gz',
      stats: '/o/part-a-0-5.stats.json',
    });
  });
});
