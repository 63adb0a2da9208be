import { lookup as dnsLookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { errorMessage, UsageError } from '../core/errors.js';
import type { BasicAuth } from './auth.js';

/** Where the dashboard listens: the `--host` as given, and the address it names. */
export interface BindAddress {
  host: string;
  /** The address actually bound (the name's first address), so the check and the bind agree. */
  address: string;
  /** Every address the name resolves to is a loopback address. */
  loopback: boolean;
}

export type Lookup = (name: string) => Promise<string[]>;

const systemLookup: Lookup = async (name) =>
  (await dnsLookup(name, { all: true, verbatim: true })).map((a) => a.address);

export function isLoopbackAddress(ip: string): boolean {
  const v = ip.toLowerCase();
  if (isIP(v) === 4) return v.startsWith('127.');
  if (isIP(v) !== 6) return false;
  return v === '::1' || v === '0:0:0:0:0:0:0:1' || /^::ffff:127\.\d+\.\d+\.\d+$/.test(v);
}

/**
 * Resolves `--host` before anything decides on it: a name such as `127.evil.test` is judged by the
 * addresses it resolves to, never by how it is spelled.
 */
export async function resolveBind(host: string, lookup: Lookup = systemLookup): Promise<BindAddress> {
  const literal = host.replace(/^\[(.*)\]$/, '$1');
  let addresses: string[];
  try {
    addresses = isIP(literal) ? [literal] : await lookup(literal);
  } catch (err) {
    throw new UsageError(`cannot resolve the dashboard --host ${host}: ${errorMessage(err)}`);
  }
  if (addresses.length === 0) throw new UsageError(`the dashboard --host ${host} resolves to no address`);
  return { host, address: addresses[0], loopback: addresses.every(isLoopbackAddress) };
}

/** Bull Board can retry, delete and promote jobs: never expose it beyond loopback unauthenticated. */
export function assertBindAllowed(bind: BindAddress, auth: BasicAuth | null): void {
  if (!bind.loopback && !auth) {
    const resolved = bind.address === bind.host ? '' : ` (${bind.address})`;
    throw new UsageError(
      `refusing to bind the dashboard to ${bind.host}${resolved} without authentication: set ` +
        'CAPFILT_DASHBOARD_USER and CAPFILT_DASHBOARD_PASSWORD (or bind 127.0.0.1)',
    );
  }
}
