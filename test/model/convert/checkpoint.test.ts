import { createHash } from 'node:crypto';
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ModelError } from '../../../src/core/errors.js';
import { loadCheckpoint } from '../../../src/model/convert/checkpoint.js';

const FIX = 'test/fixtures/blip-tiny';

async function sha256(path: string): Promise<string> {
  return createHash('sha256')
    .update(await readFile(path))
    .digest('hex');
}

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'capfilt-ckpt-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('loadCheckpoint', () => {
  it('reads model.safetensors and hashes it', async () => {
    const c = await loadCheckpoint(join(FIX, 'filter'));
    expect(c.file).toBe(join(FIX, 'filter', 'model.safetensors'));
    expect(c.sha256).toBe(await sha256(c.file));
    expect(c.weights.size).toBe(92);
    expect(c.weights.get('itm_head.weight')?.shape).toEqual([2, 32]);
  });

  it('falls back to pytorch_model.bin with the same tensors', async () => {
    const st = await loadCheckpoint(join(FIX, 'captioner'));
    const bin = await loadCheckpoint(join(FIX, 'captioner-bin'));
    expect(bin.file).toBe(join(FIX, 'captioner-bin', 'pytorch_model.bin'));
    expect(bin.sha256).toBe(await sha256(bin.file));
    expect(bin.sha256).not.toBe(st.sha256);
    const w = st.weights.get('text_decoder.cls.predictions.transform.dense.weight');
    const b = bin.weights.get('text_decoder.cls.predictions.transform.dense.weight');
    expect(b?.shape).toEqual(w?.shape);
    expect(
      Buffer.from(b?.data.buffer ?? new ArrayBuffer(0), b?.data.byteOffset, b?.data.byteLength).equals(
        Buffer.from(w?.data.buffer ?? new ArrayBuffer(1), w?.data.byteOffset, w?.data.byteLength),
      ),
    ).toBe(true);
  });

  it('prefers model.safetensors when both files are there', async () => {
    const both = join(dir, 'both');
    await mkdir(both);
    await copyFile(join(FIX, 'filter', 'model.safetensors'), join(both, 'model.safetensors'));
    await copyFile(join(FIX, 'filter-bin', 'pytorch_model.bin'), join(both, 'pytorch_model.bin'));
    const c = await loadCheckpoint(both);
    expect(c.file).toBe(join(both, 'model.safetensors'));
  });

  it('drops int64 position_ids buffers that old checkpoints carry', async () => {
    const d = join(dir, 'posids');
    await mkdir(d);
    const header = Buffer.from(
      JSON.stringify({
        'text_encoder.embeddings.position_ids': { dtype: 'I64', shape: [1, 3], data_offsets: [0, 24] },
        'text_encoder.embeddings.LayerNorm.weight': { dtype: 'F32', shape: [2], data_offsets: [24, 32] },
      }),
    );
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(header.length));
    const data = Buffer.alloc(32);
    data.writeFloatLE(1, 24);
    data.writeFloatLE(1, 28);
    await writeFile(join(d, 'model.safetensors'), Buffer.concat([len, header, data]));
    const c = await loadCheckpoint(d);
    expect([...c.weights.keys()]).toEqual(['text_encoder.embeddings.LayerNorm.weight']);
  });

  it('fails clearly without a weights file', async () => {
    const empty = join(dir, 'empty');
    await mkdir(empty);
    await expect(loadCheckpoint(empty)).rejects.toThrow(ModelError);
    await expect(loadCheckpoint(empty)).rejects.toThrow(/no model\.safetensors or pytorch_model\.bin/);
    await writeFile(join(empty, 'model.safetensors.index.json'), '{}');
    await expect(loadCheckpoint(empty)).rejects.toThrow(/sharded checkpoints are not supported/);
    await expect(loadCheckpoint(join(dir, 'missing'))).rejects.toThrow(ModelError);
  });
});
