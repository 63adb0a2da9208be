import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Captioner } from '../../src/captioner/captioner.js';
import { Filter } from '../../src/filter/filter.js';
import { importModel } from '../../src/model/convert/import.js';
import type { Precision } from '../../src/model/manifest.js';

export const FIXTURE = join(import.meta.dirname, '..', 'fixtures', 'blip-tiny');

export interface TinyModels {
  captioner: string;
  filter: string;
  dispose(): void;
}

/** The fixture's tiny captioner and filter, converted into a private temp dir for this test file. */
export async function importTinyModels(
  options: { precision?: Precision; webgpuSteps?: number } = {},
): Promise<TinyModels> {
  const dir = mkdtempSync(join(tmpdir(), 'capfilt-models-'));
  const captioner = join(dir, 'captioner');
  const filter = join(dir, 'filter');
  await importModel(join(FIXTURE, 'captioner'), captioner, options);
  await importModel(join(FIXTURE, 'filter'), filter, options);
  return { captioner, filter, dispose: () => rmSync(dir, { recursive: true, force: true }) };
}

/**
 * A copy of converted model `modelDir` (beside it, as `<name>-cuda-as-<slot>`) whose CPU set
 * (`graphs`) or WebGPU set is its CUDA set, so that the CUDA graphs run on this machine's
 * providers. No CUDA device is needed, and no switch in src/ exists for tests.
 */
export function cudaSetAs(modelDir: string, slot: 'graphs' | 'webgpu'): string {
  const copy = `${modelDir}-cuda-as-${slot}`;
  cpSync(modelDir, copy, { recursive: true });
  const manifest = JSON.parse(readFileSync(join(modelDir, 'manifest.json'), 'utf8'));
  if (slot === 'graphs') manifest.graphs = manifest.cuda.graphs;
  else manifest.webgpu.graphs = manifest.cuda.graphs;
  writeFileSync(join(copy, 'manifest.json'), JSON.stringify(manifest));
  return copy;
}

// biome-ignore lint/suspicious/noExplicitAny: reference.json is free-form test data.
export const REFERENCE: any = JSON.parse(readFileSync(join(FIXTURE, 'reference.json'), 'utf8'));

export const IMAGE_NAMES = ['0_gradient', '1_shapes', '2_noise', '3_stripes', '4_gray', '5_alpha'] as const;

/** A raw little-endian float32 tensor from the fixture's bins/. */
export function fixtureBin(name: string): Float32Array {
  const buf = readFileSync(join(FIXTURE, 'bins', name));
  return new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Number.POSITIVE_INFINITY;
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/**
 * Largest |difference| between a batch of image embeddings (one per fixture image, in
 * IMAGE_NAMES order) and the reference `<kind>_image_embeds_<image>.bin`, per image.
 */
export function embedDiffs(kind: 'captioner' | 'filter', embeds: Float32Array): number[] {
  const per = embeds.length / IMAGE_NAMES.length;
  return IMAGE_NAMES.map((name, i) =>
    maxAbsDiff(embeds.subarray(i * per, (i + 1) * per), fixtureBin(`${kind}_image_embeds_${name}.bin`)),
  );
}

/** Both tiny engines loaded from converted models (tests that hand the runner its engines). */
export async function loadTinyEngines(
  models: TinyModels,
  batchSize: number,
): Promise<{ captioner: Captioner; filter: Filter; close(): Promise<void> }> {
  const captioner = await Captioner.load(models.captioner, { batchSize });
  const filter = await Filter.load(models.filter, { batchSize });
  return {
    captioner,
    filter,
    async close() {
      await captioner.close();
      await filter.close();
    },
  };
}
