import { FlowProducer, Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { CapfiltError, errorMessage } from '../core/errors.js';
import { createRedis, redactRedisUrl, warnOnEviction } from './connection.js';
import { DEFAULT_PREFIX, queueName, type Stage } from './names.js';
import { RunStore } from './runs.js';

/** One deployment's queues, flow producer and run store over one Redis connection. */
export interface QueueContext {
  readonly redisUrl: string;
  readonly prefix: string;
  readonly redis: Redis;
  readonly runs: RunStore;
  queue(stage: Stage): Queue;
  flows(): FlowProducer;
  close(): Promise<void>;
}

export interface ContextOptions {
  redisUrl: string;
  prefix?: string;
  /** 'worker' connections wait through Redis outages; 'client' ones fail fast. */
  role?: 'worker' | 'client';
  /** Check maxmemory-policy and warn on stderr (default true). */
  checkEviction?: boolean;
}

/**
 * BullMQ re-emits its connection's errors on every Queue and FlowProducer, and prints a stack trace
 * for each one nobody listens to; the connection already reports an outage once (createRedis), and
 * a command that fails rejects to its caller.
 */
function quiet<T extends { on(event: 'error', listener: (err: Error) => void): unknown }>(emitter: T): T {
  emitter.on('error', () => undefined);
  return emitter;
}

export async function openQueueContext(options: ContextOptions): Promise<QueueContext> {
  const prefix = options.prefix ?? DEFAULT_PREFIX;
  const role = options.role ?? 'client';
  // A CLI call reports a wrong URL, password or certificate at once instead of retrying; a worker
  // keeps trying (Redis may still be starting) and logs why.
  let lastError: Error | undefined;
  const redis = createRedis(options.redisUrl, {
    role,
    ...(role === 'client'
      ? {
          onError: (err: Error) => {
            lastError = err;
          },
        }
      : {}),
  });
  if (role === 'client') {
    try {
      await redis.ping();
    } catch (err) {
      redis.disconnect();
      throw new CapfiltError(
        'redis_unavailable',
        `cannot use Redis at ${redactRedisUrl(options.redisUrl)}: ${errorMessage(lastError ?? err)}`,
      );
    }
  }
  if (options.checkEviction !== false) await warnOnEviction(redis);
  const queues = new Map<Stage, Queue>();
  let flowProducer: FlowProducer | undefined;
  return {
    redisUrl: options.redisUrl,
    prefix,
    redis,
    runs: new RunStore(redis, prefix),
    queue(stage) {
      let q = queues.get(stage);
      if (!q) {
        q = quiet(new Queue(queueName(stage), { connection: redis, prefix }));
        queues.set(stage, q);
      }
      return q;
    },
    flows() {
      flowProducer ??= quiet(new FlowProducer({ connection: redis, prefix }));
      return flowProducer;
    },
    async close() {
      await Promise.all([...queues.values()].map((q) => q.close()));
      await flowProducer?.close();
      redis.disconnect();
    },
  };
}
