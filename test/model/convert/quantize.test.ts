import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Captioner } from '../../../src/captioner/captioner.js';
import { CAPFILT_DECODING } from '../../../src/core/defaults.js';
import type { OutputRecord } from '../../../src/core/types.js';
import { Filter } from '../../../src/filter/filter.js';
import { importModel } from '../../../src/model/convert/import.js';
import { quantizeColumns } from '../../../src/model/convert/quantize.js';
import { readManifest } from '../../../src/model/manifest.js';
import { runCli } from '../../../tools/cli-process.js';
import {
  FIXTURE,
  fixtureBin,
  IMAGE_NAMES,
  importTinyModels,
  REFERENCE,
  type TinyModels,
} from '../../helpers/models.js';
import { readGraph } from '../../helpers/onnx-graph.js';

const INT8 = 3;
const work = mkdtempSync(join(tmpdir(), 'capfilt-int8-'));
const int8 = { captioner: join(work, 'captioner'), filter: join(work, 'filter') };
let fp32: TinyModels;

beforeAll(async () => {
  fp32 = await importTinyModels();
  for (const kind of ['captioner', 'filter'] as const)
    await runCli(['models', 'import', join(FIXTURE, kind), '--output', int8[kind], '--precision', 'int8']);
});
afterAll(() => {
  fp32?.dispose();
  rmSync(work, { recursive: true, force: true });
});

describe('quantizeColumns', () => {
  it('keeps every weight within half a step of its column scale, zero columns included', () => {
    const k = 5;
    const n = 3;
    const w = Float32Array.from({ length: k * n }, (_, i) => (i % n === 2 ? 0 : Math.sin(i) * (1 + (i % n))));
    const { q, scale } = quantizeColumns(w, k, n);
    for (let i = 0; i < w.length; i++) {
      expect(Math.abs(q[i])).toBeLessThanOrEqual(127);
      expect(Math.abs(q[i] * scale[i % n] - w[i])).toBeLessThanOrEqual(scale[i % n] / 2 + 1e-7);
    }
    expect(
      Math.max(
        ...[0, 1].map((c) => Math.max(...Array.from({ length: k }, (_, r) => Math.abs(q[r * n + c])))),
      ),
    ).toBe(127);
  });
});

describe('capfilt models import --precision int8 (blip-tiny fixture)', () => {
  it('records the recipe; the decoder stays fp32 by default', async () => {
    const f = await readManifest(int8.filter);
    const c = await readManifest(int8.captioner);
    expect(f.precision).toBe('int8');
    expect(f.quantization?.graphs.sort()).toEqual(['cross_kv', 'itc_text', 'itm', 'vision']);
    expect(c.quantization?.graphs.sort()).toEqual(['cross_kv', 'vision']);
    // No whole-graph calls: int8 models caption and score from the host.
    expect(Object.keys(f.graphs).sort()).toEqual(['cross_kv', 'itc_text', 'itm', 'vision']);
    expect(Object.keys(c.graphs).sort()).toEqual(['cross_kv', 'decoder', 'vision']);
    expect(c.quantization?.op).toBe('com.microsoft.DynamicQuantizeMatMul');
  });

  it('replaces the weight MatMuls by DynamicQuantizeMatMul over int8 weights, heads kept fp32', async () => {
    const f = await readManifest(int8.filter);
    for (const role of ['vision', 'cross_kv', 'itm', 'itc_text']) {
      const { nodes, initializers } = readGraph(join(int8.filter, f.graphs[role]));
      const dq = nodes.filter((n) => n.opType === 'DynamicQuantizeMatMul');
      expect(dq.length, role).toBeGreaterThan(0);
      for (const n of dq) {
        expect(n.domain).toBe('com.microsoft');
        expect(initializers.get(n.inputs[1]), n.inputs[1]).toBe(INT8);
      }
      // What still runs as an fp32 MatMul on a weight is a head whose output is the result.
      const fp32Weights = nodes
        .filter((n) => n.opType === 'MatMul' && initializers.has(n.inputs[1]))
        .map((n) => n.inputs[1]);
      for (const w of fp32Weights) expect(w).toMatch(/^(itm_head|vision_proj|text_proj)\./);
    }
    const c = await readManifest(int8.captioner);
    const decoder = readGraph(join(int8.captioner, c.graphs.decoder));
    expect(decoder.nodes.some((n) => n.opType === 'DynamicQuantizeMatMul')).toBe(false);
  });

  it('keeps one data file without fp32 copies of quantized weights, and no WebGPU set', async () => {
    const bytes = (dir: string) =>
      readdirSync(dir)
        .filter((f) => f.endsWith('.data'))
        .reduce((a, f) => a + statSync(join(dir, f)).size, 0);
    expect(readdirSync(int8.filter).filter((f) => f.endsWith('.data'))).toEqual(['weights.int8.data']);
    // The tiny model is mostly its word embeddings (fp32 in both), so the saving is small here.
    expect(bytes(int8.filter)).toBeLessThan(bytes(fp32.filter));
    const f = await readManifest(int8.filter);
    for (const file of Object.values(f.graphs)) {
      const { initializers } = readGraph(join(int8.filter, file));
      for (const name of initializers.keys()) {
        if (name.endsWith('.s8')) expect(initializers.has(name.slice(0, -3)), name).toBe(false);
      }
    }
    expect(f.webgpu.graphs).toEqual({});
  });
});

describe('--quantize-decoder', () => {
  it('quantizes the decoder too, LM head kept fp32, and still captions', async () => {
    const dir = join(work, 'captioner-all');
    const m = await importModel(join(FIXTURE, 'captioner'), dir, {
      precision: 'int8',
      quantizeDecoder: true,
    });
    expect(m.quantization?.graphs).toContain('decoder');
    const { nodes, initializers } = readGraph(join(dir, m.graphs.decoder));
    expect(nodes.some((n) => n.opType === 'DynamicQuantizeMatMul')).toBe(true);
    const head = nodes.filter((n) => n.opType === 'MatMul' && initializers.has(n.inputs[1]));
    expect(head.map((n) => n.inputs[1])).toEqual(['lm_head.weight_t']);
    const captioner = await Captioner.load(dir);
    try {
      const [[caption]] = await captioner.caption(
        [{ key: 'a', pixels: fixtureBin('pixel_values_0_gradient_png.bin') }],
        { ...CAPFILT_DECODING, strategy: 'greedy', repetitionPenalty: 1, maxLength: 12 },
      );
      expect(caption.tokenIds.length).toBeGreaterThan(4);
    } finally {
      await captioner.close();
    }
  });
});

describe('int8AlsoFp32', () => {
  it('keeps the named weights fp32 in every graph and records them', async () => {
    const dir = join(work, 'filter-cross-fp32');
    const m = await importModel(join(FIXTURE, 'filter'), dir, {
      precision: 'int8',
      int8AlsoFp32: /crossattention|cross_kv/,
    });
    expect(m.quantization?.keptFp32).toContain('crossattention|cross_kv');
    for (const role of ['cross_kv', 'itm']) {
      const { nodes, initializers } = readGraph(join(dir, m.graphs[role]));
      const fp32Weights = nodes
        .filter((n) => n.opType === 'MatMul' && initializers.has(n.inputs[1]))
        .map((n) => n.inputs[1]);
      expect(fp32Weights.filter((w) => /crossattention|cross_kv/.test(w)).length, role).toBeGreaterThan(0);
      for (const n of nodes.filter((n) => n.opType === 'DynamicQuantizeMatMul'))
        expect(n.inputs[1], role).not.toMatch(/crossattention|cross_kv/);
    }
    // The rest of the text encoder is still int8.
    const itm = readGraph(join(dir, m.graphs.itm));
    expect(itm.nodes.some((n) => n.opType === 'DynamicQuantizeMatMul')).toBe(true);
  });
});

describe('int8 scores on the fixture', () => {
  const samples = IMAGE_NAMES.map((name) => ({
    key: name,
    pixels: fixtureBin(`pixel_values_${name}_png.bin`),
    texts: (REFERENCE.filter.pairs[name] as { text: string }[]).map((p) => p.text),
  }));

  it('keep/drop decisions at 0.5 agree with fp32 on every fixture pair', async () => {
    const a = await Filter.load(fp32.filter);
    const b = await Filter.load(int8.filter);
    try {
      const options = { firstToken: 'enc', maxTextLength: 35 } as const;
      const x = (await a.score(samples, options)).flat();
      const y = (await b.score(samples, options)).flat();
      expect(x.length).toBe(36);
      x.forEach((s, i) => {
        expect(y[i].itm > 0.5, `pair ${i}: fp32 ${s.itm}, int8 ${y[i].itm}`).toBe(s.itm > 0.5);
        // Quantization moves scores a little, not arbitrarily (measured max ≈ 0.03 on this fixture).
        expect(Math.abs(y[i].itm - s.itm)).toBeLessThan(0.1);
        expect(Math.abs(y[i].itc - s.itc)).toBeLessThan(0.1);
      });
    } finally {
      await a.close();
      await b.close();
    }
  });
});

describe('capfilt run with int8 models', () => {
  it('runs the bundled examples end to end and judges every pair', async () => {
    const out = join(work, 'run');
    const examples = join(import.meta.dirname, '../../../examples/jsonl/captions.jsonl');
    await runCli([
      'run',
      ...['--input', examples, '--output', out],
      ...['--captioner', int8.captioner, '--filter', int8.filter],
      // The manifest names its images as ../images/…, outside its own folder.
      ...['--allow-root', join(import.meta.dirname, '../../../examples')],
    ]);
    const inputs = readFileSync(examples, 'utf8').trim().split('\n').length;
    const records = readdirSync(out)
      .filter((f) => /^part-.*\.jsonl$/.test(f))
      .flatMap((f) => readFileSync(join(out, f), 'utf8').trim().split('\n'))
      .map((line) => JSON.parse(line) as OutputRecord);
    expect(records.length).toBe(inputs);
    for (const r of records) {
      expect(r.status, r.key).toBe('ok');
      expect(r.synthetic.length, r.key).toBe(1);
      expect(r.web?.itm, r.key).toBeTypeOf('number');
    }
  });
});
