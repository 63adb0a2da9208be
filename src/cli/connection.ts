import type { Command } from 'commander';
import { resolveRedisUrl } from '../queue/connection.js';
import { openQueueContext, type QueueContext } from '../queue/context.js';
import { DEFAULT_PREFIX } from '../queue/names.js';

/** Which Redis and which deployment on it: every command of the distributed service. */
export interface ConnectionFlags {
  redis?: string;
  prefix?: string;
}

export function addConnectionFlags(cmd: Command): Command {
  return cmd
    .option('--redis <url>', 'Redis URL (redis:// or rediss://, password in the URL); default $REDIS_URL')
    .option(
      '--prefix <name>',
      `key prefix of this deployment (default $CAPFILT_PREFIX or ${DEFAULT_PREFIX})`,
    );
}

export function prefixOf(flags: ConnectionFlags): string {
  return flags.prefix ?? process.env.CAPFILT_PREFIX ?? DEFAULT_PREFIX;
}

export async function openContext(
  flags: ConnectionFlags,
  role: 'worker' | 'client' = 'client',
): Promise<QueueContext> {
  return await openQueueContext({ redisUrl: resolveRedisUrl(flags.redis), prefix: prefixOf(flags), role });
}
