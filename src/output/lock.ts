/**
 * The lock a local `capfilt run` holds on its output folder, so that a second run on the same
 * output is refused instead of rewriting a shard the first one is writing. It is a file created
 * exclusively (O_EXCL) beside the parts, naming the process that holds it; a lock whose process is
 * gone (killed, crashed) is stale and taken over. Taking it is also the first write into the
 * output, so an output that cannot be written fails here, before any model loads.
 *
 * Only local folders are locked: the lock needs an exclusive create and a way to tell whether its
 * holder lives, which Storage's S3 backend does not give (a conditional PUT would; the S3 endpoint
 * the tests use does not implement one). An S3 output's writability is checked by writing its run
 * record, still before the models load.
 */

import { randomBytes } from 'node:crypto';
import { readFileSync, unlinkSync } from 'node:fs';
import { link, mkdir, readFile, rm, rmdir, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { UsageError } from '../core/errors.js';
import { parseLocation } from '../io/location.js';
import { LOCK_NAME } from './layout.js';

export interface OutputLock {
  /** Where the lock file is; null for an output that is not a local folder (not locked). */
  readonly path: string | null;
  /** Set when a stale lock of a dead process was taken over: who held it. */
  readonly tookOverFrom: LockHolder | null;
  release(): Promise<void>;
}

/** What the lock file says. */
export interface LockHolder {
  pid: number;
  host: string;
  /** The process's start time in clock ticks since boot (Linux): a reused pid is not the holder. */
  startTicks: number | null;
  startedAt: string;
  command: string;
}

/** A process's start time from /proc (Linux), or null where there is no /proc. */
function startTicksOf(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 22, counted after the parenthesised command name (which may hold spaces).
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[19]);
  } catch {
    return null;
  }
}

/** Whether the process that wrote `holder` still runs (on this host; another host's is assumed alive). */
export function holderAlive(holder: LockHolder): boolean {
  if (holder.host !== hostname()) return true;
  try {
    process.kill(holder.pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  const ticks = startTicksOf(holder.pid);
  return holder.startTicks === null || ticks === null || ticks === holder.startTicks;
}

function thisProcess(command: string): LockHolder {
  return {
    pid: process.pid,
    host: hostname(),
    startTicks: startTicksOf(process.pid),
    startedAt: new Date().toISOString(),
    command: command.slice(0, 500),
  };
}

/**
 * Who holds the lock, or 'stale' for a lock that does not parse. A lock file appears whole (see
 * tryCreate), so one that does not parse was damaged after the fact: nobody can be said to hold it.
 */
async function readHolder(path: string): Promise<LockHolder | 'stale'> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as LockHolder;
  } catch {
    return 'stale';
  }
}

function notWritable(output: string, err: unknown): UsageError {
  const code = (err as NodeJS.ErrnoException).code ?? String(err);
  return new UsageError(`output ${output} is not writable (${code}); nothing was run`);
}

function inUse(output: string, path: string, h: LockHolder): UsageError {
  return new UsageError(
    `output ${output} is in use by another capfilt run (pid ${h.pid} on ${h.host}, since ${h.startedAt}: ` +
      `${h.command}); wait for it to finish or use another --output (if that process is gone, delete ${path})`,
  );
}

/**
 * Creates the lock file whole, or says who holds it: the holder is written to a temporary file
 * first and hard-linked to the lock's name, which fails if the lock exists. A process killed at
 * any point leaves either no lock or a complete one (and at most a temporary file, which is
 * removed with the output's other temporaries).
 */
async function tryCreate(path: string, me: LockHolder): Promise<LockHolder | 'stale' | 'taken'> {
  const temp = join(dirname(path), `.${basename(path)}.${process.pid}-${randomBytes(4).toString('hex')}.tmp`);
  await writeFile(temp, `${JSON.stringify(me)}\n`);
  try {
    await link(temp, path);
    return 'taken';
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  } finally {
    await rm(temp, { force: true });
  }
  return await readHolder(path);
}

/**
 * Two processes taking over the same stale lock at once can each remove it and create their own,
 * the later removing the earlier's: a moment later only one of them still finds its own lock there.
 */
async function confirmOwnership(output: string, path: string, me: LockHolder): Promise<void> {
  await new Promise((r) => setTimeout(r, 200));
  const holder = await readHolder(path);
  if (holder === 'stale' || holder.pid !== me.pid || holder.startedAt !== me.startedAt) {
    throw inUse(output, path, holder === 'stale' ? me : holder);
  }
}

/** Takes the output's lock, or throws a UsageError saying why it cannot (held, or not writable). */
export async function lockOutput(
  output: string,
  command = process.argv.slice(2).join(' '),
): Promise<OutputLock> {
  const loc = parseLocation(output);
  if (loc.kind !== 'local') return { path: null, tookOverFrom: null, release: async () => {} };
  const path = join(loc.path, LOCK_NAME);
  const me = thisProcess(command);
  let tookOverFrom: LockHolder | null = null;
  let created = false;
  try {
    created = (await mkdir(loc.path, { recursive: true })) !== undefined;
    for (;;) {
      const holder = await tryCreate(path, me);
      if (holder === 'taken') break;
      // Taken over once at most: a second stale lock means another process is taking it too.
      if (holder !== 'stale' && (holderAlive(holder) || tookOverFrom)) {
        throw inUse(output, path, holder);
      }
      if (tookOverFrom) throw inUse(output, path, tookOverFrom);
      tookOverFrom = holder === 'stale' ? { ...me, pid: -1, command: '(unreadable lock)' } : holder;
      await rm(path, { force: true });
    }
    if (tookOverFrom) await confirmOwnership(output, path, me);
  } catch (err) {
    throw err instanceof UsageError ? err : notWritable(output, err);
  }
  // A process.exit() (a second Ctrl-C) skips `release`; the lock still goes.
  const onExit = () => {
    try {
      unlinkSync(path);
    } catch {
      // Already gone.
    }
  };
  process.once('exit', onExit);
  return {
    path,
    tookOverFrom,
    async release() {
      process.off('exit', onExit);
      await rm(path, { force: true });
      // A run refused before it wrote anything leaves no empty output folder behind.
      if (created) await rmdir(loc.path).catch(() => {});
    },
  };
}
