import { Captioner } from '../src/captioner/captioner.js';
import { DecoderRun } from '../src/captioner/decoder-session.js';
import { CAPFILT_DECODING } from '../src/core/defaults.js';
import type { TextScore } from '../src/core/types.js';
import { GRAPHS, IO } from '../src/model/io-names.js';
import { readManifest } from '../src/model/manifest.js';
import { float32, ModelSessions } from '../src/model/runtime/runtime.js';
import { crossCacheFor } from './stage-runs.js';

/**
 * What int8 changes against fp32 on the same inputs: score deltas and keep/drop flips, greedy
 * captions, and the decoder's next-token choice with the fp32 caption fed to both (teacher
 * forcing), which random weights make the fair test: their next-token distributions are so flat
 * that one different token early sends a free-running caption elsewhere.
 */

export interface ScoreComparison {
  texts: number;
  itmMaxDelta: number;
  itmMeanDelta: number;
  itcMaxDelta: number;
  itcMeanDelta: number;
  /** keep/drop at the threshold equal to fp32's */
  agree: number;
  /** fp32 scores within itmMaxDelta of the threshold: the only texts int8 could flip */
  nearThreshold: number;
  /** fp32 scores within 0.01 of the threshold: how crowded the threshold is, whatever int8 does */
  within001: number;
  /** the largest distance of a flipped text's fp32 score from the threshold (0 without flips) */
  flipMaxDistance: number;
}

export function compareScores(fp32: TextScore[][], int8: TextScore[][], threshold: number): ScoreComparison {
  const a = fp32.flat();
  const b = int8.flat();
  const itm = a.map((s, i) => Math.abs(s.itm - b[i].itm));
  const itc = a.map((s, i) => Math.abs(s.itc - b[i].itc));
  const max = (xs: number[]) => Math.max(0, ...xs);
  const mean = (xs: number[]) => xs.reduce((x, y) => x + y, 0) / Math.max(1, xs.length);
  const flipped = a.filter((s, i) => s.itm > threshold !== b[i].itm > threshold);
  return {
    texts: a.length,
    itmMaxDelta: max(itm),
    itmMeanDelta: mean(itm),
    itcMaxDelta: max(itc),
    itcMeanDelta: mean(itc),
    agree: a.length - flipped.length,
    nearThreshold: a.filter((s) => Math.abs(s.itm - threshold) <= max(itm)).length,
    within001: a.filter((s) => Math.abs(s.itm - threshold) <= 0.01).length,
    flipMaxDistance: max(flipped.map((s) => Math.abs(s.itm - threshold))),
  };
}

/**
 * The Wilson score interval of a proportion (95 % with z = 1.96): what `agree` of `texts` says about
 * the agreement rate itself, since a few hundred texts cannot tell 98 % from 99 % by themselves.
 */
export function wilsonInterval(successes: number, n: number, z = 1.96): [number, number] {
  if (n === 0) return [0, 1];
  const p = successes / n;
  const z2 = z * z;
  const centre = (p + z2 / (2 * n)) / (1 + z2 / n);
  const half = (z / (1 + z2 / n)) * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n));
  return [Math.max(0, centre - half), Math.min(1, centre + half)];
}

/** BLIP's greedy captions (repetition penalty 1.0, as BLIP's beam/greedy branch). */
export async function greedyCaptions(
  dir: string,
  samples: { key: string; pixels: Float32Array }[],
): Promise<number[][]> {
  const captioner = await Captioner.load(dir);
  try {
    const options = { ...CAPFILT_DECODING, strategy: 'greedy' as const, repetitionPenalty: 1 };
    return (await captioner.caption(samples, options)).map((c) => c[0].tokenIds);
  } finally {
    await captioner.close();
  }
}

/** A captioner's sessions, images encoded into its cross-attention cache, and a decoder over them. */
async function decoderOver(
  dir: string,
  pixels: Float32Array[],
): Promise<{ run: DecoderRun; close: () => Promise<void> }> {
  const manifest = await readManifest(dir);
  const sessions = new ModelSessions(dir, manifest, { kind: 'cpu', deviceId: 0 }, {});
  const cache = crossCacheFor(manifest, pixels.length);
  const { imageSize: size, numChannels: c } = manifest.vision;
  for (const [i, p] of pixels.entries()) {
    const vision = await (await sessions.get(GRAPHS.vision)).run({
      [IO.pixelValues]: float32(p, [1, c, size, size]),
    });
    await (await sessions.get(GRAPHS.crossKv)).run(
      { [IO.imageEmbeds]: vision[IO.imageEmbeds] },
      cache.fetches(i, 1),
    );
  }
  const run = new DecoderRun(await sessions.get(GRAPHS.decoder), cache, pixels.length);
  return { run, close: () => sessions.release() };
}

export interface TeacherForced {
  /** positions compared (every row, every step up to its fp32 caption's end) */
  positions: number;
  /** int8's argmax equal to fp32's */
  argmaxAgree: number;
  /** largest |Δ logit| over the vocabulary, any position */
  logitMaxDelta: number;
  /** fp32's top-1 − top-2 logit margin: the smallest and the median */
  marginMin: number;
  marginMedian: number;
}

function top2(logits: Float32Array, offset: number, vocab: number): { best: number; margin: number } {
  let best = 0;
  let second = -1;
  for (let v = 1; v < vocab; v++) {
    const x = logits[offset + v];
    if (x > logits[offset + best]) {
      second = best;
      best = v;
    } else if (second < 0 || x > logits[offset + second]) second = v;
  }
  return { best, margin: logits[offset + best] - logits[offset + second] };
}

/**
 * Feed each fp32 greedy caption (`sequences`, prompt included) to both decoders and compare the
 * next-token choice at every position the caption has.
 */
export async function teacherForced(
  fp32Dir: string,
  int8Dir: string,
  pixels: Float32Array[],
  sequences: number[][],
  promptLength: number,
): Promise<TeacherForced> {
  const a = await decoderOver(fp32Dir, pixels);
  const b = await decoderOver(int8Dir, pixels);
  const vocab = (await readManifest(fp32Dir)).text.vocabSize;
  const pad = (await readManifest(fp32Dir)).specialIds.pad;
  const result = { positions: 0, argmaxAgree: 0, logitMaxDelta: 0 };
  const margins: number[] = [];
  try {
    const longest = Math.max(...sequences.map((s) => s.length));
    let tokens = sequences.map((s) => s.slice(0, promptLength));
    for (let p = promptLength; p < longest; p++) {
      const x = await a.run.step(tokens);
      const y = await b.run.step(tokens);
      sequences.forEach((s, r) => {
        if (p >= s.length) return;
        const fx = top2(x, r * vocab, vocab);
        const fy = top2(y, r * vocab, vocab);
        for (let v = 0; v < vocab; v++)
          result.logitMaxDelta = Math.max(
            result.logitMaxDelta,
            Math.abs(x[r * vocab + v] - y[r * vocab + v]),
          );
        result.positions++;
        if (fx.best === fy.best) result.argmaxAgree++;
        margins.push(fx.margin);
      });
      tokens = sequences.map((s) => [s[p] ?? pad]);
    }
  } finally {
    await a.close();
    await b.close();
  }
  margins.sort((m, n) => m - n);
  return {
    ...result,
    marginMin: margins[0] ?? 0,
    marginMedian: margins[Math.floor(margins.length / 2)] ?? 0,
  };
}
