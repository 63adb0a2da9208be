import { parseArgs } from 'node:util';
import { Captioner } from '../src/captioner/captioner.js';
import {
  CAPFILT_DECODING,
  CAPFILT_FILTER,
  DEFAULT_BATCH_SIZE,
  DEFAULT_ENGINE,
} from '../src/core/defaults.js';
import { Filter } from '../src/filter/filter.js';
import { MAX_TEXTS_PER_CALL } from '../src/filter/text-calls.js';
import type { RandomPreset } from '../src/model/convert/random.js';
import { type ModelManifest, readManifest } from '../src/model/manifest.js';
import { ModelSessions } from '../src/model/runtime/runtime.js';
import { BertTokenizer, encodeForItm } from '../src/model/runtime/tokenizer.js';
import { type Ceiling, measureCeiling, measureReadBandwidth } from './ceiling.js';
import {
  captionBytes,
  captionFlops,
  captionWorkGflop,
  crossKvFlops,
  type Dims,
  filterWorkGflop,
  itcTextFlops,
  itmFlops,
  visionFlops,
} from './flops.js';
import { benchModels, syntheticPixels, textLengths } from './models.js';
import { machineLine, printTable, type Row, writeResult } from './report.js';
import {
  crossCacheFor,
  runCrossKv,
  runDecode,
  runItc,
  runItm,
  runVision,
  type StageModel,
  type TextWork,
} from './stage-runs.js';
import { textsOfImage } from './texts.js';
import { type Timing, timeRuns } from './timing.js';

/**
 * `npm run bench` (or `npm run bench -- stages`): each CapFilt stage and the whole of it against
 * this machine's own fp32 GEMM ceiling, measured through onnxruntime-node right before each stage
 * (the machine is shared and noisy). Decode is also set against the memory read bandwidth.
 */
interface Setup {
  threads: number;
  runs: number;
  images: number;
  rows: number;
  visionBatch: number;
}

interface Measured {
  stage: string;
  unit: string;
  /** units per timed run */
  units: number;
  /** GFLOP per run, executed (padding included) and useful (padding left out) */
  gflop: number;
  usefulGflop: number;
  timing: Timing;
  ceiling: Ceiling;
  bytes?: number;
  bandwidthGBs?: number;
}

async function measure(
  s: Setup,
  what: Omit<Measured, 'timing' | 'ceiling'>,
  run: () => Promise<unknown>,
): Promise<Measured> {
  const ceiling = await measureCeiling(s.threads);
  const bandwidthGBs = what.bytes ? await measureReadBandwidth(s.threads) : undefined;
  const timing = await timeRuns(run, s.runs, 1);
  return { ...what, timing, ceiling, bandwidthGBs };
}

function row(m: Measured): Row {
  const wallS = m.timing.wallMs.median / 1000;
  const gflops = m.gflop / wallS;
  const perCpuS = m.gflop / (m.timing.cpuMs.min / 1000);
  return {
    stage: m.stage,
    unit: m.unit,
    ms_per_unit: (m.timing.wallMs.median / m.units).toFixed(1),
    units_per_s: (m.units / wallS).toFixed(2),
    gflop_per_unit: (m.gflop / m.units).toFixed(3),
    useful_pct: ((100 * m.usefulGflop) / m.gflop).toFixed(0),
    gflops: gflops.toFixed(1),
    ceiling: m.ceiling.gflops.toFixed(1),
    of_ceiling: `${((100 * gflops) / m.ceiling.gflops).toFixed(0)} %`,
    of_ceiling_cpu: `${((100 * perCpuS) / m.ceiling.cpuGflops).toFixed(0)} %`,
    gb_per_s: m.bytes ? (m.bytes / 1e9 / wallS).toFixed(1) : '',
    bandwidth: m.bandwidthGBs ? m.bandwidthGBs.toFixed(1) : '',
    of_bandwidth:
      m.bytes && m.bandwidthGBs ? `${((100 * m.bytes) / 1e9 / wallS / m.bandwidthGBs).toFixed(0)} %` : '',
  };
}

const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
const textGflop = (d: Dims, f: (d: Dims, t: number) => number, lengths: number[]) =>
  sum(lengths.map((t) => f(d, t))) / 1e9;

/** A model's sessions on the CPU with capfilt's options (each opened by its first run, a warm-up). */
async function openModel(dir: string, threads: number): Promise<StageModel> {
  const manifest = await readManifest(dir);
  const sessions = new ModelSessions(
    dir,
    manifest,
    { kind: 'cpu', deviceId: 0 },
    { intraOpThreads: threads },
  );
  return { manifest, sessions };
}

/** Vision, cross K/V and decode on the captioner. */
async function captionerStages(dir: string, s: Setup, prompt: number[]): Promise<Measured[]> {
  const model = await openModel(dir, s.threads);
  const d: Dims = model.manifest;
  const total = CAPFILT_DECODING.maxLength;
  const cache = crossCacheFor(model.manifest, Math.max(s.images, s.rows));
  try {
    const embeds = await runVision(model, s.visionBatch, s.visionBatch);
    const out = [
      await measure(
        s,
        {
          stage: 'vision',
          unit: 'image',
          units: s.images,
          gflop: (s.images * visionFlops(d)) / 1e9,
          usefulGflop: (s.images * visionFlops(d)) / 1e9,
        },
        () => runVision(model, s.images, s.visionBatch),
      ),
      await measure(
        s,
        {
          stage: 'cross K/V',
          unit: 'image',
          units: s.images,
          gflop: (s.images * crossKvFlops(d)) / 1e9,
          usefulGflop: (s.images * crossKvFlops(d)) / 1e9,
        },
        () => runCrossKv(model, embeds, s.images, cache),
      ),
    ];
    await runCrossKv(model, embeds, s.rows, cache);
    const gflop = (s.rows * captionFlops(d, prompt.length, total)) / 1e9;
    const weightBytes = model.manifest.precision === 'fp16' ? 2 : 4;
    out.push(
      await measure(
        s,
        {
          stage: `decode ${prompt.length}+${total - prompt.length}, ${s.rows} rows`,
          unit: 'caption',
          units: s.rows,
          gflop,
          usefulGflop: gflop,
          bytes: captionBytes(d, s.rows, prompt.length, total, weightBytes),
        },
        () => runDecode(model, cache, s.rows, prompt, total),
      ),
    );
    return out;
  } finally {
    await model.sessions.release();
  }
}

/** ITM and ITC on the filter, over a web text and a caption per image. */
async function filterStages(dir: string, s: Setup): Promise<Measured[]> {
  const model = await openModel(dir, s.threads);
  const d: Dims = model.manifest;
  const tokenizer = await BertTokenizer.fromDir(dir, model.manifest.specialIds);
  const encode = (firstToken: 'enc' | 'cls') =>
    Array.from({ length: s.images }, (_, i) =>
      textsOfImage(i).map((t) =>
        encodeForItm(tokenizer, t, { maxLength: CAPFILT_FILTER.maxTextLength, firstToken }),
      ),
    );
  const cache = crossCacheFor(model.manifest, s.images);
  try {
    await runCrossKv(model, await runVision(model, s.visionBatch, s.visionBatch), s.images, cache);
    const texts = s.images * 2;
    let work: TextWork = await runItm(model, cache, encode(CAPFILT_FILTER.firstToken), MAX_TEXTS_PER_CALL);
    const itm = await measure(
      s,
      {
        stage: 'ITM',
        unit: 'text',
        units: texts,
        gflop: textGflop(d, itmFlops, work.executed),
        usefulGflop: textGflop(d, itmFlops, work.useful),
      },
      () => runItm(model, cache, encode(CAPFILT_FILTER.firstToken), MAX_TEXTS_PER_CALL),
    );
    work = await runItc(model, encode('cls'), MAX_TEXTS_PER_CALL);
    const itc = await measure(
      s,
      {
        stage: 'ITC text',
        unit: 'text',
        units: texts,
        gflop: textGflop(d, itcTextFlops, work.executed),
        usefulGflop: textGflop(d, itcTextFlops, work.useful),
      },
      () => runItc(model, encode('cls'), MAX_TEXTS_PER_CALL),
    );
    return [itm, itc];
  } finally {
    await model.sessions.release();
  }
}

/** The whole of CapFilt through capfilt's engines: a caption per image, then ITM + ITC on web text + caption. */
async function endToEnd(models: { captioner: string; filter: string }, s: Setup): Promise<Measured> {
  const engine = { batchSize: s.rows, visionBatchSize: s.visionBatch, intraOpThreads: s.threads };
  const captioner = await Captioner.load(models.captioner, engine);
  const filter = await Filter.load(models.filter, engine);
  const lengthsOf = await textLengths(models.filter);
  try {
    const size = captioner.manifest.vision.imageSize;
    const samples = Array.from({ length: s.images }, (_, i) => ({
      key: `img-${i}`,
      pixels: syntheticPixels(size, i + 1),
    }));
    const prompt = captioner.promptIds(CAPFILT_DECODING.prompt).length;
    let gflop = 0;
    const once = async () => {
      const captions = await captioner.caption(samples, CAPFILT_DECODING);
      const pairs = samples.map((x, i) => ({ ...x, texts: [textsOfImage(i)[0], captions[i][0].text] }));
      await filter.score(pairs, CAPFILT_FILTER);
      gflop =
        captionWorkGflop(
          captioner.manifest,
          s.images,
          prompt,
          captions.map((c) => c[0].tokenIds.length),
        ) + filterWorkGflop(filter.manifest, s.images, lengthsOf(pairs.flatMap((p) => p.texts)));
    };
    await once();
    const ceiling = await measureCeiling(s.threads);
    const timing = await timeRuns(once, s.runs, 0);
    return {
      stage: 'CapFilt end to end',
      unit: 'image',
      units: s.images,
      gflop,
      usefulGflop: gflop,
      timing,
      ceiling,
    };
  } finally {
    await captioner.close();
    await filter.close();
  }
}

export async function main(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      preset: { type: 'string', default: 'base' },
      captioner: { type: 'string' },
      filter: { type: 'string' },
      images: { type: 'string', default: '8' },
      runs: { type: 'string', default: '3' },
      threads: { type: 'string', default: String(DEFAULT_ENGINE.intraOpThreads) },
      'vision-batch': { type: 'string', default: String(DEFAULT_ENGINE.visionBatchSize) },
      'skip-e2e': { type: 'boolean', default: false },
    },
  });
  const images = Number(values.images);
  const s: Setup = {
    threads: Number(values.threads),
    runs: Number(values.runs),
    images,
    rows: Math.min(images, DEFAULT_BATCH_SIZE),
    visionBatch: Number(values['vision-batch']),
  };
  const models =
    values.captioner && values.filter
      ? { captioner: values.captioner, filter: values.filter }
      : await benchModels(values.preset as RandomPreset);
  process.stdout.write(`${machineLine()}\n`);
  const manifest: ModelManifest = await readManifest(models.captioner);
  const prompt = await promptOf(models.captioner);
  const measured = [
    ...(await captionerStages(models.captioner, s, prompt)),
    ...(await filterStages(models.filter, s)),
  ];
  if (!values['skip-e2e']) measured.push(await endToEnd(models, s));
  const rows = measured.map(row);
  printTable(
    `CapFilt stages vs this machine's fp32 GEMM ceiling (re-measured before each stage), ${s.images} images, ${s.threads || 'all'} threads, median of ${s.runs} runs`,
    rows,
  );
  process.stdout.write(`${machineLine()}\n`);
  const file = writeResult('stages', { models, setup: s, precision: manifest.precision, rows, measured });
  process.stdout.write(`\nwrote ${file}\n`);
}

/** BLIP's prompt ids ([DEC] + the prompt's word pieces), as the captioner builds them. */
async function promptOf(dir: string): Promise<number[]> {
  const captioner = await Captioner.load(dir, { intraOpThreads: 1 });
  try {
    return captioner.promptIds(CAPFILT_DECODING.prompt);
  } finally {
    await captioner.close();
  }
}
