/** Reading the records of a finished output back (refilter, export). */
import type { OutputRecord } from '../core/types.js';
import { lines } from '../io/readers/jsonl.js';
import type { Storage } from '../io/storage/storage.js';

/** Records of a part file (plain or gzipped), in order. */
export async function* readRecords(storage: Storage, uri: string): AsyncGenerator<OutputRecord> {
  for await (const line of lines(storage, uri)) yield JSON.parse(line) as OutputRecord;
}
