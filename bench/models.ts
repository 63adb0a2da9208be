import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { CAPFILT_FILTER } from '../src/core/defaults.js';
import { importModel } from '../src/model/convert/import.js';
import { type RandomPreset, writeRandomCheckpoint } from '../src/model/convert/random.js';
import { isCurrentModelDir, readManifest } from '../src/model/manifest.js';
import { BertTokenizer, encodeForItm } from '../src/model/runtime/tokenizer.js';

const CACHE = join(import.meta.dirname, '..', '.cache', 'bench');
export const FIXTURE = join(import.meta.dirname, '..', 'test', 'fixtures', 'blip-tiny');

export interface BenchModels {
  captioner: string;
  filter: string;
}

/**
 * How a benchmark's models are imported: fp32, or int8 (optionally with the decoder quantized, or
 * with more weights kept fp32: `alsoFp32`, named for the cache folder).
 */
export interface BenchPrecision {
  precision: 'fp32' | 'int8';
  quantizeDecoder?: boolean;
  alsoFp32?: { name: string; pattern: RegExp };
  /** A filter's fp32 recheck margin (`models import --recheck-margin`). */
  recheckMargin?: number;
}

function suffix(p: BenchPrecision): string {
  if (p.precision === 'fp32') return '';
  const recheck = p.recheckMargin === undefined ? '' : `-recheck${p.recheckMargin}`;
  return `-int8${p.quantizeDecoder ? '-all' : ''}${p.alsoFp32 ? `-${p.alsoFp32.name}-fp32` : ''}${recheck}`;
}

function importOptions(p: BenchPrecision) {
  return {
    precision: p.precision,
    quantizeDecoder: p.quantizeDecoder,
    int8AlsoFp32: p.alsoFp32?.pattern,
    recheckMargin: p.recheckMargin,
  };
}

type Kind = 'captioner' | 'filter';

/** Where the models come from: random weights of a preset, or the test fixture's tiny checkpoints. */
export type BenchSource = RandomPreset | 'fixture';

/**
 * One converted model, made once and cached under .cache/bench: a random-weight checkpoint of a
 * preset (the `capfilt models random` + `capfilt models import` path a user would take), or the
 * test fixture's tiny checkpoint (untrained, but with scores spread from 0 to 1).
 */
export async function benchModel(
  source: BenchSource,
  kind: Kind,
  precision: BenchPrecision = { precision: 'fp32' },
): Promise<string> {
  const out = join(CACHE, source, `${kind}${suffix(precision)}`);
  if (isCurrentModelDir(out)) return out;
  let raw = join(FIXTURE, kind);
  if (source !== 'fixture') {
    raw = join(CACHE, source, `hf-${kind}`);
    if (!existsSync(join(raw, 'config.json'))) {
      process.stderr.write(`bench: writing a random ${source} ${kind} (once)\n`);
      await writeRandomCheckpoint({ preset: source, kind, out: raw, seed: 1 });
    }
  }
  process.stderr.write(`bench: importing ${raw} as ${suffix(precision).slice(1) || 'fp32'} (once)\n`);
  await importModel(raw, out, importOptions(precision));
  return out;
}

/** The captioner and filter of `benchModel`. */
export async function benchModels(
  source: BenchSource,
  precision: BenchPrecision = { precision: 'fp32' },
): Promise<BenchModels> {
  return {
    captioner: await benchModel(source, 'captioner', precision),
    filter: await benchModel(source, 'filter', precision),
  };
}

/** Deterministic pseudo-image pixels (already normalised), so runs are comparable. */
export function syntheticPixels(size: number, seed: number): Float32Array {
  const a = new Float32Array(3 * size * size);
  let x = seed * 2654435761;
  for (let i = 0; i < a.length; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    a[i] = ((x >>> 8) / 16777216) * 4 - 2;
  }
  return a;
}

/** Token length of each text as the filter runs it (BLIP's tokenizer, capped at the filter's max length). */
export async function textLengths(filterDir: string): Promise<(texts: readonly string[]) => number[]> {
  const manifest = await readManifest(filterDir);
  const tokenizer = await BertTokenizer.fromDir(filterDir, manifest.specialIds);
  return (texts) =>
    texts.map(
      (t) =>
        encodeForItm(tokenizer, t, { maxLength: CAPFILT_FILTER.maxTextLength, firstToken: 'cls' }).inputIds
          .length,
    );
}
