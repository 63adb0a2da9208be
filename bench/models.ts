import { join } from 'node:path';
import { CAPFILT_FILTER } from '../src/core/defaults.js';
import { importModel } from '../src/model/convert/import.js';
import { type RandomPreset, writeRandomCheckpoint } from '../src/model/convert/random.js';
import { isCurrentModelDir, readManifest } from '../src/model/manifest.js';
import { BertTokenizer, encodeForItm } from '../src/model/runtime/tokenizer.js';

const CACHE = join(import.meta.dirname, '..', '.cache', 'bench');

/**
 * Converted random-weight models of a preset, made once and cached under .cache/bench (the
 * `capfilt models random` + `capfilt models import` path a user would take).
 */
export async function benchModels(preset: RandomPreset): Promise<{ captioner: string; filter: string }> {
  const out = { captioner: join(CACHE, preset, 'captioner'), filter: join(CACHE, preset, 'filter') };
  for (const kind of ['captioner', 'filter'] as const) {
    if (isCurrentModelDir(out[kind])) continue;
    const raw = join(CACHE, preset, `hf-${kind}`);
    process.stderr.write(`bench: writing a random ${preset} ${kind} and importing it (once)\n`);
    await writeRandomCheckpoint({ preset, kind, out: raw, seed: 1 });
    await importModel(raw, out[kind]);
  }
  return out;
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
