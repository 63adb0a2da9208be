import { DEFAULT_QUEUE } from '../core/defaults.js';

/** Something that must be closed before the process exits (workers first, then connections). */
export type Closer = () => Promise<void>;

export interface ShutdownOptions {
  /** After this long the process exits even if closers hang (ms). */
  graceMs?: number;
  log?: (line: string) => void;
  /** Exit the process when done (default true; tests pass false). */
  exit?: boolean;
}

/**
 * On the first SIGTERM/SIGINT run the closers in order (a BullMQ Worker's close() waits for its
 * active jobs to finish, so a shard is never cut in half); a second signal exits at once. Jobs
 * still active when the grace period ends are left to BullMQ's stalled-job recovery.
 */
export function onShutdown(closers: Closer[], options: ShutdownOptions = {}): () => Promise<void> {
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const graceMs = options.graceMs ?? DEFAULT_QUEUE.shutdownGraceMs;
  let closing: Promise<void> | undefined;
  const shutdown = (): Promise<void> => {
    if (closing) return closing;
    closing = (async () => {
      const timer = setTimeout(() => {
        log('capfilt: shutdown grace period over, exiting with jobs still active');
        process.exit(1);
      }, graceMs);
      timer.unref();
      for (const close of closers) {
        try {
          await close();
        } catch (err) {
          log(`capfilt: error while closing: ${err instanceof Error ? err.message : String(err)}`);
        }
      }
      clearTimeout(timer);
    })();
    return closing;
  };
  const handler = (signal: NodeJS.Signals) => {
    if (closing) {
      log(`capfilt: ${signal} again, exiting now`);
      process.exit(130);
    }
    log(`capfilt: ${signal}, finishing active jobs (send again to exit now)`);
    void shutdown().then(() => {
      if (options.exit !== false) process.exit(0);
    });
  };
  process.on('SIGTERM', handler);
  process.on('SIGINT', handler);
  return shutdown;
}
