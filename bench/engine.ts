import { parseArgs } from 'node:util';
import { Captioner } from '../src/captioner/captioner.js';
import { CAPFILT_DECODING } from '../src/core/defaults.js';
import { Filter } from '../src/filter/filter.js';
import type { RandomPreset } from '../src/model/convert/random.js';
import { measureCeiling } from './ceiling.js';
import { captionWorkGflop, filterWorkGflop } from './flops.js';
import { benchModels, syntheticPixels, textLengths } from './models.js';
import { machineLine, peakRssMiB, printTable, type Row, writeResult } from './report.js';
import { comparePaths } from './whole-graph.js';

/**
 * Engine throughput on random-weight checkpoints: vision encoding (+ cross-attention K/V),
 * CapFilt nucleus captions (to 30 tokens), ITM+ITC pairs (web + synthetic text per image), at
 * several batch sizes.
 */
export async function main(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      preset: { type: 'string', default: 'base' },
      batches: { type: 'string', default: '1,8,32' },
      images: { type: 'string' },
      threads: { type: 'string', default: '0' },
      'vision-batch': { type: 'string', default: '2' },
      // Host loop vs whole-graph calls (bench/whole-graph.ts): on these devices, at this batch.
      paths: { type: 'string', default: 'cpu' },
      'paths-batch': { type: 'string', default: '8' },
    },
  });
  const preset = values.preset as RandomPreset;
  const batches = values.batches!.split(',').map(Number);
  const models = await benchModels(preset);
  const lengthsOf = await textLengths(models.filter);
  const threads = Number(values.threads);
  const visionBatchSize = Number(values['vision-batch']);
  const rows: Row[] = [];
  for (const batch of batches) {
    const n = Number(values.images ?? Math.max(batch, 8));
    const engine = {
      batchSize: batch,
      visionBatchSize: Math.min(batch, visionBatchSize),
      intraOpThreads: threads,
    };
    const captioner = await Captioner.load(models.captioner, engine);
    const filter = await Filter.load(models.filter, engine);
    const size = captioner.manifest.vision.imageSize;
    const samples = Array.from({ length: n }, (_, i) => ({
      key: `img-${i}`,
      pixels: syntheticPixels(size, i + 1),
    }));
    // Warm-up: first runs pay for onnxruntime's allocations (page faults) and kernel selection.
    await captioner.caption(samples.slice(0, batch), { ...CAPFILT_DECODING, maxLength: 8 });
    await filter.score(
      samples
        .slice(0, batch)
        .map((s) => ({ ...s, texts: ['a warm-up text', 'another, somewhat longer, warm-up text'] })),
      { firstToken: 'enc', maxTextLength: 35 },
    );

    const ceiling = await measureCeiling(threads);
    let t = performance.now();
    for (let i = 0; i < n; i += batch) await captioner.encode(samples.slice(i, i + batch));
    // encode() covers the vision encoder and the cross-attention keys/values.
    const visionS = (performance.now() - t) / 1000;

    t = performance.now();
    const captions = await captioner.caption(samples, CAPFILT_DECODING);
    const captionS = (performance.now() - t) / 1000;
    const prompt = captioner.promptIds(CAPFILT_DECODING.prompt).length;
    const tokens = captions.reduce((a, c) => a + c[0].tokenIds.length - prompt, 0);

    const pairs = samples.map((s, i) => ({
      ...s,
      texts: ['a photograph of a dog running along the beach with a red ball', captions[i][0].text],
    }));
    t = performance.now();
    await filter.score(pairs, { firstToken: 'enc', maxTextLength: 35 });
    const filterS = (performance.now() - t) / 1000;
    // Column groups: throughput, then the work against the ceiling measured just before.
    const throughput = {
      batch,
      vision_batch: engine.visionBatchSize,
      images: n,
      vision_img_per_s: n / visionS,
      captions_per_s: n / captionS,
      new_tokens_per_s: tokens / captionS,
      itm_pairs_per_s: (2 * n) / filterS,
      capfilt_s_per_img: (captionS + filterS) / n,
      peak_rss_mib: peakRssMiB(),
    };
    const gflop =
      captionWorkGflop(
        captioner.manifest,
        n,
        prompt,
        captions.map((c) => c[0].tokenIds.length),
      ) + filterWorkGflop(filter.manifest, n, lengthsOf(pairs.flatMap((p) => p.texts)));
    const work = {
      capfilt_gflop_per_img: gflop / n,
      ceiling_gflops: ceiling.gflops,
      capfilt_of_ceiling: gflop / (captionS + filterS) / ceiling.gflops,
    };
    rows.push({ ...throughput, ...work });
    await captioner.close();
    await filter.close();
  }
  const base = rows.find((r) => r.batch === 1);
  for (const r of rows) {
    r.speedup_vs_batch1 = base ? (base.capfilt_s_per_img as number) / (r.capfilt_s_per_img as number) : null;
  }
  printTable(
    `capfilt engine, ${preset} random weights (capfilt_s_per_img = caption + filter incl. both ViTs; capfilt_of_ceiling = its GFLOP/s over the fp32 GEMM ceiling measured before each batch)`,
    rows,
  );
  const pathsBatch = Number(values['paths-batch']);
  const paths = values.paths
    ? await comparePaths(models, preset, {
        devices: values.paths.split(','),
        batch: pathsBatch,
        images: Number(values.images ?? Math.max(pathsBatch, 8)),
        threads,
      })
    : [];
  process.stdout.write(`${machineLine()}\n`);
  const file = writeResult('engine', { preset, threads, visionBatchSize, rows, paths });
  process.stdout.write(`\nwrote ${file}\n`);
}
