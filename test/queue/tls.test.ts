import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, spawnCli, waitFor } from '../../tools/cli-process.js';
import { freePort } from '../../tools/redis-server.js';

const hasOpenssl = (() => {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

/** redis-server speaking TLS only, with a password, and a self-signed certificate for localhost. */
describe.skipIf(!hasOpenssl)(
  'rediss:// with a password (needs the openssl CLI for a test certificate)',
  () => {
    const dir = mkdtempSync(join(tmpdir(), 'capfilt-tls-'));
    const cert = join(dir, 'cert.pem');
    let port: number;
    let server: ChildProcess;

    beforeAll(async () => {
      execFileSync(
        'openssl',
        [
          'req',
          '-x509',
          '-newkey',
          'rsa:2048',
          '-nodes',
          '-days',
          '1',
          '-subj',
          '/CN=localhost',
          '-addext',
          'subjectAltName=DNS:localhost',
          '-keyout',
          join(dir, 'key.pem'),
          '-out',
          cert,
        ],
        { stdio: 'ignore' },
      );
      port = await freePort();
      server = spawn(
        'redis-server',
        [
          '--port',
          '0',
          '--tls-port',
          String(port),
          '--bind',
          '127.0.0.1',
          '--tls-cert-file',
          cert,
          '--tls-key-file',
          join(dir, 'key.pem'),
          '--tls-ca-cert-file',
          cert,
          '--tls-auth-clients',
          'no',
          '--requirepass',
          's3cret',
          '--save',
          '',
          '--dir',
          dir,
        ],
        { stdio: 'ignore' },
      );
      await new Promise((r) => setTimeout(r, 300));
    });
    afterAll(() => {
      server?.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    });

    it('connects over TLS with the password from REDIS_URL', async () => {
      const env = { REDIS_URL: `rediss://:s3cret@localhost:${port}`, NODE_EXTRA_CA_CERTS: cert };
      const out = await waitFor(
        'redis-server TLS',
        () => runCli(['status', '--prefix', 'tls'], env).catch(() => null),
        30_000,
        300,
      );
      expect(out).toMatch(/no runs/);
    });

    it('reports a wrong password or an untrusted certificate clearly, without a stack trace', async () => {
      const wrong = spawnCli(['status', '--redis', `rediss://:nope@localhost:${port}`], {
        NODE_EXTRA_CA_CERTS: cert,
      });
      expect(await wrong.exited).toBe(2);
      expect(wrong.output()).toMatch(
        /capfilt: cannot use Redis at rediss:\/\/:\*\*\*@localhost:\d+: WRONGPASS/,
      );
      expect(wrong.output()).not.toMatch(/nope/);
      const untrusted = spawnCli(['status', '--redis', `rediss://:s3cret@localhost:${port}`], {
        NODE_EXTRA_CA_CERTS: '',
      });
      expect(await untrusted.exited).toBe(2);
      expect(untrusted.output()).toMatch(/self-signed certificate/);
    });
  },
);
