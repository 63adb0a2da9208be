/** `_summary.json`: written once an output is complete, in one shape whoever writes it. */
import type { ShardStats } from '../core/types.js';
import { joinUri } from '../io/location.js';
import type { Storage } from '../io/storage/storage.js';
import { SUMMARY_NAME } from './layout.js';
import { type RunSummary, summarize } from './stats.js';

/** Where an output came from. */
export interface SummarySource {
  /** The input location (for a refiltered output: the output it was re-decided from). */
  input: string;
  /** Human-annotated inputs added unfiltered. */
  human?: string[];
  /** The distributed run that wrote it; null for `capfilt run` and `refilter`. */
  runId?: string | null;
  /** Set by `capfilt refilter`: the output whose stored scores were re-decided. */
  refilteredFrom?: string | null;
}

/** The body of _summary.json. */
export interface SummaryFile extends RunSummary {
  input: string;
  human: string[];
  output: string;
  runId: string | null;
  refilteredFrom: string | null;
  shardIds: string[];
  completedAt: string;
}

export function summaryUri(output: string): string {
  return joinUri(output, SUMMARY_NAME);
}

/** Sums the shards' stats into `<output>/_summary.json`; returns what it wrote. */
export async function writeSummary(
  storage: Storage,
  output: string,
  shards: readonly ShardStats[],
  source: SummarySource,
): Promise<SummaryFile> {
  const body: SummaryFile = {
    ...summarize([...shards]),
    input: source.input,
    human: source.human ?? [],
    output,
    runId: source.runId ?? null,
    refilteredFrom: source.refilteredFrom ?? null,
    shardIds: shards.map((s) => s.shard.id),
    completedAt: new Date().toISOString(),
  };
  await storage.write(summaryUri(output), `${JSON.stringify(body, null, 2)}\n`);
  return body;
}

/** A summary vouches for a complete output: one from an earlier run must not outlive new work. */
export async function removeSummary(storage: Storage, output: string): Promise<void> {
  await storage.delete(summaryUri(output)).catch(() => undefined);
}
