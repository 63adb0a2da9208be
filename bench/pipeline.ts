import { existsSync, readFileSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import sharp from 'sharp';
import { Captioner } from '../src/captioner/captioner.js';
import { CAPFILT_DECODING } from '../src/core/defaults.js';
import { runOptions } from '../src/core/options.js';
import { Filter } from '../src/filter/filter.js';
import { Storage } from '../src/io/storage/storage.js';
import type { RandomPreset } from '../src/model/convert/random.js';
import type { CaptionEngine, FilterEngine } from '../src/pipeline/engines.js';
import { runLocal } from '../src/pipeline/local-runner.js';
import { measureCeiling } from './ceiling.js';
import { captionWorkGflop, filterWorkGflop } from './flops.js';
import { benchModels, textLengths } from './models.js';
import { machineLine, peakRssMiB, printTable, type Row, writeResult } from './report.js';

sharp.cache(false);

const CACHE = join(import.meta.dirname, '..', '.cache', 'bench', 'pipeline');

/** Web-like JPEGs (noisy gradients, 320-512 px) and a JSONL manifest pointing at them. */
async function makeDataset(n: number): Promise<string> {
  const dir = join(CACHE, `input-${n}`);
  const manifest = join(dir, 'pairs.jsonl');
  if (existsSync(manifest)) return manifest;
  await mkdir(join(dir, 'img'), { recursive: true });
  const rows: string[] = [];
  for (let i = 0; i < n; i++) {
    const w = 320 + ((i * 37) % 192);
    const h = 320 + ((i * 53) % 192);
    const buf = Buffer.alloc(w * h * 3);
    let x = (i + 1) * 2654435761;
    for (let p = 0; p < w * h; p++) {
      x = (x * 1103515245 + 12345) >>> 0;
      const noise = (x >>> 24) & 31;
      buf[p * 3] = ((p % w) * 255) / w + noise;
      buf[p * 3 + 1] = (Math.floor(p / w) * 255) / h;
      buf[p * 3 + 2] = (i * 40 + noise) & 255;
    }
    await writeFile(
      join(dir, 'img', `${i}.jpg`),
      await sharp(buf, { raw: { width: w, height: h, channels: 3 } })
        .jpeg({ quality: 85 })
        .toBuffer(),
    );
    rows.push(JSON.stringify({ image: `img/${i}.jpg`, caption: `a colourful gradient picture number ${i}` }));
  }
  await writeFile(manifest, `${rows.join('\n')}\n`);
  return manifest;
}

/** Wraps the engines to add up the wall time spent inside model calls, and the GFLOP they did. */
function timed(
  captioner: Captioner,
  filter: Filter,
  lengthsOf: (texts: readonly string[]) => number[],
): {
  engines: { captioner: CaptionEngine; filter: FilterEngine };
  modelMs: () => number;
  gflop: () => number;
} {
  let ms = 0;
  let gflop = 0;
  const prompt = captioner.promptIds(CAPFILT_DECODING.prompt).length;
  const captionEngine: CaptionEngine = {
    modelId: captioner.modelId,
    manifest: captioner.manifest,
    pixels: (img) => captioner.pixels(img),
    caption: async (s, o) => {
      const t = performance.now();
      try {
        const captions = await captioner.caption(s, o);
        const lengths = captions.flat().map((c) => c.tokenIds.length);
        gflop += captionWorkGflop(captioner.manifest, s.length, prompt, lengths);
        return captions;
      } finally {
        ms += performance.now() - t;
      }
    },
  };
  const filterEngine: FilterEngine = {
    modelId: filter.modelId,
    manifest: filter.manifest,
    pixels: (img) => filter.pixels(img),
    score: async (s, o) => {
      const t = performance.now();
      try {
        const scores = await filter.score(s, o);
        gflop += filterWorkGflop(filter.manifest, s.length, lengthsOf(s.flatMap((x) => x.texts)));
        return scores;
      } finally {
        ms += performance.now() - t;
      }
    },
  };
  return {
    engines: { captioner: captionEngine, filter: filterEngine },
    modelMs: () => ms,
    gflop: () => gflop,
  };
}

/** A comparison figure, and where it comes from (bench/baselines/*.json). */
interface Baseline {
  name: string;
  secondsPerImage: number;
  appliesTo: { preset: RandomPreset; device: string };
  source: string;
  /** When and on what it was measured, as its file says. */
  measured?: string;
  machine?: string;
}

// The side-by-side figure: both systems measured in one session on the same machine.
const DEFAULT_BASELINE = join(import.meta.dirname, 'baselines', 'hf-transformers-4.40-cpu-side-by-side.json');

/** `--baseline <file>` (default: the checked-in Hugging Face figure) or `--baseline-s-per-image <s>`. */
function loadBaseline(file: string | undefined, seconds: string | undefined, preset: string): Baseline {
  if (seconds !== undefined) {
    return {
      name: 'given with --baseline-s-per-image',
      secondsPerImage: Number(seconds),
      appliesTo: { preset: preset as RandomPreset, device: 'cpu' },
      source: 'command line',
      measured: 'not stated (given on the command line)',
    };
  }
  return JSON.parse(readFileSync(file ?? DEFAULT_BASELINE, 'utf8')) as Baseline;
}

/**
 * End-to-end samples/s of the local runner (read, fetch+decode, caption, filter, write) and the
 * pipeline overhead = (end-to-end time - time inside the models) / time inside the models.
 */
export async function main(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      presets: { type: 'string', default: 'tiny,base' },
      pairs: { type: 'string' },
      'batch-size': { type: 'string', default: '16' },
      device: { type: 'string', default: 'cpu' },
      threads: { type: 'string', default: '0' },
      baseline: { type: 'string' },
      'baseline-s-per-image': { type: 'string' },
    },
  });
  const presets = (values.presets as string).split(',') as RandomPreset[];
  const baseline = loadBaseline(values.baseline, values['baseline-s-per-image'], presets.at(-1) ?? 'base');
  process.stdout.write(
    `comparing with ${baseline.name}: ${baseline.secondsPerImage} s/image (${baseline.appliesTo.preset} preset)\n` +
      `  measured: ${baseline.measured ?? 'not stated'}; on: ${baseline.machine ?? 'not stated'}\n` +
      `  source: ${baseline.source}\n` +
      '  (a figure from another day and machine: vs_baseline is only as good as that; the ceiling columns are from this run)\n',
  );
  const batchSize = Number(values['batch-size']);
  const rows: Row[] = [];
  for (const preset of presets) {
    const n = Number(values.pairs ?? (preset === 'tiny' ? 128 : 32));
    const models = await benchModels(preset);
    const manifest = await makeDataset(n);
    const engineOptions = {
      batchSize,
      device: values.device as 'cpu',
      intraOpThreads: Number(values.threads),
    };
    const captioner = await Captioner.load(models.captioner, engineOptions);
    const filter = await Filter.load(models.filter, engineOptions);
    const storage = new Storage();
    const options = runOptions({ input: { shardSize: Math.max(batchSize, Math.ceil(n / 2)) }, batchSize });
    const base = {
      captionerDir: '',
      filterDir: '',
      storage,
      options,
      progress: 'none' as const,
      log: () => {},
    };
    // Warm-up run on a few pairs: onnxruntime allocations, kernel choice, sharp/libvips start.
    const lengthsOf = await textLengths(models.filter);
    const warm = timed(captioner, filter, lengthsOf);
    const warmOut = join(CACHE, `out-warm-${preset}`);
    await rm(warmOut, { recursive: true, force: true });
    await runLocal({ ...base, engines: warm.engines, input: await makeDataset(batchSize), output: warmOut });

    const out = join(CACHE, `out-${preset}`);
    await rm(out, { recursive: true, force: true });
    const t = timed(captioner, filter, lengthsOf);
    const ceiling = await measureCeiling(Number(values.threads));
    const t0 = performance.now();
    const result = await runLocal({ ...base, engines: t.engines, input: manifest, output: out });
    const e2eMs = performance.now() - t0;
    const modelMs = t.modelMs();
    const stages = result.stats.reduce(
      (a, s) => {
        for (const k of Object.keys(a) as (keyof typeof a)[]) a[k] += s.timingsMs[k];
        return a;
      },
      { read: 0, decode: 0, caption: 0, filter: 0, write: 0 },
    );
    rows.push({
      preset,
      device: values.device as string,
      batch: batchSize,
      pairs: n,
      e2e_s: e2eMs / 1000,
      samples_per_s: n / (e2eMs / 1000),
      model_s: modelMs / 1000,
      caption_s: stages.caption / 1000,
      filter_s: stages.filter / 1000,
      decode_s_overlapped: stages.decode / 1000,
      write_s: stages.write / 1000,
      overhead_pct: ((e2eMs - modelMs) / modelMs) * 100,
      gflop_per_img: t.gflop() / n,
      ceiling_gflops: ceiling.gflops,
      // The models' GFLOP/s over the fp32 GEMM ceiling measured just before this run.
      model_of_ceiling: t.gflop() / (modelMs / 1000) / ceiling.gflops,
      e2e_of_ceiling: t.gflop() / (e2eMs / 1000) / ceiling.gflops,
      // Only meaningful for the model size and device the baseline was measured at.
      vs_baseline:
        preset === baseline.appliesTo.preset && values.device === baseline.appliesTo.device
          ? baseline.secondsPerImage / (e2eMs / 1000 / n)
          : null,
    });
    await captioner.close();
    await filter.close();
  }
  printTable(
    'capfilt run, end to end (JSONL manifest of local JPEGs, nucleus, 1 caption, ITM web + synthetic)',
    rows,
  );
  process.stdout.write(`${machineLine()}\n`);
  const file = writeResult('pipeline', { rows, baseline, peakRssMiB: peakRssMiB() });
  process.stdout.write(`\nwrote ${file}\n`);
}
