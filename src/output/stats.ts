import type { RejectReason } from '../core/errors.js';
import type {
  OutputRecord,
  RecordModels,
  RecordOptions,
  ShardRef,
  ShardStats,
  StageTimings,
} from '../core/types.js';

export const HISTOGRAM_BINS = 10;
const MAX_ERROR_KINDS = 50;

export function emptyTimings(): StageTimings {
  return { read: 0, decode: 0, caption: 0, filter: 0, write: 0 };
}

function bin(p: number): number {
  return Math.min(HISTOGRAM_BINS - 1, Math.max(0, Math.floor(p * HISTOGRAM_BINS)));
}

/** Strips the sample key and numbers so that similar errors count together. */
function errorKind(message: string, key: string): string {
  const m = message.startsWith(`${key}: `) ? message.slice(key.length + 2) : message;
  return m.replace(/\d+/g, 'N').slice(0, 200);
}

/** Adds to an error kind's count; past MAX_ERROR_KINDS kinds, new kinds are dropped (memory stays bounded). */
function countError(errors: Record<string, number>, kind: string, n: number): void {
  if (kind in errors || Object.keys(errors).length < MAX_ERROR_KINDS) errors[kind] = (errors[kind] ?? 0) + n;
}

/** Accumulates a shard's counts as records are written. */
export class StatsAccumulator {
  records = 0;
  readonly status = { ok: 0, rejected: 0 };
  readonly reasons: Partial<Record<RejectReason, number>> = {};
  readonly errors: Record<string, number> = {};
  readonly kept = { records: 0, web: 0, synthetic: 0, human: 0, texts: 0 };
  readonly itmHistogram = {
    web: new Array<number>(HISTOGRAM_BINS).fill(0),
    synthetic: new Array<number>(HISTOGRAM_BINS).fill(0),
  };
  models: RecordModels = { captioner: null, filter: null };
  options: RecordOptions | null = null;

  add(r: OutputRecord): void {
    this.records++;
    this.status[r.status]++;
    this.models = r.models;
    this.options = r.options;
    if (r.status === 'rejected') {
      if (r.reason) this.reasons[r.reason] = (this.reasons[r.reason] ?? 0) + 1;
      if (r.error) {
        countError(this.errors, errorKind(r.error, r.key), 1);
      }
      return;
    }
    if (r.texts.length > 0) this.kept.records++;
    this.kept.texts += r.texts.length;
    if (r.human) {
      this.kept.human += r.texts.length;
      return;
    }
    if (r.web?.kept) this.kept.web++;
    if (r.web?.itm != null) this.itmHistogram.web[bin(r.web.itm)]++;
    for (const s of r.synthetic) {
      if (s.kept) this.kept.synthetic++;
      this.itmHistogram.synthetic[bin(s.itm)]++;
    }
  }

  finish(
    shard: ShardRef,
    timings: StageTimings,
    startedAt: Date,
    finishedAt: Date,
    fallbackOptions: RecordOptions,
    fingerprint?: string,
  ): ShardStats {
    const wallMs = finishedAt.getTime() - startedAt.getTime();
    return {
      shard,
      records: this.records,
      status: { ...this.status },
      reasons: { ...this.reasons },
      errors: { ...this.errors },
      kept: { ...this.kept },
      itmHistogram: { web: [...this.itmHistogram.web], synthetic: [...this.itmHistogram.synthetic] },
      timingsMs: roundTimings(timings),
      wallMs,
      samplesPerSecond: wallMs > 0 ? Math.round((this.records / wallMs) * 1000 * 100) / 100 : 0,
      models: this.models,
      options: this.options ?? fallbackOptions,
      startedAt: startedAt.toISOString(),
      finishedAt: finishedAt.toISOString(),
      ...(fingerprint ? { fingerprint } : {}),
    };
  }
}

function roundTimings(t: StageTimings): StageTimings {
  const r = (x: number) => Math.round(x * 10) / 10;
  return {
    read: r(t.read),
    decode: r(t.decode),
    caption: r(t.caption),
    filter: r(t.filter),
    write: r(t.write),
  };
}

/** Dataset-level totals over shard stats: the body of _summary.json. */
export type RunSummary = Pick<
  ShardStats,
  'records' | 'status' | 'reasons' | 'errors' | 'kept' | 'itmHistogram' | 'timingsMs' | 'models'
> & {
  shards: number;
  /** The options of the non-human shards (human shards are not filtered), null for no shards. */
  options: RecordOptions | null;
};

export function summarize(all: ShardStats[]): RunSummary {
  const s: RunSummary = {
    shards: all.length,
    records: 0,
    status: { ok: 0, rejected: 0 },
    reasons: {},
    errors: {},
    kept: { records: 0, web: 0, synthetic: 0, human: 0, texts: 0 },
    itmHistogram: { web: new Array(HISTOGRAM_BINS).fill(0), synthetic: new Array(HISTOGRAM_BINS).fill(0) },
    timingsMs: emptyTimings(),
    models: { captioner: null, filter: null },
    options: null,
  };
  for (const st of all) {
    s.records += st.records;
    s.status.ok += st.status.ok;
    s.status.rejected += st.status.rejected;
    for (const [k, v] of Object.entries(st.reasons) as [RejectReason, number][])
      s.reasons[k] = (s.reasons[k] ?? 0) + v;
    for (const [k, v] of Object.entries(st.errors)) countError(s.errors, k, v);
    for (const k of Object.keys(s.kept) as (keyof RunSummary['kept'])[]) s.kept[k] += st.kept[k];
    for (let i = 0; i < HISTOGRAM_BINS; i++) {
      s.itmHistogram.web[i] += st.itmHistogram.web[i] ?? 0;
      s.itmHistogram.synthetic[i] += st.itmHistogram.synthetic[i] ?? 0;
    }
    for (const k of Object.keys(s.timingsMs) as (keyof StageTimings)[]) s.timingsMs[k] += st.timingsMs[k];
    if (st.models.captioner || st.models.filter) s.models = st.models;
    if (!st.shard.human || !s.options) s.options = st.options;
  }
  s.timingsMs = roundTimings(s.timingsMs);
  return s;
}
