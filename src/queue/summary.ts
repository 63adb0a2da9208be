import type { ShardStats } from '../core/types.js';
import { joinUri } from '../io/location.js';
import type { Storage } from '../io/storage/storage.js';
import { parsePartName, SUMMARY_NAME } from '../output/shard-writer.js';
import { summarize } from '../output/stats.js';
import type { RunRecord } from './runs.js';

/**
 * `_summary.json` of a completed distributed run, over every shard marker in the output (shards
 * skipped as already done included), as the local runner writes it.
 */
export async function writeRunSummary(storage: Storage, run: RunRecord): Promise<string> {
  const files = await storage.list(run.output);
  const markers = files.filter((f) => parsePartName(f.relPath)?.kind === 'stats');
  const stats = await Promise.all(
    markers.map(async (f) => JSON.parse((await storage.read(f.uri)).toString('utf8')) as ShardStats),
  );
  const uri = joinUri(run.output, SUMMARY_NAME);
  const body = {
    ...summarize(stats),
    input: run.input,
    human: run.human ?? [],
    output: run.output,
    runId: run.runId,
    shardIds: stats.map((s) => s.shard.id),
    completedAt: new Date().toISOString(),
  };
  await storage.write(uri, `${JSON.stringify(body, null, 2)}\n`);
  return uri;
}
