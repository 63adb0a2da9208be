import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { Captioner } from '../captioner/captioner.js';
import { UsageError } from '../core/errors.js';
import type { RgbImage } from '../core/types.js';
import { validateDecoding, validateFilter } from '../core/validate.js';
import { decideTexts } from '../filter/decision.js';
import { Filter } from '../filter/filter.js';
import { preCaption } from '../filter/normalize.js';
import { decodeImage } from '../io/image.js';
import { readNpy } from '../io/npy.js';
import type { ModelManifest } from '../model/manifest.js';
import {
  addDecodingOptions,
  addEngineOptions,
  addFilterOptions,
  type DecodingCli,
  decodingFromCli,
  type EngineCli,
  engineFromCli,
  type FilterCli,
  filterFromCli,
} from './engine-options.js';

interface PixelSource {
  pixels(image: RgbImage): Float32Array;
  readonly manifest: ModelManifest;
}

/**
 * An input's pixel tensor for `engine`: an image file (decoded and preprocessed like the pipeline
 * does) or a .npy of already-preprocessed float32 pixels, [3,H,W] or [1,3,H,W], which lets a
 * conversion be checked against PyTorch independently of resizing.
 */
export async function pixelsOf(input: string, engine: PixelSource): Promise<Float32Array> {
  if (input.toLowerCase().endsWith('.npy')) {
    const arr = await readNpy(input);
    const { imageSize, numChannels } = engine.manifest.vision;
    const want = [numChannels, imageSize, imageSize];
    const shape = arr.shape.length === 4 && arr.shape[0] === 1 ? arr.shape.slice(1) : arr.shape;
    if (shape.join(',') !== want.join(',')) {
      throw new UsageError(`${input}: shape [${arr.shape}] is not [${want}] or [1,${want}]`);
    }
    return arr.data;
  }
  return engine.pixels(await decodeImage(await readFile(input), input));
}

const line = (value: unknown) => process.stdout.write(`${JSON.stringify(value)}\n`);

/** `capfilt caption` and `capfilt score`: the engines on a few inputs, one JSON line per result. */
export function registerInference(program: Command): void {
  const caption = program
    .command('caption')
    .description('write synthetic captions for images (or .npy pixel tensors)')
    .requiredOption('--model <dir>', 'converted captioner')
    .argument('<input...>', 'image files or .npy arrays');
  addDecodingOptions(caption);
  addEngineOptions(caption);
  caption.action(async (inputs: string[], o: DecodingCli & EngineCli & { model: string }) => {
    const options = decodingFromCli(o);
    validateDecoding(options);
    const captioner = await Captioner.load(o.model, engineFromCli(o));
    try {
      const samples = [];
      for (const input of inputs) samples.push({ key: input, pixels: await pixelsOf(input, captioner) });
      const results = await captioner.caption(samples, options);
      results.forEach((captions, i) => {
        line({
          input: inputs[i],
          captions: captions.map((c) => ({ text: c.text, token_ids: c.tokenIds })),
          model: captioner.modelId,
        });
      });
    } finally {
      await captioner.close();
    }
  });

  const score = program
    .command('score')
    .description('ITM match probability and ITC similarity of texts against images')
    .requiredOption('--model <dir>', 'converted filter')
    .option('--image <input>', 'image file or .npy array')
    .option(
      '--text <text>',
      'a text to score (repeatable)',
      (v: string, acc: string[]) => [...acc, v],
      [] as string[],
    )
    .option('--pairs <file>', 'JSONL of {"image": path, "text": text} to score in bulk');
  addFilterOptions(score);
  addEngineOptions(score);
  score.action(
    async (o: FilterCli & EngineCli & { model: string; image?: string; text: string[]; pairs?: string }) => {
      const pairs: { image: string; text: string }[] = [];
      if (o.image) for (const text of o.text) pairs.push({ image: o.image, text });
      if (o.pairs) {
        const lines = (await readFile(o.pairs, 'utf8')).split('\n').filter((l) => l.trim() !== '');
        lines.forEach((l, i) => {
          const row = JSON.parse(l) as { image?: unknown; text?: unknown };
          if (typeof row.image !== 'string' || typeof row.text !== 'string') {
            throw new UsageError(`${o.pairs}:${i + 1}: expected {"image": string, "text": string}`);
          }
          pairs.push({ image: row.image, text: row.text });
        });
      }
      if (pairs.length === 0) throw new UsageError('nothing to score: give --image with --text, or --pairs');
      const thresholdGiven = score.getOptionValueSource('threshold') === 'cli';
      const options = filterFromCli(o);
      validateFilter(options);
      const filter = await Filter.load(o.model, engineFromCli(o));
      try {
        // One sample per distinct image, so its vision pass is shared by all its texts.
        const byImage = new Map<string, string[]>();
        for (const p of pairs) byImage.set(p.image, [...(byImage.get(p.image) ?? []), p.text]);
        const images = [...byImage.keys()];
        const samples = [];
        for (const image of images) {
          const texts = byImage.get(image)!.map((t) => (options.normalizeWebText ? preCaption(t) : t));
          samples.push({ key: image, pixels: await pixelsOf(image, filter), texts });
        }
        const scores = await filter.score(samples, options);
        images.forEach((image, i) => {
          byImage.get(image)!.forEach((text, j) => {
            const s = scores[i][j];
            const out: Record<string, unknown> = { input: image, text, itm: s.itm, itc: s.itc };
            if (thresholdGiven) {
              out.kept = decideTexts(
                { web: { text, score: s }, synthetic: [] },
                { ...options, consider: 'both' },
              ).webKept;
              out.threshold = options.threshold;
            }
            line(out);
          });
        });
      } finally {
        await filter.close();
      }
    },
  );
}
