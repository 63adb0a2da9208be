import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import http from 'node:http';
import https from 'node:https';
import { BlockList, isIP } from 'node:net';
import pRetry from 'p-retry';
import { errorMessage, SampleError } from '../core/errors.js';

export interface HttpFetchOptions {
  timeoutMs: number;
  /** Extra attempts after the first on network errors, 429 and 5xx. */
  retries: number;
  maxBytes: number;
  /** Allow loopback/private/link-local targets (tests; trusted intranets). */
  allowPrivateNetwork: boolean;
  maxRedirects?: number;
  userAgent?: string;
}

/** Ranges a scraped URL must never reach: a manifest must not make a worker probe its own network. */
const blocked = new BlockList();
for (const [net, bits] of [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['224.0.0.0', 4],
  ['240.0.0.0', 4],
] as const) {
  blocked.addSubnet(net, bits, 'ipv4');
}
/**
 * IPv6 ranges blocked outright. Ranges that carry an IPv4 address (mapped, compatible, translated,
 * 6to4, NAT64) are judged by that address instead: see embeddedIpv4.
 */
for (const [net, bits] of [
  ['fc00::', 7], // unique local
  ['fe80::', 10], // link-local
  ['fec0::', 10], // site-local (deprecated, still routed by some stacks)
  ['ff00::', 8], // multicast
  ['64:ff9b:1::', 48], // local-use NAT64: where the IPv4 sits depends on a prefix length we cannot know
  ['2001::', 32], // Teredo: tunnels to an obfuscated IPv4 through a relay
] as const) {
  blocked.addSubnet(net, bits, 'ipv6');
}

/** The 16 bytes of an IPv6 address (zone id ignored), or null when it is not one. */
function ipv6Bytes(address: string): Uint8Array | null {
  const text = address.replace(/%.*$/, '');
  if (isIP(text) !== 6) return null;
  let groups = text.split(':');
  const last = groups[groups.length - 1];
  if (last.includes('.')) {
    const [a, b, c, d] = last.split('.').map(Number);
    groups = [...groups.slice(0, -1), ((a << 8) | b).toString(16), ((c << 8) | d).toString(16)];
  }
  const gap = groups.indexOf('');
  if (gap >= 0) {
    const head = groups.slice(0, gap);
    const tail = groups.slice(gap).filter((g) => g !== '');
    groups = [...head, ...Array<string>(8 - head.length - tail.length).fill('0'), ...tail];
  }
  const out = new Uint8Array(16);
  groups.forEach((g, i) => {
    const v = Number.parseInt(g, 16);
    out[2 * i] = v >> 8;
    out[2 * i + 1] = v & 0xff;
  });
  return out;
}

/**
 * The IPv4 address an IPv6 address stands for, when it embeds one that routers or the host's own
 * stack translate to: ::a.b.c.d (compatible, incl. :: and ::1), ::ffff:a.b.c.d (mapped),
 * ::ffff:0:a.b.c.d (SIIT translated), 2002:aabb:ccdd:: (6to4) and 64:ff9b::a.b.c.d (NAT64).
 */
function embeddedIpv4(b: Uint8Array): string | null {
  const zero = (from: number, to: number) => b.subarray(from, to).every((x) => x === 0);
  const v4 = (at: number) => `${b[at]}.${b[at + 1]}.${b[at + 2]}.${b[at + 3]}`;
  const word = (at: number) => (b[at] << 8) | b[at + 1];
  if (zero(0, 10) && (word(10) === 0 || word(10) === 0xffff)) return v4(12);
  if (zero(0, 8) && word(8) === 0xffff && word(10) === 0) return v4(12);
  if (word(0) === 0x2002) return v4(2);
  if (word(0) === 0x64 && word(2) === 0xff9b && zero(4, 12)) return v4(12);
  return null;
}

/** True when an address is loopback, private, link-local (metadata), unique-local or unspecified, in any spelling. */
export function isBlockedAddress(address: string): boolean {
  if (isIP(address) === 4) return blocked.check(address, 'ipv4');
  const bytes = ipv6Bytes(address);
  if (!bytes) return true;
  const v4 = embeddedIpv4(bytes);
  if (v4 !== null) return blocked.check(v4, 'ipv4');
  return blocked.check(address.replace(/%.*$/, ''), 'ipv6');
}

class BlockedAddressError extends Error {}

type LookupCallback = (
  err: NodeJS.ErrnoException | null,
  address: string | LookupAddress[],
  family?: number,
) => void;

/**
 * A dns.lookup replacement for the socket: the check happens on the addresses actually
 * connected to, so DNS rebinding between a check and the connect cannot slip through.
 */
function guardedLookup(hostname: string, options: { all?: boolean }, callback: LookupCallback): void {
  dnsLookup(hostname, { all: true }, (err, addresses) => {
    if (err) return callback(err, []);
    const bad = addresses.find((a) => isBlockedAddress(a.address));
    if (bad) return callback(new BlockedAddressError(`${hostname} resolves to ${bad.address}`), []);
    if (options.all) return callback(null, addresses);
    const first = addresses[0];
    callback(null, first.address, first.family);
  });
}

interface Attempt {
  status?: number;
  body?: Buffer;
  redirect?: string;
}

function once(url: URL, options: HttpFetchOptions, key: string, signal: AbortSignal): Promise<Attempt> {
  return new Promise((resolve, reject) => {
    const mod = url.protocol === 'https:' ? https : http;
    const req = mod.request(
      url,
      {
        method: 'GET',
        signal,
        headers: {
          'user-agent': options.userAgent ?? 'capfilt (+https://github.com/capfilt)',
          accept: 'image/*,*/*',
        },
        ...(options.allowPrivateNetwork ? {} : { lookup: guardedLookup as unknown as typeof dnsLookup }),
      },
      (res) => {
        const status = res.statusCode ?? 0;
        if (status >= 300 && status < 400 && res.headers.location) {
          res.resume();
          resolve({ status, redirect: res.headers.location });
          return;
        }
        if (status !== 200) {
          res.resume();
          resolve({ status });
          return;
        }
        const declared = Number(res.headers['content-length'] ?? 0);
        if (declared > options.maxBytes) {
          res.destroy();
          reject(
            new SampleError(key, 'too_large', `${url.href}: ${declared} bytes > cap ${options.maxBytes}`),
          );
          return;
        }
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > options.maxBytes) {
            res.destroy();
            reject(new SampleError(key, 'too_large', `${url.href}: more than ${options.maxBytes} bytes`));
            return;
          }
          chunks.push(chunk);
        });
        res.on('end', () => resolve({ status, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end();
  });
}

function checkUrl(url: URL, key: string, allowPrivate: boolean): void {
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new SampleError(key, 'blocked_url', `${url.href}: only http(s) URLs are fetched`);
  }
  const host = url.hostname.replace(/^\[|\]$/g, '');
  // Socket lookup is skipped for IP literals, so they are checked here.
  if (!allowPrivate && isIP(host) && isBlockedAddress(host)) {
    throw new SampleError(key, 'blocked_url', `${url.href}: private or local address`);
  }
  if (!allowPrivate && host.toLowerCase() === 'localhost') {
    throw new SampleError(key, 'blocked_url', `${url.href}: private or local address`);
  }
}

/** A failure another attempt may cure: a network error, a timeout, 429 or a 5xx answer. */
class Transient extends Error {}

/** One attempt: follows redirects (each re-checked), and returns the body or throws. */
async function attempt(url: URL, key: string, options: HttpFetchOptions): Promise<Buffer> {
  const maxRedirects = options.maxRedirects ?? 5;
  let current = url;
  try {
    for (let hop = 0; ; hop++) {
      checkUrl(current, key, options.allowPrivateNetwork);
      const res = await once(current, options, key, AbortSignal.timeout(options.timeoutMs));
      if (res.redirect) {
        if (hop >= maxRedirects)
          throw new SampleError(key, 'download_failed', `${url.href}: too many redirects`);
        current = new URL(res.redirect, current);
        continue;
      }
      if (res.body) return res.body;
      const status = res.status ?? 0;
      if (status === 429 || status >= 500) throw new Transient(`${current.href}: HTTP ${status}`);
      const reason = status === 404 || status === 410 ? 'missing_object' : 'download_failed';
      throw new SampleError(key, reason, `${current.href}: HTTP ${status}`);
    }
  } catch (err) {
    if (err instanceof SampleError || err instanceof Transient) throw err;
    if (
      err instanceof BlockedAddressError ||
      (err as { cause?: unknown }).cause instanceof BlockedAddressError
    ) {
      throw new SampleError(key, 'blocked_url', `${current.href}: ${errorMessage(err)}`);
    }
    const name = (err as { name?: string }).name;
    throw new Transient(
      name === 'TimeoutError' || name === 'AbortError'
        ? `${current.href}: timed out after ${options.timeoutMs} ms`
        : `${current.href}: ${errorMessage(err)}`,
    );
  }
}

/**
 * Downloads an image URL: per-attempt timeout, retries with backoff on network errors, 429 and
 * 5xx, a byte cap, redirects re-checked, and the SSRF guard. Failures are SampleErrors.
 */
export async function fetchUrl(href: string, key: string, options: HttpFetchOptions): Promise<Buffer> {
  let url: URL;
  try {
    url = new URL(href);
  } catch {
    throw new SampleError(key, 'download_failed', `invalid URL ${JSON.stringify(href)}`);
  }
  try {
    // Exponential backoff from 100 ms, capped at 2 s, with jitter; only transient failures retry.
    return await pRetry(() => attempt(url, key, options), {
      retries: options.retries,
      minTimeout: 100,
      maxTimeout: 2000,
      randomize: true,
      shouldRetry: ({ error }) => error instanceof Transient,
    });
  } catch (err) {
    if (err instanceof Transient) throw new SampleError(key, 'download_failed', err.message);
    throw err;
  }
}
