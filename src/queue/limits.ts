/**
 * A worker's own limits: where the runs it serves may read and write, set by the operator who
 * starts it (`capfilt worker --read-root/--write-root`). payloads.ts holds a job to its run
 * record, but the record is anyone's who can write to Redis and names its own input, output and
 * source roots; these limits are what the record is held to. A run (or a produce job) with a
 * location outside them is an invalid job: refused before anything it names is read or written.
 */
import { InvalidJobError, UsageError } from '../core/errors.js';
import type { SourcePolicy, WorkerLimits } from '../core/types.js';
import { validateWorkerLimits } from '../core/validate.js';
import { absoluteLocation, isInside, parseLocation } from '../io/location.js';
import { whereIs } from '../io/sources.js';

/** Limits to check against: null is no limit; local roots as real paths (links resolved). */
export interface ResolvedLimits {
  read: string[] | null;
  write: string[] | null;
  /** With read limits: whether a run may let image URLs reach private addresses. */
  privateNetwork: boolean;
}

/** What a run names that a worker would touch: its inputs and sources (read), its output (written). */
export interface RunPlaces {
  runId: string;
  input: string;
  output: string;
  human?: string[];
  sources?: SourcePolicy;
  /** The run lets its image URLs reach loopback/private/link-local addresses. */
  privateNetwork?: boolean;
}

/**
 * Where a location really is, comparable with resolved roots: a local path by its real path (a
 * link inside a root may lead out of it), the rest as written; null when it cannot be told.
 */
async function placeOf(location: string): Promise<string | null> {
  try {
    const loc = parseLocation(location);
    if (loc.kind === 'http') return new URL(loc.url).href;
    if (loc.kind === 's3') return absoluteLocation(location);
    return (await whereIs(loc.path)).real;
  } catch {
    return null;
  }
}

async function placesOf(locations: readonly string[]): Promise<(string | null)[]> {
  return await Promise.all(locations.map(placeOf));
}

/** The limits, checked (as at every entry) and resolved; write roots default to the read roots. */
export async function resolveWorkerLimits(limits: WorkerLimits): Promise<ResolvedLimits> {
  validateWorkerLimits(limits);
  const resolve = async (roots: string[] | undefined) => {
    if (roots === undefined) return null;
    const places = await placesOf(roots);
    const bad = roots.filter((_, i) => places[i] === null);
    if (bad.length > 0) throw new UsageError(`not a location a worker can be limited to: ${bad.join(', ')}`);
    return places as string[];
  };
  return {
    read: await resolve(limits.readRoots),
    write: await resolve(limits.writeRoots ?? limits.readRoots),
    privateNetwork: limits.privateNetwork === true,
  };
}

/** What the worker says at start about each limit left unset. */
export function limitWarnings(limits: ResolvedLimits): string[] {
  const open = (flag: string, verb: string) =>
    `capfilt: warning: no ${flag}: a run record in Redis can make this worker ${verb} wherever its file permissions and S3 credentials allow`;
  return [
    ...(limits.read === null ? [open('--read-root', 'read')] : []),
    ...(limits.write === null ? [open('--write-root', 'write')] : []),
  ];
}

/** The first of `locations` that lies outside `roots` (null roots: no limit), or undefined. */
async function outsider(locations: readonly string[], roots: string[] | null): Promise<string | undefined> {
  if (roots === null) return undefined;
  const places = await placesOf(locations);
  return locations.find((_, i) => {
    const place = places[i];
    return place === null || place === undefined || !roots.some((root) => isInside(place, root));
  });
}

/**
 * Refuses a run whose input, human inputs, source roots or buckets (read) or output (written) lie
 * outside the worker's limits, naming the run and the location. A source bucket is all of it, so
 * only a root covering the whole bucket (`s3://bucket`) admits it.
 */
export async function checkRunInLimits(run: RunPlaces, limits: ResolvedLimits, what = 'run'): Promise<void> {
  const sources = run.sources ?? { localRoots: [], s3Buckets: [] };
  const reads = [
    ['input', [run.input]],
    ['human input', run.human ?? []],
    ['source root', sources.localRoots],
    ['source bucket', sources.s3Buckets.map((b) => `s3://${b}/`)],
  ] as const;
  for (const [name, locations] of reads) {
    const out = await outsider(locations, limits.read);
    if (out !== undefined) throw refusal(run.runId, what, `${name} ${out}`, '--read-root', limits.read);
  }
  // Private addresses are places to read too: a limited worker reaches them only when told to.
  if (limits.read !== null && run.privateNetwork === true && !limits.privateNetwork)
    throw new InvalidJobError(
      `${what} ${run.runId} is outside this worker's limits: it lets image URLs reach private addresses, which this worker allows only with --allow-private-network`,
    );
  const out = await outsider([run.output], limits.write);
  if (out !== undefined) throw refusal(run.runId, what, `output ${out}`, '--write-root', limits.write);
}

function refusal(runId: string, what: string, place: string, flag: string, roots: string[] | null) {
  return new InvalidJobError(
    `${what} ${runId} is outside this worker's limits: its ${place} is not under ${flag} (${roots?.join(', ') || 'none'})`,
  );
}
