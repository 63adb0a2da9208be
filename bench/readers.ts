/**
 * `npm run bench -- readers [--rows N] [--blank-mib M]`: how fast the manifest readers go through
 * their bytes, in decompressed MiB per second and CPU seconds per MiB: JSONL (plain and gzipped),
 * CSV, and a gzipped JSONL of mostly blank lines (which once cost 0.6 s of CPU per MiB).
 */
import { existsSync } from 'node:fs';
import { mkdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { gzipSync } from 'node:zlib';
import { DEFAULT_INPUT } from '../src/core/defaults.js';
import { readShard } from '../src/io/readers/index.js';
import { Storage } from '../src/io/storage/storage.js';
import { planShards } from '../src/pipeline/plan.js';
import { printTable, type Row, writeResult } from './report.js';

const CACHE = join(import.meta.dirname, '..', '.cache', 'bench', 'readers');

/** LAION-like rows: a URL, a caption of a few words, two numbers. */
function rows(n: number): { image: string; caption: string; width: number; height: number }[] {
  return Array.from({ length: n }, (_, i) => ({
    image: `https://images.example.org/${(i * 2654435761) % 1e9}/${i}.jpg`,
    caption: `a photo of item ${i} on a ${i % 7 === 0 ? 'wooden' : 'white'} table, ${i % 13} objects`,
    width: 256 + (i % 512),
    height: 256 + ((i * 7) % 512),
  }));
}

async function makeInputs(
  n: number,
  blankMiB: number,
): Promise<Record<string, { file: string; bytes: number }>> {
  const dir = join(CACHE, `${n}-${blankMiB}`);
  const r = rows(n);
  const jsonl = `${r.map((x) => JSON.stringify(x)).join('\n')}\n`;
  const csv = `image,caption,width,height\n${r.map((x) => `${x.image},"${x.caption}",${x.width},${x.height}`).join('\n')}\n`;
  const blank = `${jsonl.slice(0, 2000)}${'\n'.repeat(blankMiB << 20)}${jsonl.slice(0, 2000)}`;
  const inputs: Record<string, { name: string; body: string; gzip: boolean }> = {
    jsonl: { name: 'rows.jsonl', body: jsonl, gzip: false },
    'jsonl.gz': { name: 'rows.jsonl.gz', body: jsonl, gzip: true },
    csv: { name: 'rows.csv', body: csv, gzip: false },
    'blank lines jsonl.gz': { name: 'blank.jsonl.gz', body: blank, gzip: true },
  };
  await mkdir(dir, { recursive: true });
  const out: Record<string, { file: string; bytes: number }> = {};
  for (const [label, { name, body, gzip }] of Object.entries(inputs)) {
    const file = join(dir, name);
    if (!existsSync(file)) await writeFile(file, gzip ? gzipSync(body) : body);
    out[label] = { file, bytes: Buffer.byteLength(body) };
  }
  return out;
}

/** Plans the file (which counts its rows) and reads every pair, as a run does. */
async function readAll(storage: Storage, file: string): Promise<number> {
  let pairs = 0;
  const input = { ...DEFAULT_INPUT, shardSize: 1e9 };
  for (const { shard } of await planShards(storage, file, { shardSize: input.shardSize })) {
    for await (const _ of readShard(storage, shard, input)) pairs++;
  }
  return pairs;
}

export async function main(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: { rows: { type: 'string', default: '200000' }, 'blank-mib': { type: 'string', default: '16' } },
  });
  const n = Number(values.rows);
  const blankMiB = Number(values['blank-mib']);
  const inputs = await makeInputs(n, blankMiB);
  const storage = new Storage();
  const table: Row[] = [];
  for (const [label, { file, bytes }] of Object.entries(inputs)) {
    await readAll(storage, file); // warm the page cache and the JIT
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    const pairs = await readAll(storage, file);
    const wall = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    const cpuS = (cpu.user + cpu.system) / 1e6;
    const mib = bytes / 2 ** 20;
    table.push({
      input: label,
      'file MiB': Number(((await stat(file)).size / 2 ** 20).toFixed(2)),
      'text MiB': Number(mib.toFixed(2)),
      pairs,
      'wall s': Number(wall.toFixed(3)),
      'text MiB/s': Number((mib / wall).toFixed(1)),
      'CPU s/MiB': Number((cpuS / mib).toFixed(4)),
    });
  }
  printTable(`manifest readers: plan (count) + read every pair, ${n} rows`, table);
  const file = writeResult('readers', { rows: n, blankMiB, table });
  process.stdout.write(`\nwrote ${file}\n`);
}
