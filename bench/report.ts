import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import sharp from 'sharp';
import { cpuFlags } from '../src/model/runtime/cpu.js';

export type Row = Record<string, string | number | null>;

/** Print rows as an aligned table. */
export function printTable(title: string, rows: Row[]): void {
  if (rows.length === 0) return;
  const cols = Object.keys(rows[0]);
  const cell = (v: Row[string]) =>
    typeof v === 'number' ? (Number.isInteger(v) ? String(v) : v.toFixed(3)) : String(v ?? '');
  const widths = cols.map((c) => Math.max(c.length, ...rows.map((r) => cell(r[c]).length)));
  const line = (vals: string[]) => vals.map((v, i) => v.padStart(widths[i])).join('  ');
  process.stdout.write(`\n${title}\n${line(cols)}\n${line(widths.map((w) => '-'.repeat(w)))}\n`);
  for (const r of rows) process.stdout.write(`${line(cols.map((c) => cell(r[c])))}\n`);
}

/** The 1, 5 and 15 minute load averages when the benchmark process started. */
const LOAD_AT_START = loadavg();

/** The SIMD features that decide which kernels onnxruntime's MLAS runs (fp32 and int8 GEMMs). */
const SIMD_FLAGS = [
  'avx2',
  'fma',
  'avx512f',
  'avx512bw',
  'avx512vl',
  'avx512_vnni',
  'avx_vnni',
  'avx512_bf16',
  'amx_int8',
];

/** This CPU's flags among SIMD_FLAGS. */
export function simdFlags(): string[] {
  const have = cpuFlags();
  return SIMD_FLAGS.filter((f) => have.has(f));
}

/** Where and with what the numbers were measured, written next to them. */
export function environment(): Record<string, unknown> {
  return {
    date: new Date().toISOString(),
    node: process.version,
    cpu: cpus()[0]?.model ?? 'unknown',
    cpuFlags: simdFlags(),
    cores: cpus().length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    loadAverage: { start: LOAD_AT_START, end: loadavg() },
    onnxruntime: ort.env.versions,
    sharp: sharp.versions,
  };
}

/** One line saying what the figures around it were measured on. */
export function machineLine(): string {
  const [one, five] = loadavg();
  return `machine: ${cpus()[0]?.model ?? 'unknown'} × ${cpus().length} (${simdFlags().join(' ')}), onnxruntime ${ort.env.versions.common}, node ${process.version}, load ${one.toFixed(2)} / ${five.toFixed(2)} (1 / 5 min)`;
}

/** Write bench/results/<name>-<timestamp>.json and <name>-latest.json. */
export function writeResult(name: string, result: Record<string, unknown>): string {
  const dir = join(import.meta.dirname, 'results');
  mkdirSync(dir, { recursive: true });
  const body = `${JSON.stringify({ benchmark: name, environment: environment(), ...result }, null, 2)}\n`;
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const file = join(dir, `${name}-${stamp}.json`);
  writeFileSync(file, body);
  writeFileSync(join(dir, `${name}-latest.json`), body);
  return file;
}

export function peakRssMiB(): number {
  return Math.round(process.resourceUsage().maxRSS / 1024);
}
