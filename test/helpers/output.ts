import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import type { OutputRecord } from '../../src/core/types.js';

/** Every record of a local output folder's part-*.jsonl(.gz) files, in part-name order. */
export function readOutputRecords(dir: string): OutputRecord[] {
  return readdirSync(dir)
    .filter((n) => /^part-.*\.jsonl(\.gz)?$/.test(n))
    .sort()
    .flatMap((n) => {
      const bytes = readFileSync(join(dir, n));
      const text = (n.endsWith('.gz') ? gunzipSync(bytes) : bytes).toString('utf8');
      return text
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as OutputRecord);
    });
}
