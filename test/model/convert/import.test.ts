import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, describe, expect, it } from 'vitest';
import { UnsafeCheckpointError } from '../../../src/core/errors.js';
import { importModel } from '../../../src/model/convert/import.js';
import { readManifest } from '../../../src/model/manifest.js';
import { decoderStepLogits } from '../../helpers/decoder-steps.js';
import { FIXTURE, fixtureBin, maxAbsDiff, REFERENCE } from '../../helpers/models.js';
import { readGraph } from '../../helpers/onnx-graph.js';

const work = mkdtempSync(join(tmpdir(), 'capfilt-import-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('capfilt models import', () => {
  it('writes the same graphs from model.safetensors and pytorch_model.bin', async () => {
    for (const kind of ['captioner', 'filter']) {
      const a = join(work, `${kind}-st`);
      const b = join(work, `${kind}-bin`);
      const ma = await importModel(join(FIXTURE, kind), a);
      const mb = await importModel(join(FIXTURE, `${kind}-bin`), b);
      expect(ma.source.weightsFile).toBe('model.safetensors');
      expect(mb.source.weightsFile).toBe('pytorch_model.bin');
      expect(Object.keys(ma.graphs)).toEqual(Object.keys(mb.graphs));
      const files = [...Object.values(ma.graphs), ...Object.values(ma.webgpu.graphs)];
      for (const file of files) {
        expect(readFileSync(join(a, file)).equals(readFileSync(join(b, file))), file).toBe(true);
        // Weights are written once, by the first graph that uses them; the others refer to them.
        const data = `${file}.data`;
        expect(existsSync(join(b, data)), data).toBe(existsSync(join(a, data)));
        if (existsSync(join(a, data)))
          expect(readFileSync(join(a, data)).equals(readFileSync(join(b, data))), data).toBe(true);
      }
    }
  });

  it('writes a WebGPU set that reads the weights of the CPU set instead of copying them', async () => {
    const dir = join(work, 'captioner-st');
    const m = await readManifest(dir);
    expect(Object.keys(m.webgpu.graphs).sort()).toEqual(Object.keys(m.graphs).sort());
    for (const [role, file] of Object.entries(m.webgpu.graphs)) {
      expect(existsSync(join(dir, `${file}.data`)), file).toBe(false);
      // The unrolled whole-graph captioners take half a minute to open on 2 loaded cores; the
      // WebGPU tests open and run them.
      if (role.startsWith('generate_')) continue;
      const session = await ort.InferenceSession.create(join(dir, file));
      await session.release();
    }
  });

  it('records what the model is in manifest.json', async () => {
    const m = await readManifest(join(work, 'captioner-st'));
    expect(m.kind).toBe('captioner');
    expect(m.specialIds).toMatchObject({ dec: 30522, enc: 30523, cls: 101, sep: 102, pad: 0 });
    expect(m.text.numHeads).toBe(4);
    expect(m.image).toMatchObject({ height: 64, width: 64, resample: 'bicubic' });
    expect(m.source.sha256).toMatch(/^[0-9a-f]{64}$/);
    const f = await readManifest(join(work, 'filter-st'));
    expect(Object.keys(f.graphs).sort()).toEqual(['cross_kv', 'itc_text', 'itm', 'score', 'vision']);
  });

  it('decoder step logits match Hugging Face within 1e-3 for the first steps', async () => {
    const dir = join(work, 'captioner-st');
    const m = await readManifest(dir);
    const sequence: number[] = REFERENCE.captioner.generation.greedy_prompt.results['0_gradient'].sequence;
    const logits = await decoderStepLogits(
      m,
      (role) => ort.InferenceSession.create(join(dir, m.graphs[role])),
      fixtureBin('pixel_values_0_gradient_png.bin'),
      sequence,
      3,
    );
    logits.forEach((l, step) => {
      expect(
        maxAbsDiff(l, fixtureBin(`captioner_step${step}_logits_0_gradient.bin`)),
        `step ${step}`,
      ).toBeLessThan(1e-3);
    });
  });

  it("has the itm graph read each image's cross keys/values in place, never copied per text", () => {
    const { nodes, inputs } = readGraph(join(work, 'filter-st', 'itm.onnx'));
    const crossInputs = inputs.filter((i) => i.startsWith('cross_'));
    expect(crossInputs.length).toBeGreaterThan(0);
    const readers = nodes.filter((n) => n.inputs.some((i) => crossInputs.includes(i)));
    expect(new Set(readers.map((n) => n.opType))).toEqual(new Set(['MultiHeadAttention', 'Shape']));
  });

  it('refuses a model converted to another graph format, naming the fix', async () => {
    const dir = join(work, 'old-format');
    cpSync(join(work, 'filter-st'), dir, { recursive: true });
    const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8'));
    writeFileSync(join(dir, 'manifest.json'), JSON.stringify({ ...manifest, formatVersion: 1 }));
    await expect(readManifest(dir)).rejects.toThrow(/graph format 1.*capfilt models import/);
  });

  it('refuses a checkpoint of another architecture', async () => {
    const dir = join(work, 'not-blip');
    cpSync(join(FIXTURE, 'filter'), dir, { recursive: true });
    const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    cfg.architectures = ['BlipForQuestionAnswering'];
    writeFileSync(join(dir, 'config.json'), JSON.stringify(cfg));
    await expect(importModel(dir, join(work, 'out-not-blip'))).rejects.toThrow(/unsupported architecture/);
  });

  it('refuses a hostile pytorch_model.bin without running it, and leaves no output', async () => {
    const dir = join(work, 'hostile');
    cpSync(join(FIXTURE, 'filter-bin'), dir, { recursive: true });
    const bin = readFileSync(join(dir, 'pytorch_model.bin'));
    // Swap the first global the pickle names for os.system (same length keeps the zip intact).
    const needle = Buffer.from('collections\nOrderedDict\n');
    const at = bin.indexOf(needle);
    expect(at).toBeGreaterThan(0);
    Buffer.from('posix\nsystem\n'.padEnd(needle.length - 1, '_') + '\n').copy(bin, at);
    writeFileSync(join(dir, 'pytorch_model.bin'), bin);
    const err = await importModel(dir, join(work, 'out-hostile')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnsafeCheckpointError);
    expect((err as UnsafeCheckpointError).refused).toBe('posix.system');
    expect(() => readFileSync(join(work, 'out-hostile', 'manifest.json'))).toThrow();
  });
});
