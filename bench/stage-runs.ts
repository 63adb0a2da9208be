import type * as ort from 'onnxruntime-node';
import { DecoderRun } from '../src/captioner/decoder-session.js';
import { padTexts, planScoring } from '../src/filter/text-calls.js';
import { GRAPHS, IO } from '../src/model/io-names.js';
import type { ModelManifest } from '../src/model/manifest.js';
import { CrossCache } from '../src/model/runtime/cross-cache.js';
import { float32, int64, type ModelSessions } from '../src/model/runtime/runtime.js';
import type { ItmEncoding } from '../src/model/runtime/tokenizer.js';
import { syntheticPixels } from './models.js';

/**
 * Each CapFilt stage alone, on a converted model's own sessions, with the shapes capfilt's
 * engines give them: vision in calls of `visionBatch` images, cross keys/values written in place
 * into a CrossCache, the decoder driven by capfilt's DecoderRun, ITM and ITC cut into calls by
 * the filter's own planScoring.
 */
export interface StageModel {
  manifest: ModelManifest;
  sessions: ModelSessions;
}

export function crossCacheFor(m: ModelManifest, rows: number): CrossCache {
  const t = m.text;
  const cache = new CrossCache(t.numLayers, t.numHeads, m.imageTokens, t.hiddenSize / t.numHeads);
  cache.reserve(rows);
  return cache;
}

/** Vision encoder over `images` synthetic images; returns image_embeds of the last call. */
export async function runVision(model: StageModel, images: number, visionBatch: number): Promise<ort.Tensor> {
  const { imageSize: size, numChannels: c } = model.manifest.vision;
  let last: ort.Tensor | undefined;
  for (let first = 0; first < images; first += visionBatch) {
    const n = Math.min(visionBatch, images - first);
    const pixels = new Float32Array(n * c * size * size);
    for (let i = 0; i < n; i++) pixels.set(syntheticPixels(size, first + i + 1), i * c * size * size);
    const out = await (await model.sessions.get(GRAPHS.vision)).run({
      [IO.pixelValues]: float32(pixels, [n, c, size, size]),
    });
    last = out[IO.imageEmbeds];
  }
  return last as ort.Tensor;
}

/** Cross keys/values of `images` images (from one image_embeds batch, repeated) into rows 0..images-1. */
export async function runCrossKv(
  model: StageModel,
  embeds: ort.Tensor,
  images: number,
  cache: CrossCache,
): Promise<void> {
  const batch = embeds.dims[0];
  for (let first = 0; first < images; first += batch) {
    const n = Math.min(batch, images - first);
    const part = float32((embeds.data as Float32Array).subarray(0, n * embeds.dims[1] * embeds.dims[2]), [
      n,
      embeds.dims[1],
      embeds.dims[2],
    ]);
    await (await model.sessions.get(GRAPHS.crossKv)).run({ [IO.imageEmbeds]: part }, cache.fetches(first, n));
  }
}

/**
 * A caption pass of `rows` rows to `total` positions: the prompt in one call, then one argmax
 * token per row per call (every row runs to the end, as captions forced to the same length).
 */
export async function runDecode(
  model: StageModel,
  cache: CrossCache,
  rows: number,
  prompt: readonly number[],
  total: number,
): Promise<void> {
  const run = new DecoderRun(await model.sessions.get(GRAPHS.decoder), cache, rows);
  const vocab = model.manifest.text.vocabSize;
  let tokens = Array.from({ length: rows }, () => [...prompt]);
  for (let position = prompt.length; position <= total; position++) {
    const logits = await run.step(tokens);
    if (position === total) break;
    tokens = tokens.map((_, r) => {
      let best = 0;
      for (let v = 1; v < vocab; v++) if (logits[r * vocab + v] > logits[r * vocab + best]) best = v;
      return [best];
    });
  }
}

function padded(
  texts: readonly ItmEncoding[],
  padId: number,
): { ids: ort.Tensor; mask: ort.Tensor; length: number } {
  const { ids, mask, length } = padTexts(texts, padId);
  return { ids: int64(ids, [texts.length, length]), mask: int64(mask, [texts.length, length]), length };
}

/** Token counts a pass ran: `executed` with padding, `useful` without. */
export interface TextWork {
  executed: number[];
  useful: number[];
}

/** ITM over every text (`texts[image]`), grouped and bucketed as the filter does. */
export async function runItm(
  model: StageModel,
  cache: CrossCache,
  texts: readonly (readonly ItmEncoding[])[],
  maxTexts: number,
): Promise<TextWork> {
  const plan = planScoring(
    texts.map((t) => t.map((e) => e.inputIds.length)),
    maxTexts,
  );
  const work: TextWork = { executed: [], useful: [] };
  for (const call of plan.itm) {
    const encodings = call.texts.map((r) => texts[r.sample][r.text]);
    const { ids, mask, length } = padded(encodings, model.manifest.specialIds.pad);
    const cross = cache.fetches(call.firstRow, call.rows);
    await (await model.sessions.get(GRAPHS.itm)).run({
      [IO.inputIds]: ids,
      [IO.attentionMask]: mask,
      ...cross,
    });
    work.executed.push(...encodings.map(() => length));
    work.useful.push(...encodings.map((e) => e.inputIds.length));
  }
  return work;
}

/** ITC text encoder over every text, bucketed by length as the filter does. */
export async function runItc(
  model: StageModel,
  texts: readonly (readonly ItmEncoding[])[],
  maxTexts: number,
): Promise<TextWork> {
  const plan = planScoring(
    texts.map((t) => t.map((e) => e.inputIds.length)),
    maxTexts,
  );
  const work: TextWork = { executed: [], useful: [] };
  for (const call of plan.itc) {
    const encodings = call.map((r) => texts[r.sample][r.text]);
    const { ids, mask, length } = padded(encodings, model.manifest.specialIds.pad);
    await (await model.sessions.get(GRAPHS.itcText)).run({ [IO.inputIds]: ids, [IO.attentionMask]: mask });
    work.executed.push(...encodings.map(() => length));
    work.useful.push(...encodings.map((e) => e.inputIds.length));
  }
  return work;
}
