import { Redis, type RedisOptions } from 'ioredis';
import { DEFAULT_QUEUE } from '../core/defaults.js';
import { UsageError } from '../core/errors.js';

/** Where capfilt's Redis lives when neither `--redis` nor `REDIS_URL` says otherwise. */
export const DEFAULT_REDIS_URL: string = DEFAULT_QUEUE.redisUrl;

const invalidUrl = (url: string) =>
  new UsageError(
    `invalid Redis URL: ${redactRedisUrl(url)} (percent-encode '/', '@', '?' and '#' in the password)`,
  );

/** `--redis` wins over `REDIS_URL`, which wins over the loopback default. */
export function resolveRedisUrl(flag?: string, env: NodeJS.ProcessEnv = process.env): string {
  const url = flag?.trim() || env.REDIS_URL?.trim() || DEFAULT_REDIS_URL;
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw invalidUrl(url);
  }
  if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') {
    throw new UsageError(`Redis URL must start with redis:// or rediss:// (got ${parsed.protocol}//)`);
  }
  const db = parsed.pathname.replace(/^\//, '');
  // An '@' after the host means a password holding a '/' ended the host early: the rest of the
  // password is in the path, so it is never echoed.
  if (/@/.test(parsed.pathname + parsed.search + parsed.hash)) throw invalidUrl(url);
  if (db && !/^\d+$/.test(db)) throw new UsageError(`invalid Redis database in URL: ${db}`);
  return url;
}

/** The URL with its password masked, for logs and errors. */
export function redactRedisUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (/@/.test(parsed.pathname + parsed.search + parsed.hash)) throw new Error('password in the path');
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    // Unparseable, so nothing is known about where the password ends: mask everything up to the
    // last '@' (a password may itself contain '/', '@' or ':').
    return url.replace(/\/\/.*@/, '//***@');
  }
}

/**
 * ioredis parses the URL itself (user, password, db, `rediss://` for TLS, and query parameters
 * such as `?family=6`); capfilt only adds the host name for TLS SNI, which managed Redis
 * (ElastiCache, Upstash, …) needs to present the right certificate.
 */
function tlsServerName(url: string): RedisOptions {
  const parsed = new URL(url);
  return parsed.protocol === 'rediss:'
    ? { tls: { servername: parsed.hostname.replace(/^\[|\]$/g, '') } }
    : {};
}

/**
 * Reconnect forever with capped exponential backoff: a worker must outlive a Redis restart or
 * failover, resuming once the server is back (BullMQ re-fetches jobs and renews locks then).
 */
export function reconnectDelay(attempt: number): number {
  return Math.min(100 * 2 ** Math.min(attempt, 10), 5_000);
}

export interface ConnectionOptions {
  /**
   * 'worker': commands wait through outages (BullMQ requires maxRetriesPerRequest null for
   * blocking workers). 'client': a command fails after a few retries, so a CLI call does not
   * hang forever on a wrong URL.
   */
  role: 'worker' | 'client';
  /** Called with connection errors (deduplicated by message); default: stderr. */
  onError?: (err: Error) => void;
  /** Connect on the first command instead of at once (default false). */
  lazyConnect?: boolean;
}

export function createRedis(url: string, options: ConnectionOptions): Redis {
  const redis = new Redis(url, {
    ...tlsServerName(url),
    maxRetriesPerRequest: options.role === 'worker' ? null : 3,
    enableReadyCheck: true,
    retryStrategy: reconnectDelay,
    // A READONLY reply means we hit a replica after a failover: reconnect to find the primary.
    reconnectOnError: (err) => err.message.startsWith('READONLY'),
    lazyConnect: options.lazyConnect ?? false,
  });
  let lastMessage = '';
  const report =
    options.onError ??
    ((err: Error) => process.stderr.write(`capfilt: redis ${redactRedisUrl(url)}: ${err.message}\n`));
  redis.on('error', (err: Error) => {
    if (err.message === lastMessage) return;
    lastMessage = err.message;
    report(err);
  });
  redis.on('ready', () => {
    lastMessage = '';
  });
  return redis;
}

export type EvictionCheck =
  | { ok: true; policy: 'noeviction' }
  | { ok: false; policy: string; warning: string }
  | { ok: null; policy: null; warning: string };

/**
 * BullMQ loses jobs silently when Redis evicts keys under memory pressure; only `noeviction` is
 * safe. Managed services often disable CONFIG, in which case we can only say we could not check.
 */
export async function checkEvictionPolicy(redis: Redis): Promise<EvictionCheck> {
  let reply: unknown;
  try {
    reply = await redis.config('GET', 'maxmemory-policy');
  } catch (err) {
    return {
      ok: null,
      policy: null,
      warning:
        'could not read Redis maxmemory-policy (CONFIG is disabled?): make sure it is "noeviction", ' +
        `or queued jobs can be evicted and lost (${err instanceof Error ? err.message : String(err)})`,
    };
  }
  const policy = Array.isArray(reply) && typeof reply[1] === 'string' ? reply[1] : '';
  if (policy === 'noeviction') return { ok: true, policy };
  return {
    ok: false,
    policy: policy || 'unknown',
    warning:
      `WARNING: Redis maxmemory-policy is "${policy || 'unknown'}", not "noeviction": under memory ` +
      'pressure Redis will evict BullMQ keys and jobs will be lost. Set `maxmemory-policy noeviction`.',
  };
}

/** Runs the eviction check and prints its warning, if any, to stderr. */
export async function warnOnEviction(redis: Redis, write = (s: string) => process.stderr.write(s)) {
  const check = await checkEvictionPolicy(redis);
  if (check.ok !== true) write(`capfilt: ${check.warning}\n`);
  return check;
}
