import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, describe, expect, it } from 'vitest';
import { UnsafeCheckpointError } from '../../../src/core/errors.js';
import { importModel } from '../../../src/model/convert/import.js';
import { readManifest } from '../../../src/model/manifest.js';
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
      for (const file of Object.values(ma.graphs)) {
        expect(readFileSync(join(a, file)).equals(readFileSync(join(b, file))), file).toBe(true);
        expect(
          readFileSync(join(a, `${file}.data`)).equals(readFileSync(join(b, `${file}.data`))),
          file,
        ).toBe(true);
      }
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
    expect(Object.keys(f.graphs).sort()).toEqual(['cross_kv', 'itc_text', 'itm', 'vision']);
  });

  it('decoder step logits match Hugging Face within 1e-3 for the first steps', async () => {
    const dir = join(work, 'captioner-st');
    const m = await readManifest(dir);
    const vision = await ort.InferenceSession.create(join(dir, 'vision.onnx'));
    const crossKv = await ort.InferenceSession.create(join(dir, 'cross_kv.onnx'));
    const decoder = await ort.InferenceSession.create(join(dir, 'decoder.onnx'));
    const pixels = fixtureBin('pixel_values_0_gradient_png.bin');
    const v = await vision.run({ pixel_values: new ort.Tensor('float32', pixels, [1, 3, 64, 64]) });
    const kv = await crossKv.run({ image_embeds: v.image_embeds });
    const hd = m.text.hiddenSize / m.text.numHeads;
    const feeds: Record<string, ort.Tensor> = {};
    for (let l = 0; l < m.text.numLayers; l++) {
      feeds[`cross_key.${l}`] = kv[`cross_key.${l}`];
      feeds[`cross_value.${l}`] = kv[`cross_value.${l}`];
      feeds[`past_key.${l}`] = new ort.Tensor('float32', new Float32Array(0), [1, m.text.numHeads, 0, hd]);
      feeds[`past_value.${l}`] = new ort.Tensor('float32', new Float32Array(0), [1, m.text.numHeads, 0, hd]);
    }
    const sequence: number[] = REFERENCE.captioner.generation.greedy_prompt.results['0_gradient'].sequence;
    let tokens = sequence.slice(0, 4);
    for (let step = 0; step < 3; step++) {
      feeds.input_ids = new ort.Tensor('int64', BigInt64Array.from(tokens.map(BigInt)), [1, tokens.length]);
      const out = await decoder.run(feeds);
      const diff = maxAbsDiff(
        out.logits.data as Float32Array,
        fixtureBin(`captioner_step${step}_logits_0_gradient.bin`),
      );
      expect(diff, `step ${step}`).toBeLessThan(1e-3);
      for (let l = 0; l < m.text.numLayers; l++) {
        feeds[`past_key.${l}`] = out[`present_key.${l}`];
        feeds[`past_value.${l}`] = out[`present_value.${l}`];
      }
      tokens = [sequence[4 + step]];
    }
    await Promise.all([vision.release(), crossKv.release(), decoder.release()]);
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
