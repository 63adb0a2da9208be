import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readBlipConfig } from '../../../src/model/config.js';
import {
  blipTensorSpecs,
  randomConfigJson,
  writeRandomCheckpoint,
} from '../../../src/model/convert/random.js';
import { readSafetensors } from '../../../src/model/convert/safetensors.js';
import { numel } from '../../../src/model/tensor.js';

const FIX = 'test/fixtures/blip-tiny';

async function sha256(path: string): Promise<string> {
  return createHash('sha256')
    .update(await readFile(path))
    .digest('hex');
}

async function readJson(path: string): Promise<unknown> {
  return JSON.parse(await readFile(path, 'utf8'));
}

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'capfilt-random-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('writeRandomCheckpoint (tiny)', () => {
  for (const kind of ['captioner', 'filter'] as const) {
    it(`${kind}: the fixture's config, keys, shapes and tokenizer files`, async () => {
      const out = join(dir, `tiny-${kind}`);
      const res = await writeRandomCheckpoint({ preset: 'tiny', kind, out, seed: 7 });
      const cfg = await readBlipConfig(out);
      const ref = await readBlipConfig(join(FIX, kind));
      expect(cfg).toEqual(ref);

      const weights = await readSafetensors(join(out, 'model.safetensors'));
      const fixture = await readSafetensors(join(FIX, kind, 'model.safetensors'));
      expect([...weights.keys()].sort()).toEqual([...fixture.keys()].sort());
      for (const [k, t] of fixture) expect(weights.get(k)?.shape, k).toEqual(t.shape);
      expect(res.params).toBe([...fixture.values()].reduce((n, t) => n + t.data.length, 0));

      for (const f of [
        'tokenizer_config.json',
        'special_tokens_map.json',
        'preprocessor_config.json',
        'added_tokens.json',
      ]) {
        expect(await readJson(join(out, f)), f).toEqual(await readJson(join(FIX, kind, f)));
      }
      expect(await sha256(join(out, 'vocab.txt'))).toBe(await sha256(join(FIX, kind, 'vocab.txt')));
      expect(res.files.sort()).toEqual(
        [
          'added_tokens.json',
          'config.json',
          'model.safetensors',
          'preprocessor_config.json',
          'special_tokens_map.json',
          'tokenizer_config.json',
          'vocab.txt',
        ].sort(),
      );
    });
  }

  it('initialises like HF: LayerNorm 1/0, zero biases, N(0, 0.02) matrices, tied decoder', async () => {
    const out = join(dir, 'init');
    await writeRandomCheckpoint({ preset: 'tiny', kind: 'captioner', out, seed: 3 });
    const w = await readSafetensors(join(out, 'model.safetensors'));
    const all = (k: string, v: number) => (w.get(k)?.data ?? [Number.NaN]).every((x) => x === v);
    expect(all('vision_model.post_layernorm.weight', 1)).toBe(true);
    expect(all('vision_model.encoder.layers.1.layer_norm2.weight', 1)).toBe(true);
    expect(all('text_decoder.bert.encoder.layer.0.crossattention.output.LayerNorm.weight', 1)).toBe(true);
    expect(all('text_decoder.bert.encoder.layer.0.crossattention.output.LayerNorm.bias', 0)).toBe(true);
    expect(all('vision_model.encoder.layers.0.self_attn.qkv.bias', 0)).toBe(true);
    expect(all('text_decoder.cls.predictions.bias', 0)).toBe(true);
    const emb = w.get('text_decoder.bert.embeddings.word_embeddings.weight');
    const dec = w.get('text_decoder.cls.predictions.decoder.weight');
    expect(
      emb &&
        dec &&
        Buffer.from(emb.data.buffer, emb.data.byteOffset, emb.data.byteLength).equals(
          Buffer.from(dec.data.buffer, dec.data.byteOffset, dec.data.byteLength),
        ),
    ).toBe(true);
    expect([...(emb?.data.subarray(0, 32) ?? [1])].every((x) => x === 0)).toBe(true);
    const m = emb?.data.subarray(32) ?? new Float32Array(1);
    let s = 0;
    let s2 = 0;
    for (const x of m) {
      s += x;
      s2 += x * x;
    }
    const mean = s / m.length;
    const std = Math.sqrt(s2 / m.length - mean * mean);
    expect(Math.abs(mean)).toBeLessThan(1e-3);
    expect(std).toBeGreaterThan(0.0195);
    expect(std).toBeLessThan(0.0205);
  });

  it('refuses an unknown preset, even one named like an Object property', async () => {
    for (const preset of ['huge', 'constructor', 'toString']) {
      await expect(
        writeRandomCheckpoint({ preset: preset as 'tiny', kind: 'filter', out: join(dir, 'bad') }),
      ).rejects.toThrow(/unknown preset/);
    }
  });

  it('is deterministic per seed', async () => {
    const a = join(dir, 'seed-a');
    const b = join(dir, 'seed-b');
    const c = join(dir, 'seed-c');
    await writeRandomCheckpoint({ preset: 'tiny', kind: 'filter', out: a, seed: 42 });
    await writeRandomCheckpoint({ preset: 'tiny', kind: 'filter', out: b, seed: 42 });
    await writeRandomCheckpoint({ preset: 'tiny', kind: 'filter', out: c, seed: 43 });
    const ha = await sha256(join(a, 'model.safetensors'));
    expect(await sha256(join(b, 'model.safetensors'))).toBe(ha);
    expect(await sha256(join(c, 'model.safetensors'))).not.toBe(ha);
  });
});

describe('base and large presets', () => {
  // Parameter counts of the Salesforce checkpoints (their weight files' sizes on the Hugging Face hub).
  const cases = [
    ['base', 'captioner', 247_414_076],
    ['base', 'filter', 223_744_258],
    ['large', 'captioner', 469_732_924],
    ['large', 'filter', 446_128_642],
  ] as const;
  for (const [preset, kind, params] of cases) {
    it(`${preset} ${kind} has the hub checkpoint's ${params} parameters`, () => {
      const specs = blipTensorSpecs(randomConfigJson(preset, kind, 0));
      expect(specs.reduce((n, s) => n + numel(s.shape), 0)).toBe(params);
    });
  }

  it('large has vision width 1024 and text width 768', () => {
    const specs = blipTensorSpecs(randomConfigJson('large', 'filter', 0));
    const shape = (k: string) => specs.find((s) => s.key === k)?.shape;
    expect(shape('text_encoder.encoder.layer.11.crossattention.self.key.weight')).toEqual([768, 1024]);
    expect(shape('vision_model.embeddings.position_embedding')).toEqual([1, 577, 1024]);
    expect(shape('vision_model.encoder.layers.23.self_attn.qkv.weight')).toEqual([3072, 1024]);
    expect(shape('vision_proj.weight')).toEqual([256, 1024]);
    expect(shape('text_proj.weight')).toEqual([256, 768]);
  });
});
