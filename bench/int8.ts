import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { Captioner } from '../src/captioner/captioner.js';
import { CAPFILT_DECODING, CAPFILT_FILTER } from '../src/core/defaults.js';
import { Filter } from '../src/filter/filter.js';
import { readManifest } from '../src/model/manifest.js';
import { compareScores, greedyCaptions, teacherForced, wilsonInterval } from './int8-checks.js';
import {
  type BenchPrecision,
  type BenchSource,
  benchModel,
  benchModels,
  FIXTURE,
  syntheticPixels,
} from './models.js';
import { machineLine, printTable, type Row, writeResult } from './report.js';
import { CAPTION_TEXTS, WEB_TEXTS } from './texts.js';
import { stats } from './timing.js';

/**
 * `npm run bench -- int8 [--on fixture,base]`: int8 against fp32 on the same models and inputs in
 * one process: ITM/ITC deltas, keep/drop agreement at the CapFilt threshold, greedy captions, the
 * decoder's teacher-forced argmax agreement, and the speed-up, fp32 and int8 runs alternated.
 */
interface Sample {
  key: string;
  pixels: Float32Array;
  texts: string[];
}

const FIXTURE_IMAGES = ['0_gradient', '1_shapes', '2_noise', '3_stripes', '4_gray', '5_alpha'];
const TEXTS_PER_IMAGE = 12;

function fixturePixels(name: string): Float32Array {
  const buf = readFileSync(join(FIXTURE, 'bins', `pixel_values_${name}_png.bin`));
  return new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
}

/** The fixture's texts and the benchmark texts, in one pool the images take turns through. */
function textPool(): string[] {
  const reference = JSON.parse(readFileSync(join(FIXTURE, 'reference.json'), 'utf8')) as {
    filter: { pairs: Record<string, { text: string }[]> };
  };
  const fixture = Object.values(reference.filter.pairs).flatMap((pairs) => pairs.map((p) => p.text));
  return [...new Set([...fixture, ...WEB_TEXTS, ...CAPTION_TEXTS])];
}

/** `images` samples: the fixture's own images first when the model takes their size, then synthetic ones. */
async function samplesFor(dir: string, images: number): Promise<Sample[]> {
  const size = (await readManifest(dir)).vision.imageSize;
  const own = size === 64 ? FIXTURE_IMAGES : [];
  const pool = textPool();
  return Array.from({ length: images }, (_, i) => ({
    key: own[i] ?? `synthetic-${i}`,
    pixels: own[i] ? fixturePixels(own[i]) : syntheticPixels(size, i + 1),
    texts: Array.from({ length: TEXTS_PER_IMAGE }, (_, j) => pool[(i * TEXTS_PER_IMAGE + j) % pool.length]),
  }));
}

/** Scores at the CapFilt threshold, and how many texts a recheck set scored again in fp32. */
async function scores(dir: string, samples: Sample[]) {
  const filter = await Filter.load(dir);
  try {
    return { scores: await filter.score(samples, CAPFILT_FILTER), rechecked: filter.rechecked };
  } finally {
    await filter.close();
  }
}

/** The fp32 recheck margin of the `recheck` variant. */
const RECHECK_MARGIN = 0.01;

/**
 * The filter variants `--variants` can compare, each the default int8 recipe (`int8`) with more of
 * the text encoder kept fp32 (`layers`: the text encoder's layer count): `last-layer` its last
 * layer (in ITM and ITC), `cross` the cross-attention (query and output in ITM, the keys and values
 * of the cross K/V graph), `text` all of it (ITM, ITC and cross K/V fp32: only the vision encoder
 * int8); or `recheck`, images with a text within RECHECK_MARGIN of the threshold scored again in fp32.
 */
const VARIANTS: Record<
  string,
  { label: string; of: (int8: BenchPrecision, layers: number) => BenchPrecision }
> = {
  default: { label: 'heads', of: (p) => p },
  'last-layer': {
    label: 'heads + last-layer',
    of: (p, layers) => ({
      ...p,
      alsoFp32: {
        name: 'last-layer',
        pattern: new RegExp(`^text_encoder\\.encoder\\.layer\\.${layers - 1}\\.`),
      },
    }),
  },
  cross: {
    label: 'heads + cross',
    of: (p) => ({ ...p, alsoFp32: { name: 'cross', pattern: /crossattention|cross_kv/ } }),
  },
  text: {
    label: 'heads + text',
    of: (p) => ({ ...p, alsoFp32: { name: 'text', pattern: /^text_encoder\./ } }),
  },
  recheck: {
    label: `heads; fp32 recheck within ${RECHECK_MARGIN}`,
    of: (p) => ({ ...p, recheckMargin: RECHECK_MARGIN }),
  },
};

const SPIN_DOWN_MS = 200;

/** Per counted round, ms per image: wall time and CPU time (robust to other processes). */
interface Times {
  wall: number[];
  cpu: number[];
}

/**
 * Time one call. Each engine's sessions keep their own thread pool, whose threads spin a while
 * after a call: without the pause, the engine timed next would share the cores with them.
 */
async function timed<T>(times: Times, count: boolean, images: number, fn: () => Promise<T>): Promise<T> {
  await sleep(SPIN_DOWN_MS);
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const out = await fn();
  const c = process.cpuUsage(c0);
  if (count) {
    times.wall.push((performance.now() - t0) / images);
    times.cpu.push((c.user + c.system) / 1000 / images);
  }
  return out;
}

/** 0 … n−1 starting at r mod n. */
function rotated(n: number, r: number): number[] {
  return Array.from({ length: n }, (_, i) => (i + r) % n);
}

/**
 * ms per image of captioning with each captioner and of filtering with each filter, all run in
 * turn each round, one warm-up round then `rounds` counted. Every filter scores the same texts:
 * the web text and the first captioner's (fp32) caption.
 */
async function speed(
  captionerDirs: string[],
  filterDirs: string[],
  samples: Sample[],
  rounds: number,
): Promise<{ captioners: Times[]; filters: Times[]; rechecked: number[] }> {
  const captioners = await Promise.all(captionerDirs.map((d) => Captioner.load(d)));
  const filters = await Promise.all(filterDirs.map((d) => Filter.load(d)));
  const times = {
    captioners: captioners.map(() => ({ wall: [], cpu: [] }) as Times),
    filters: filters.map(() => ({ wall: [], cpu: [] }) as Times),
  };
  const n = samples.length;
  try {
    for (let r = 0; r <= rounds; r++) {
      // Round 0 warms up (allocations, kernel choice) and is not counted.
      // Each round starts with another engine, so none is always timed first or last.
      const captions: Awaited<ReturnType<Captioner['caption']>>[] = [];
      for (const i of rotated(captioners.length, r))
        captions[i] = await timed(times.captioners[i], r > 0, n, () =>
          captioners[i].caption(samples, CAPFILT_DECODING),
        );
      const texts = samples.map((s, k) => ({ ...s, texts: [s.texts[0], captions[0][k][0].text] }));
      for (const i of rotated(filters.length, r))
        await timed(times.filters[i], r > 0, n, () => filters[i].score(texts, CAPFILT_FILTER));
    }
  } finally {
    await Promise.all([...captioners, ...filters].map((e) => e.close()));
  }
  // Share of the texts timed (web text + caption per image) that a recheck set scored again.
  const rechecked = filters.map((f) => f.rechecked / (2 * n * (rounds + 1)));
  return { ...times, rechecked };
}

/** The fp32 captioner's prompt length and caption text (prompt removed), read once. */
interface CaptionText {
  promptLength: number;
  text: (ids: number[]) => string;
}

async function captionTextOf(dir: string): Promise<CaptionText> {
  const captioner = await Captioner.load(dir);
  try {
    const prompt = captioner.promptIds(CAPFILT_DECODING.prompt);
    return { promptLength: prompt.length, text: (ids) => captioner.captionText(ids, prompt) };
  } finally {
    await captioner.close();
  }
}

const median = (xs: number[]) => stats(xs).median;
const ratio = (a: number[], b: number[]) => (median(a) / median(b)).toFixed(2);
const plus = (a: number[], b: number[]) => a.map((x, i) => x + b[i]);
const pct = (k: number, n: number) => `${k}/${n} = ${((100 * k) / n).toFixed(1)} %`;

interface Evaluated {
  captioner: Row;
  filters: Row[];
}

async function evaluate(
  name: string,
  source: BenchSource,
  int8: BenchPrecision,
  variants: string[],
  images: number,
  rounds: number,
): Promise<Evaluated> {
  const fp32 = await benchModels(source);
  const captionerInt8 = await benchModel(source, 'captioner', int8);
  const layers = (await readManifest(fp32.filter)).text.numLayers;
  const filters: string[] = [];
  for (const v of variants) filters.push(await benchModel(source, 'filter', VARIANTS[v].of(int8, layers)));
  const caption = await captionTextOf(fp32.captioner);
  const samples = await samplesFor(fp32.filter, images);
  const captions = await greedyCaptions(fp32.captioner, samples);
  const int8Captions = await greedyCaptions(captionerInt8, samples);
  const scored = samples.map((s, i) => ({ ...s, texts: [...s.texts, caption.text(captions[i])] }));
  const reference = (await scores(fp32.filter, scored)).scores;
  const pixels = samples.map((s) => s.pixels);
  const forced = await teacherForced(fp32.captioner, captionerInt8, pixels, captions, caption.promptLength);
  const t = await speed(
    [fp32.captioner, captionerInt8],
    [fp32.filter, ...filters],
    samples.slice(0, Math.min(images, 16)),
    rounds,
  );
  const [capA, capB] = t.captioners;
  const [filtA, ...filtB] = t.filters;
  const rows: Row[] = [];
  for (const [i, v] of variants.entries()) {
    const int8Scores = await scores(filters[i], scored);
    const cmp = compareScores(reference, int8Scores.scores, CAPFILT_FILTER.threshold);
    rows.push({
      models: name,
      kept_fp32: VARIANTS[v].label,
      texts: cmp.texts,
      itm_max_delta: cmp.itmMaxDelta.toExponential(2),
      itm_mean_delta: cmp.itmMeanDelta.toExponential(2),
      itc_max_delta: cmp.itcMaxDelta.toExponential(2),
      agree: pct(cmp.agree, cmp.texts),
      agree_95ci: wilsonInterval(cmp.agree, cmp.texts)
        .map((x) => `${(100 * x).toFixed(1)} %`)
        .join(' – '),
      near_threshold: cmp.nearThreshold,
      within_001: cmp.within001,
      flip_max_dist: cmp.flipMaxDistance.toExponential(1),
      rechecked: pct(int8Scores.rechecked, cmp.texts),
      rechecked_timed: `${(100 * t.rechecked[i + 1]).toFixed(1)} %`,
      filter_speedup: ratio(filtA.wall, filtB[i].wall),
      filter_speedup_cpu: ratio(filtA.cpu, filtB[i].cpu),
      capfilt_speedup: ratio(plus(capA.wall, filtA.wall), plus(capB.wall, filtB[i].wall)),
      capfilt_speedup_cpu: ratio(plus(capA.cpu, filtA.cpu), plus(capB.cpu, filtB[i].cpu)),
    });
  }
  return {
    captioner: {
      models: name,
      captions: captions.length,
      greedy_equal: `${captions.filter((c, i) => c.join() === int8Captions[i].join()).length}/${captions.length}`,
      argmax_agree: pct(forced.argmaxAgree, forced.positions),
      logit_max_delta: forced.logitMaxDelta.toFixed(4),
      fp32_margin_min_median: `${forced.marginMin.toFixed(4)} / ${forced.marginMedian.toFixed(4)}`,
      caption_speedup: ratio(capA.wall, capB.wall),
      caption_speedup_cpu: ratio(capA.cpu, capB.cpu),
      fp32_capfilt_ms_per_img: median(plus(capA.wall, filtA.wall)).toFixed(0),
    },
    filters: rows,
  };
}

export async function main(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      on: { type: 'string', default: 'fixture,base' },
      images: { type: 'string' },
      rounds: { type: 'string', default: '2' },
      variants: { type: 'string', default: 'default' },
      'quantize-decoder': { type: 'boolean', default: false },
    },
  });
  const variants = (values.variants as string).split(',');
  for (const v of variants)
    if (!VARIANTS[v]) throw new Error(`unknown variant ${v}: one of ${Object.keys(VARIANTS)}`);
  const int8: BenchPrecision = { precision: 'int8', quantizeDecoder: values['quantize-decoder'] };
  const results: Evaluated[] = [];
  process.stdout.write(`${machineLine()}\n`);
  for (const on of (values.on as string).split(',')) {
    if (on !== 'fixture' && on !== 'base') throw new Error(`--on takes fixture and/or base, not ${on}`);
    // The fixture: its own six images; base: synthetic images.
    const images = Number(values.images ?? (on === 'fixture' ? FIXTURE_IMAGES.length : 24));
    const name = on === 'fixture' ? 'fixture (tiny)' : 'random base';
    results.push(await evaluate(name, on, int8, variants, images, Number(values.rounds)));
  }
  const how =
    'same models and inputs, one process; speed-ups are fp32 time / int8 time (medians), wall and CPU';
  printTable(
    `int8 captioner (decoder ${int8.quantizeDecoder ? 'int8' : 'fp32'}) vs fp32, ${how}`,
    results.map((r) => r.captioner),
  );
  printTable(
    `int8 filter vs fp32, keep iff ITM > ${CAPFILT_FILTER.threshold}; capfilt = caption + filter, ${how}`,
    results.flatMap((r) => r.filters),
  );
  process.stdout.write(`${machineLine()}\n`);
  const file = writeResult('int8', { quantizeDecoder: int8.quantizeDecoder, variants, results });
  process.stdout.write(`\nwrote ${file}\n`);
}
