import { lookup } from 'node:dns/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SampleError } from '../../src/core/errors.js';
import { fetchUrl, isBlockedAddress } from '../../src/io/http.js';

const opts = { timeoutMs: 2000, retries: 2, maxBytes: 1000, allowPrivateNetwork: true };

async function reason(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    if (err instanceof SampleError) return err.reason;
    throw err;
  }
  return 'ok';
}

describe('isBlockedAddress', () => {
  it('blocks loopback, private, link-local (metadata), unique-local, unspecified; allows public', () => {
    for (const a of [
      '127.0.0.1',
      '10.1.2.3',
      '172.16.0.1',
      '192.168.1.1',
      '169.254.169.254',
      '0.0.0.0',
      '::1',
      '::',
      'fd00::1',
      'fe80::1',
      '::ffff:127.0.0.1',
      '100.64.0.1',
    ]) {
      expect(isBlockedAddress(a), a).toBe(true);
    }
    for (const a of ['8.8.8.8', '1.1.1.1', '2606:4700::1111', '172.32.0.1'])
      expect(isBlockedAddress(a), a).toBe(false);
  });

  it('judges IPv6 forms that carry an IPv4 address by that address; blocks site-local and local NAT64', () => {
    for (const a of [
      '::7f00:1', // IPv4-compatible 127.0.0.1
      '::127.0.0.1',
      '::ffff:7f00:1', // mapped, hex spelling
      '::ffff:0:7f00:1', // SIIT translated
      '::ffff:0:a9fe:a9fe', // translated 169.254.169.254
      '2002:7f00:1::1', // 6to4 of 127.0.0.1
      '2002:a00:1::', // 6to4 of 10.0.0.1
      '64:ff9b::7f00:1', // NAT64 of 127.0.0.1
      '64:ff9b::10.0.0.1',
      '64:ff9b:1::1', // local-use NAT64
      '64:ff9b:1:ffff::a00:1',
      'fec0::1', // site-local
      'feff::1',
      'fe80::1%eth0',
      '2001:0:4136:e378:8000:63bf:3fff:fdd2', // Teredo
    ]) {
      expect(isBlockedAddress(a), a).toBe(true);
    }
    for (const a of [
      '::ffff:8.8.8.8',
      '::ffff:808:808',
      '2002:808:808::1',
      '64:ff9b::8.8.8.8',
      '2a00:1450::1',
    ])
      expect(isBlockedAddress(a), a).toBe(false);
  });
});

describe('fetchUrl', () => {
  let server: Server;
  let base: string;
  let flaky = 0;
  beforeAll(async () => {
    server = createServer((req, res) => {
      if (req.url === '/ok') return void res.end(Buffer.from('imagebytes'));
      if (req.url === '/big') return void res.end(Buffer.alloc(5000));
      if (req.url === '/missing') return void res.writeHead(404).end();
      if (req.url === '/redirect') return void res.writeHead(302, { location: '/ok' }).end();
      if (req.url === '/flaky') {
        flaky++;
        if (flaky < 3) return void res.writeHead(503).end();
        return void res.end('finally');
      }
      if (req.url === '/slow') return void setTimeout(() => res.end('late'), 3000);
      res.writeHead(500).end();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => {
    server.closeAllConnections();
    server.close();
  });

  it('downloads, follows redirects, retries 5xx, caps bytes, times out', async () => {
    expect((await fetchUrl(`${base}/ok`, 'k', opts)).toString()).toBe('imagebytes');
    expect((await fetchUrl(`${base}/redirect`, 'k', opts)).toString()).toBe('imagebytes');
    expect((await fetchUrl(`${base}/flaky`, 'k', opts)).toString()).toBe('finally');
    expect(await reason(fetchUrl(`${base}/big`, 'k', opts))).toBe('too_large');
    expect(await reason(fetchUrl(`${base}/missing`, 'k', opts))).toBe('missing_object');
    expect(await reason(fetchUrl(`${base}/slow`, 'k', { ...opts, timeoutMs: 300, retries: 0 }))).toBe(
      'download_failed',
    );
    expect(await reason(fetchUrl('ftp://example.org/x', 'k', opts))).toBe('blocked_url');
  });

  it('refuses private targets unless allowed, by literal and by name', async () => {
    const guarded = { ...opts, allowPrivateNetwork: false };
    expect(await reason(fetchUrl(`${base}/ok`, 'k', guarded))).toBe('blocked_url');
    expect(await reason(fetchUrl('http://169.254.169.254/latest/meta-data/', 'k', guarded))).toBe(
      'blocked_url',
    );
    for (const literal of [
      '[::7f00:1]',
      '[::ffff:127.0.0.1]',
      '[2002:7f00:1::1]',
      '[fec0::1]',
      '[64:ff9b:1::1]',
    ])
      expect(await reason(fetchUrl(`http://${literal}/x.jpg`, 'k', guarded)), literal).toBe('blocked_url');
    expect(await reason(fetchUrl('http://[::1]/x', 'k', guarded))).toBe('blocked_url');
    const port = (server.address() as AddressInfo).port;
    expect(await reason(fetchUrl(`http://localhost:${port}/ok`, 'k', guarded))).toBe('blocked_url');
    // A name (not the literal 'localhost') that resolves to loopback is caught by the socket's lookup guard.
    const host = hostname();
    const addresses = await lookup(host, { all: true }).catch(() => []);
    if (addresses.length > 0 && addresses.every((a) => isBlockedAddress(a.address))) {
      expect(await reason(fetchUrl(`http://${host}:${port}/ok`, 'k', guarded))).toBe('blocked_url');
      expect((await fetchUrl(`http://${host}:${port}/ok`, 'k', opts)).toString()).toBe('imagebytes');
    }
  });
});
