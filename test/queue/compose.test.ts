import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';

const run = promisify(execFile);
const dclint = join('node_modules', '.bin', 'dclint');

interface Service {
  command?: string[];
  stop_grace_period?: string;
  build?: { target?: string };
  environment?: Record<string, string>;
  deploy?: { resources?: { reservations?: { devices?: { driver: string; capabilities: string[] }[] } } };
}

async function lint(file: string): Promise<{ code: number; out: string }> {
  try {
    const { stdout, stderr } = await run(dclint, [file], { env: { ...process.env, NO_COLOR: '1' } });
    return { code: 0, out: stdout + stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, out: e.stdout + e.stderr };
  }
}

describe('docker-compose.yml', () => {
  it('passes dclint (compose-spec schema and style), which rejects a broken file', async () => {
    const good = await lint('docker-compose.yml');
    expect(good.out.trim()).toBe('');
    expect(good.code).toBe(0);
    const dir = mkdtempSync(join(tmpdir(), 'capfilt-compose-'));
    const broken = readFileSync('docker-compose.yml', 'utf8').replace(
      '\n  redis:\n',
      '\n  redis:\n    bogus_key: 1\n',
    );
    writeFileSync(join(dir, 'docker-compose.yml'), broken);
    const bad = await lint(join(dir, 'docker-compose.yml'));
    expect(bad.code).not.toBe(0);
    expect(bad.out).toMatch(/additional properties/);
  });

  it('runs redis with AOF and noeviction, GPU reservations on the model pools', () => {
    const doc = parse(readFileSync('docker-compose.yml', 'utf8')) as { services: Record<string, Service> };
    const s = doc.services;
    expect(Object.keys(s).sort()).toEqual(
      [
        'bucket-init',
        'caption-worker',
        'dashboard',
        'filter-worker',
        'minio',
        'producer',
        'redis',
        'writer',
      ].sort(),
    );
    const redisCmd = s.redis.command?.join(' ') ?? '';
    expect(redisCmd).toMatch(/--appendonly yes/);
    expect(redisCmd).toMatch(/--maxmemory-policy noeviction/);
    for (const pool of ['caption-worker', 'filter-worker']) {
      const devices = s[pool].deploy?.resources?.reservations?.devices ?? [];
      expect(devices[0]).toMatchObject({ driver: 'nvidia', capabilities: ['gpu'] });
      expect(s[pool].build?.target).toBe('gpu');
    }
    expect(s['caption-worker'].command).toEqual(expect.arrayContaining(['worker', '--stage', 'caption']));
    expect(s['filter-worker'].command).toEqual(expect.arrayContaining(['worker', '--stage', 'filter']));
    expect(s.writer.command).toEqual(expect.arrayContaining(['worker', '--stage']));
    expect(s.dashboard.environment?.CAPFILT_DASHBOARD_PASSWORD).toMatch(/:\?/);
  });

  it('lets each worker use its stop grace period to finish its shards before it exits', () => {
    const doc = parse(readFileSync('docker-compose.yml', 'utf8')) as { services: Record<string, Service> };
    const workers = Object.values(doc.services).filter((s) => s.command?.[0] === 'worker');
    expect(workers).toHaveLength(3);
    for (const w of workers) {
      const m = /^(\d+)(s|m)$/.exec(w.stop_grace_period ?? '');
      expect(m, w.command?.join(' ')).not.toBeNull();
      const stopMs = Number(m?.[1]) * (m?.[2] === 'm' ? 60_000 : 1_000);
      const graceMs = Number(w.command?.[(w.command?.indexOf('--shutdown-grace') ?? -2) + 1]);
      // Below the period (compose then sends SIGKILL), and well beyond the default of 60 s.
      expect(graceMs).toBeLessThan(stopMs);
      expect(graceMs).toBeGreaterThan(stopMs - 30_000);
    }
  });

  it('builds the GPU image with the CUDA execution provider enabled', () => {
    const dockerfile = readFileSync('Dockerfile', 'utf8');
    expect(dockerfile).toMatch(/FROM .* AS cpu/);
    expect(dockerfile).toMatch(/FROM .* AS gpu/);
    expect(dockerfile).toMatch(/ONNXRUNTIME_NODE_INSTALL=cuda12 node script\/install\.js/);
  });
});
