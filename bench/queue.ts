import { existsSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { type Job, Queue } from 'bullmq';
import sharp from 'sharp';
import { runOptions } from '../src/core/options.js';
import { Storage } from '../src/io/storage/storage.js';
import { runLocal } from '../src/pipeline/local-runner.js';
import { openQueueContext, type QueueContext } from '../src/queue/context.js';
import { produceRun } from '../src/queue/produce.js';
import type { RunMode } from '../src/queue/runs.js';
import { spawnCli, waitFor } from '../tools/cli-process.js';
import { startRedis } from '../tools/redis-server.js';
import { makeTar } from '../tools/tar.js';
import { benchModels } from './models.js';
import { printTable, type Row, writeResult } from './report.js';

sharp.cache(false);

const CACHE = join(import.meta.dirname, '..', '.cache', 'bench', 'queue');

/** `shards` WebDataset tars of `pairs` web-like JPEGs (noisy gradients, 256-384 px) with texts. */
async function makeInput(shards: number, pairs: number): Promise<string> {
  const dir = join(CACHE, `input-${shards}x${pairs}`);
  if (existsSync(join(dir, `${String(shards - 1).padStart(5, '0')}.tar`))) return dir;
  await mkdir(dir, { recursive: true });
  for (let s = 0; s < shards; s++) {
    const members: { name: string; data: Buffer | string }[] = [];
    for (let i = 0; i < pairs; i++) {
      const n = s * pairs + i;
      const w = 256 + ((n * 37) % 128);
      const h = 256 + ((n * 53) % 128);
      const buf = Buffer.alloc(w * h * 3);
      let x = (n + 1) * 2654435761;
      for (let p = 0; p < w * h; p++) {
        x = (x * 1103515245 + 12345) >>> 0;
        buf[p * 3] = ((p % w) * 255) / w + ((x >>> 24) & 31);
        buf[p * 3 + 1] = (Math.floor(p / w) * 255) / h;
        buf[p * 3 + 2] = (n * 40) & 255;
      }
      const key = `s${s}-${String(i).padStart(4, '0')}`;
      const jpg = await sharp(buf, { raw: { width: w, height: h, channels: 3 } })
        .jpeg({ quality: 85 })
        .toBuffer();
      members.push(
        { name: `${key}.jpg`, data: jpg },
        { name: `${key}.txt`, data: `a gradient picture ${n}` },
      );
    }
    await writeFile(join(dir, `${String(s).padStart(5, '0')}.tar`), await makeTar(members));
  }
  return dir;
}

async function runToCompletion(
  ctx: QueueContext,
  input: string,
  output: string,
  runId: string,
  mode: RunMode,
) {
  const t0 = performance.now();
  await produceRun(ctx, new Storage(), { input, output, options: opts(), mode, runId });
  await waitFor(`run ${runId}`, async () => (await ctx.runs.progress(runId))?.completedAt, 600_000, 10);
  return performance.now() - t0;
}

let batchSize = 8;
const opts = () => runOptions({ batchSize, input: { shardSize: 10_000 } });

const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0);

/**
 * Samples/s of distributed runs with 1 and 2 worker processes against the local runner on the
 * same input and models, and the per-shard queue overhead: the worker time a shard costs beyond
 * the local runner's time per shard, (workers x wall - local wall) / shards.
 */
export async function main(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      shards: { type: 'string', default: '8' },
      pairs: { type: 'string', default: '16' },
      workers: { type: 'string', default: '1,2' },
      threads: { type: 'string', default: '1' },
      mode: { type: 'string', default: 'fused' },
      'batch-size': { type: 'string', default: '8' },
    },
  });
  const shards = Number(values.shards);
  const pairs = Number(values.pairs);
  const threads = String(values.threads);
  const mode = values.mode as RunMode;
  batchSize = Number(values['batch-size']);
  // The machine may be shared: record how busy it was.
  const loadavgAtStart = loadavg();
  const models = await benchModels('tiny');
  const input = await makeInput(shards, pairs);
  const warmInput = await makeInput(1, batchSize);
  const redis = await startRedis({ appendonly: false });
  const rows: Row[] = [];
  const log = (s: string) => process.stderr.write(`bench: ${s}\n`);
  try {
    // Local baseline, same models and threads, warmed up first.
    const { Captioner } = await import('../src/captioner/captioner.js');
    const { Filter } = await import('../src/filter/filter.js');
    const engineOptions = { batchSize, intraOpThreads: Number(threads) };
    const engines = {
      captioner: await Captioner.load(models.captioner, engineOptions),
      filter: await Filter.load(models.filter, engineOptions),
    };
    const local = async (inp: string, out: string) => {
      await rm(out, { recursive: true, force: true });
      const t0 = performance.now();
      const r = await runLocal({
        input: inp,
        output: out,
        captionerDir: '',
        filterDir: '',
        engines,
        options: opts(),
        storage: new Storage(),
        progress: 'none',
        log: () => {},
      });
      return { ms: performance.now() - t0, modelMs: r.modelMs };
    };
    await local(warmInput, join(CACHE, 'out-local-warm'));
    const base = await local(input, join(CACHE, 'out-local'));
    await engines.captioner.close();
    await engines.filter.close();
    const n = shards * pairs;
    rows.push({
      setup: 'local (capfilt run)',
      workers: 1,
      shards,
      pairs: n,
      wall_s: base.ms / 1000,
      samples_per_s: n / (base.ms / 1000),
      speedup: 1,
      overhead_ms_per_shard: 0,
      outside_model_job_ms_per_shard: null,
      handoff_ms: null,
      write_job_ms: null,
    });
    log(`local: ${(base.ms / 1000).toFixed(2)} s`);

    for (const w of String(values.workers).split(',').map(Number)) {
      const prefix = `bench-${w}w-${Date.now()}`;
      const stages = mode === 'fused' ? 'fused,write' : 'caption,filter,write';
      const procs = Array.from({ length: w }, () =>
        spawnCli([
          'worker',
          '--stage',
          stages,
          '--captioner',
          models.captioner,
          '--filter',
          models.filter,
          '--prefix',
          prefix,
          '--intra-op-threads',
          threads,
          '--redis',
          redis.url,
        ]),
      );
      try {
        await waitFor('workers', async () => procs.every((p) => p.output().includes('serving')), 300_000, 50);
        const ctx = await openQueueContext({ redisUrl: redis.url, prefix, checkEviction: false });
        // Warm every worker's sessions with one small run per worker.
        for (let i = 0; i < w; i++) {
          await runToCompletion(ctx, warmInput, join(CACHE, `out-warm-${w}-${i}`), `warm${i}`, mode);
        }
        const out = join(CACHE, `out-${w}w`);
        await rm(out, { recursive: true, force: true });
        const ms = await runToCompletion(ctx, input, out, 'measured', mode);
        const model = new Queue(mode === 'fused' ? 'fused' : 'filter', { connection: ctx.redis, prefix });
        const write = new Queue('write', { connection: ctx.redis, prefix });
        const mine = (jobs: Job[]) => jobs.filter((j) => j.id?.startsWith('measured.'));
        const modelJobs = new Map(mine(await model.getJobs(['completed'])).map((j) => [j.data.shard.id, j]));
        const writeJobs = mine(await write.getJobs(['completed']));
        const handoff = writeJobs.map(
          (j) => (j.processedOn ?? 0) - (modelJobs.get(j.data.shard.id)?.finishedOn ?? j.processedOn ?? 0),
        );
        const writeMs = writeJobs.map((j) => (j.finishedOn ?? 0) - (j.processedOn ?? 0));
        // Time inside the fused jobs (one at a time per worker). In split mode a process runs its
        // caption and filter jobs concurrently, so their times overlap and are not reported.
        const modelJobMs = [...modelJobs.values()].reduce(
          (a, j) => a + (j.finishedOn ?? 0) - (j.processedOn ?? 0),
          0,
        );
        rows.push({
          setup: `queue, ${mode}`,
          workers: w,
          shards,
          pairs: n,
          wall_s: ms / 1000,
          samples_per_s: n / (ms / 1000),
          speedup: base.ms / ms,
          overhead_ms_per_shard: (w * ms - base.ms) / shards,
          outside_model_job_ms_per_shard: mode === 'fused' ? (w * ms - modelJobMs) / shards : null,
          handoff_ms: mean(handoff),
          write_job_ms: mean(writeMs),
        });
        log(`${w} worker(s): ${(ms / 1000).toFixed(2)} s`);
        await model.close();
        await write.close();
        await ctx.close();
      } finally {
        await Promise.all(procs.map((p) => p.kill('SIGTERM')));
      }
    }
  } finally {
    await redis.stop();
  }
  printTable(
    `capfilt on BullMQ vs local (tiny random BLIP, ${threads} onnxruntime thread(s) per process, redis-server on loopback)`,
    rows,
  );
  const file = writeResult('queue', { mode, batchSize, threads: Number(threads), loadavgAtStart, rows });
  process.stdout.write(`\nwrote ${file}\n`);
}
