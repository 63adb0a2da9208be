import type { Storage } from '../io/storage/storage.js';
import { completedShards } from '../output/completion.js';
import { summaryUri, writeSummary } from '../output/summary.js';
import type { RunRecord } from './runs.js';

/**
 * `_summary.json` of a completed distributed run, over every complete shard in the output (shards
 * skipped as already done included), in the shape the local runner writes.
 */
export async function writeRunSummary(storage: Storage, run: RunRecord): Promise<string> {
  const shards = await completedShards(storage, run.output);
  await writeSummary(
    storage,
    run.output,
    shards.map((s) => s.stats),
    { input: run.input, human: run.human, runId: run.runId },
  );
  return summaryUri(run.output);
}
