import { Captioner } from '../src/captioner/captioner.js';
import { CAPFILT_DECODING } from '../src/core/defaults.js';
import { Filter } from '../src/filter/filter.js';
import type { EngineOptions } from '../src/model/runtime/engine.js';
import type { BenchModels } from './models.js';
import { syntheticPixels } from './models.js';
import { printTable, type Row } from './report.js';

export interface PathsOptions {
  /** Devices to compare on ('cpu', 'webgpu'). */
  devices: string[];
  batch: number;
  images: number;
  threads: number;
}

type Device = NonNullable<EngineOptions['device']>;

/**
 * One device, one path: CapFilt captions then ITM+ITC of a web text and the caption per image,
 * timed, and the bytes that crossed onnxruntime's API per image (feeds + outputs, counted by the
 * engine).
 */
async function measurePath(
  models: BenchModels,
  device: Device,
  wholeGraph: boolean,
  o: PathsOptions,
): Promise<Row> {
  const engine: EngineOptions = { device, wholeGraph, batchSize: o.batch, intraOpThreads: o.threads };
  const captioner = await Captioner.load(models.captioner, engine);
  const filter = await Filter.load(models.filter, engine);
  try {
    const size = captioner.manifest.vision.imageSize;
    const samples = Array.from({ length: o.images }, (_, i) => ({
      key: `img-${i}`,
      pixels: syntheticPixels(size, i + 1),
    }));
    // Warm-up (allocations, kernel selection, shader compilation), then fresh counters.
    await captioner.caption(samples.slice(0, o.batch), CAPFILT_DECODING);
    const before = { c: captioner.traffic, f: filter.traffic };
    let t = performance.now();
    const captions = await captioner.caption(samples, CAPFILT_DECODING);
    const captionS = (performance.now() - t) / 1000;
    const pairs = samples.map((s, i) => ({
      ...s,
      texts: ['a photograph of a dog running along the beach with a red ball', captions[i][0].text],
    }));
    t = performance.now();
    await filter.score(pairs, { firstToken: 'enc', maxTextLength: 35 });
    const filterS = (performance.now() - t) / 1000;
    const bytes = (now: { bytesIn: number; bytesOut: number }, was: typeof now) =>
      (now.bytesIn + now.bytesOut - was.bytesIn - was.bytesOut) / o.images;
    return {
      device,
      path: wholeGraph ? 'whole graph' : 'host loop',
      batch: o.batch,
      images: o.images,
      captions_per_s: o.images / captionS,
      caption_mib_per_img: bytes(captioner.traffic, before.c) / 2 ** 20,
      itm_pairs_per_s: (2 * o.images) / filterS,
      filter_mib_per_img: bytes(filter.traffic, before.f) / 2 ** 20,
    };
  } finally {
    await captioner.close();
    await filter.close();
  }
}

/**
 * The host loop (vision, cross K/V and decoder or ITM/ITC called one by one) and the whole-graph
 * calls side by side, on each device, in one run: throughput and host-boundary bytes per image.
 */
export async function comparePaths(models: BenchModels, preset: string, o: PathsOptions): Promise<Row[]> {
  const rows: Row[] = [];
  for (const device of o.devices as Device[]) {
    for (const wholeGraph of [false, true]) rows.push(await measurePath(models, device, wholeGraph, o));
  }
  printTable(
    `host loop vs whole-graph calls, ${preset} random weights (CapFilt decoding; *_mib_per_img = bytes passed into and out of onnxruntime per image)`,
    rows,
  );
  return rows;
}
