import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { Progress } from '../../src/pipeline/progress.js';

function sink(): { stream: PassThrough; text: () => string } {
  const stream = new PassThrough();
  let text = '';
  stream.on('data', (c) => {
    text += c;
  });
  return { stream, text: () => text };
}

describe('Progress', () => {
  it('draws a bar with counts, samples/s and ETA on a terminal', () => {
    const s = sink();
    const p = new Progress({ mode: 'tty', totalPairs: 100, totalShards: 4, intervalMs: 0, stream: s.stream });
    p.skipShard(20);
    p.add(40);
    p.shardDone();
    expect(p.line()).toMatch(
      /^\[#{12}-{12}\] 40\/80 pairs 50\.0% \| 2\/4 shards \| [\d.]+ samples\/s \| ETA \d+s$/,
    );
    p.finish();
    expect(s.text()).toContain('\r\x1b[2K[');
    expect(s.text().endsWith('\n')).toBe(true);
  });

  it('prints plain periodic lines when the total is unknown, and nothing when quiet', () => {
    const s = sink();
    const p = new Progress({
      mode: 'plain',
      totalPairs: null,
      totalShards: 3,
      intervalMs: 0,
      stream: s.stream,
    });
    p.add(5);
    expect(s.text()).toMatch(/^\[capfilt\] 5 pairs \| 0\/3 shards \| [\d.]+ samples\/s \| ETA \?\n/);
    const q = sink();
    const none = new Progress({ mode: 'none', totalPairs: 1, totalShards: 1, stream: q.stream });
    none.add(1);
    none.finish();
    expect(q.text()).toBe('');
  });
});
