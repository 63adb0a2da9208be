import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Captioner } from '../../src/captioner/captioner.js';
import { CAPFILT_DECODING } from '../../src/core/defaults.js';
import type { DecodingOptions } from '../../src/core/types.js';
import { encodeNpy } from '../../src/io/npy.js';
import {
  embedDiffs,
  fixtureBin,
  IMAGE_NAMES,
  importTinyModels,
  REFERENCE,
  type TinyModels,
} from '../helpers/models.js';

const samples = IMAGE_NAMES.map((name) => ({
  key: name,
  pixels: fixtureBin(`pixel_values_${name}_png.bin`),
}));

// The reference's generate() calls, in capfilt's option vocabulary (lengths count the prompt).
const greedy = (promptLength: number): Partial<DecodingOptions> => ({
  strategy: 'greedy',
  maxLength: promptLength + 20,
  minLength: 0,
  repetitionPenalty: 1,
});
const CASES: Record<string, Partial<DecodingOptions>> = {
  greedy_prompt: { ...greedy(4), prompt: 'a picture of ' },
  greedy_unconditional: { ...greedy(1), prompt: '' },
  beam3_prompt: {
    strategy: 'beam',
    numBeams: 3,
    maxLength: 20,
    minLength: 5,
    repetitionPenalty: 1,
    prompt: 'a picture of ',
  },
  beam3_unconditional: {
    strategy: 'beam',
    numBeams: 3,
    maxLength: 20,
    minLength: 5,
    repetitionPenalty: 1,
    prompt: '',
  },
};

describe('Captioner on the blip-tiny fixture', () => {
  let models: TinyModels;
  let captioner: Captioner;
  beforeAll(async () => {
    models = await importTinyModels();
    captioner = await Captioner.load(models.captioner, { batchSize: 4 });
  });
  afterAll(async () => {
    await captioner?.close();
    models?.dispose();
  });

  it('encodes images within 1e-4 of Hugging Face', async () => {
    const { imageEmbeds } = await captioner.encode(samples);
    for (const diff of embedDiffs('captioner', imageEmbeds)) expect(diff).toBeLessThan(1e-4);
  });

  it('builds the prompt as BLIP does', () => {
    expect(captioner.promptIds('a picture of ')).toEqual(
      REFERENCE.captioner.generation.greedy_prompt.decoder_input_ids,
    );
    expect(captioner.promptIds('')).toEqual([30522]);
  });

  for (const [name, opts] of Object.entries(CASES)) {
    it(`${name}: token ids identical to Hugging Face, batched and one by one`, async () => {
      const options = { ...CAPFILT_DECODING, ...opts };
      const batched = await captioner.caption(samples, options);
      const single: Awaited<ReturnType<Captioner['caption']>> = [];
      for (const s of samples) single.push(...(await captioner.caption([s], options)));
      const results = REFERENCE.captioner.generation[name].results;
      IMAGE_NAMES.forEach((image, i) => {
        expect(batched[i][0].tokenIds, image).toEqual(results[image].sequence);
        expect(single[i][0].tokenIds, image).toEqual(results[image].sequence);
      });
    });
  }

  it('nucleus sampling: same seed, same captions whatever the batch size', async () => {
    const options = { ...CAPFILT_DECODING, numCaptions: 3, seed: 5 };
    const all = await captioner.caption(samples, options);
    const small = await Captioner.load(models.captioner, { batchSize: 1 });
    try {
      const oneByOne = await small.caption(samples, options);
      expect(oneByOne.map((c) => c.map((x) => x.tokenIds))).toEqual(all.map((c) => c.map((x) => x.tokenIds)));
    } finally {
      await small.close();
    }
    const reordered = await captioner.caption([...samples].reverse(), options);
    expect(reordered.reverse().map((c) => c.map((x) => x.tokenIds))).toEqual(
      all.map((c) => c.map((x) => x.tokenIds)),
    );
    const otherSeed = await captioner.caption(samples, { ...options, seed: 6 });
    expect(otherSeed.map((c) => c.map((x) => x.tokenIds))).not.toEqual(
      all.map((c) => c.map((x) => x.tokenIds)),
    );
  });

  it('the whole-graph captioner and the host loop pick the same tokens for the same seeds', async () => {
    const host = await Captioner.load(models.captioner, { batchSize: 6, wholeGraph: false });
    try {
      const runs: [Partial<DecodingOptions>, number][] = [
        ...[1, 2, 3].map((seed): [Partial<DecodingOptions>, number] => [{ numCaptions: 2, seed }, 6]),
        [{ numCaptions: 2, seed: 9, temperature: 0.7, topK: 20, topP: 0.8, repetitionPenalty: 1.3 }, 6],
        // top-k off: the whole vocabulary is sorted (slow on both sides, so two images).
        [{ numCaptions: 1, seed: 9, topK: 0, topP: 0.95 }, 2],
        [{ strategy: 'greedy', repetitionPenalty: 1.3, minLength: 16, maxLength: 24 }, 6],
      ];
      for (const [run, images] of runs) {
        const options = { ...CAPFILT_DECODING, ...run };
        const inGraph = await captioner.caption(samples.slice(0, images), options);
        const onHost = await host.caption(samples.slice(0, images), options);
        expect(
          inGraph.map((c) => c.map((x) => x.tokenIds)),
          JSON.stringify(run),
        ).toEqual(onHost.map((c) => c.map((x) => x.tokenIds)));
      }
    } finally {
      await host.close();
    }
  });

  it('a whole-graph call passes only pixels, prompt ids, uniforms and token ids through onnxruntime', async () => {
    const fresh = await Captioner.load(models.captioner, { batchSize: 6 });
    const host = await Captioner.load(models.captioner, { batchSize: 6, wholeGraph: false });
    try {
      const options = { ...CAPFILT_DECODING, numCaptions: 2 };
      await fresh.caption(samples, options);
      await host.caption(samples, options);
      const rows = samples.length * 2;
      const steps = options.maxLength - 4;
      const pixels = samples.length * 3 * 64 * 64 * 4;
      // Two calls of 3 images (6 rows): pixels, int64 prompt ids, float64 uniforms, 6 scalars each.
      const expected = pixels + rows * 4 * 8 + rows * steps * 8 + 2 * 6 * 8;
      expect(fresh.traffic).toEqual({ bytesIn: expected, bytesOut: fresh.traffic.bytesOut, images: 6 });
      expect(fresh.traffic.bytesOut).toBeLessThanOrEqual(rows * options.maxLength * 8);
      expect(host.traffic.bytesIn + host.traffic.bytesOut).toBeGreaterThan(
        10 * (fresh.traffic.bytesIn + fresh.traffic.bytesOut),
      );
    } finally {
      await fresh.close();
      await host.close();
    }
  });

  it('nucleus sampling: min/max length and the stop rule hold on every draw', async () => {
    const options = { ...CAPFILT_DECODING, numCaptions: 8, seed: 11, minLength: 10, maxLength: 16 };
    const results = await captioner.caption(samples, options);
    let ended = 0;
    for (const perImage of results) {
      for (const c of perImage) {
        expect(c.tokenIds.slice(0, 4)).toEqual([30522, 1037, 3861, 1997]);
        expect(c.tokenIds.length).toBeLessThanOrEqual(16);
        const sep = c.tokenIds.indexOf(102);
        if (sep >= 0) {
          ended += 1;
          expect(sep).toBe(c.tokenIds.length - 1);
          expect(sep).toBeGreaterThanOrEqual(10);
        } else {
          expect(c.tokenIds.length).toBe(16);
        }
      }
    }
    expect(ended).toBeGreaterThan(0);
  });

  it('a second process (the CLI, on .npy pixels) draws the same captions', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'capfilt-npy-'));
    try {
      const files = samples.map((s) => {
        const file = join(dir, `${s.key}.npy`);
        writeFileSync(file, encodeNpy(s.pixels, [1, 3, 64, 64]));
        return file;
      });
      const args = ['--import', 'tsx', 'src/cli/main.ts', 'caption', '--model', models.captioner];
      const { stdout } = await promisify(execFile)(process.execPath, [
        ...args,
        '--num-captions',
        '2',
        '--seed',
        '9',
        '--batch-size',
        '5',
        ...files,
      ]);
      const lines = stdout
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { input: string; captions: { text: string; token_ids: number[] }[] });
      // The in-process run uses the npy file names as keys too: keys seed the streams.
      const inProcess = await captioner.caption(
        samples.map((s, i) => ({ ...s, key: files[i] })),
        { ...CAPFILT_DECODING, numCaptions: 2, seed: 9 },
      );
      expect(lines.map((l) => l.input)).toEqual(files);
      expect(lines.map((l) => l.captions.map((c) => c.token_ids))).toEqual(
        inProcess.map((c) => c.map((x) => x.tokenIds)),
      );
      expect(lines[0].captions[0].text).toBe(inProcess[0][0].text);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
