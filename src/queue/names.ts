import { createHash } from 'node:crypto';
import { DEFAULT_QUEUE } from '../core/defaults.js';

/** The queues of one capfilt deployment. `fused` runs caption + filter in one job. */
export const STAGES = ['produce', 'caption', 'filter', 'fused', 'write'] as const;
export type Stage = (typeof STAGES)[number];

/** The default Redis key prefix; tests and side-by-side deployments pass their own. */
export const DEFAULT_PREFIX: string = DEFAULT_QUEUE.prefix;

export function isStage(value: string): value is Stage {
  return (STAGES as readonly string[]).includes(value);
}

/**
 * Queue names are the stage names; deployments are separated by BullMQ's key prefix, so one Redis
 * can hold several deployments (and every test its own).
 */
export function queueName(stage: Stage): string {
  return stage;
}

/** Redis keys capfilt keeps beside BullMQ's, under the same prefix. */
export function runKey(prefix: string, runId: string): string {
  return `${prefix}:capfilt:run:${runId}`;
}
export function runsIndexKey(prefix: string): string {
  return `${prefix}:capfilt:runs`;
}

/**
 * An id safe for BullMQ (no ':'; never an integer) that is still injective: characters outside
 * [A-Za-z0-9._-] are percent-escaped rather than replaced, so two shard ids cannot collide.
 */
export function sanitizeId(raw: string): string {
  const escaped = raw.replace(/[^A-Za-z0-9._-]/g, (ch) =>
    Array.from(Buffer.from(ch, 'utf8'))
      .map((b) => `%${b.toString(16).toUpperCase().padStart(2, '0')}`)
      .join(''),
  );
  // Redis keys stay short on deep S3 prefixes; the hash keeps the id unique.
  if (escaped.length <= 160) return escaped;
  return `${escaped.slice(0, 120)}~${sha1(raw).slice(0, 20)}`;
}

/** One job per (run, shard, stage): enqueueing a run twice adds nothing. */
export function shardJobId(runId: string, shardId: string, stage: Stage): string {
  return `${sanitizeId(runId)}.${stage}.${sanitizeId(shardId)}`;
}

function sha1(s: string): string {
  return createHash('sha1').update(s).digest('hex');
}
