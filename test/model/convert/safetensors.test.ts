import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ModelError } from '../../../src/core/errors.js';
import {
  parseSafetensors,
  readSafetensors,
  writeSafetensors,
} from '../../../src/model/convert/safetensors.js';
import type { WeightMap } from '../../../src/model/tensor.js';

const FIXTURE = 'test/fixtures/blip-tiny/captioner/model.safetensors';

/** Build a safetensors image by hand: header JSON (optionally unpadded) + raw data. */
function build(header: Record<string, unknown>, data: Uint8Array, pad = true): Buffer {
  let json = Buffer.from(JSON.stringify(header));
  if (pad) json = Buffer.concat([json, Buffer.alloc((8 - (json.length % 8)) % 8, 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([len, json, data]);
}

function u16le(values: number[]): Uint8Array {
  const b = Buffer.alloc(values.length * 2);
  for (const [i, v] of values.entries()) b.writeUInt16LE(v, i * 2);
  return b;
}

function f32le(values: number[]): Uint8Array {
  const b = Buffer.alloc(values.length * 4);
  for (const [i, v] of values.entries()) b.writeFloatLE(v, i * 4);
  return b;
}

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'capfilt-st-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('readSafetensors', () => {
  it('reads the fixture: every tensor as float32 with the header shapes and the raw values', async () => {
    const weights = await readSafetensors(FIXTURE);
    const raw = await readFile(FIXTURE);
    const n = Number(raw.readBigUInt64LE(0));
    const header = JSON.parse(raw.subarray(8, 8 + n).toString()) as Record<
      string,
      { dtype: string; shape: number[]; data_offsets: [number, number] }
    >;
    const keys = Object.keys(header).filter((k) => k !== '__metadata__');
    expect(weights.size).toBe(keys.length);
    expect(weights.has('__metadata__')).toBe(false);
    expect(weights.get('text_decoder.bert.embeddings.word_embeddings.weight')?.shape).toEqual([30524, 32]);
    for (const key of keys) {
      const t = weights.get(key);
      expect(t?.shape).toEqual(header[key].shape);
      const [begin, end] = header[key].data_offsets;
      expect(t?.data.length).toBe((end - begin) / 4);
      const at = 8 + n + begin;
      // Spot-check first, middle and last element against the bytes on disk.
      for (const i of [0, Math.floor((t?.data.length ?? 1) / 2), (t?.data.length ?? 1) - 1]) {
        expect(t?.data[i]).toBe(raw.readFloatLE(at + i * 4));
      }
    }
  });

  it('widens F16 and BF16 to float32 exactly, aligned or not', () => {
    const f16 = [0x3c00, 0xc000, 0x3555, 0x7bff, 0x0001, 0x8000, 0x7c00];
    const f16want = [1, -2, 0.333251953125, 65504, 2 ** -24, -0, Number.POSITIVE_INFINITY];
    const bf16 = [0x3f80, 0xc040, 0x3eaa, 0x4049];
    const bf16want = [1, -3, 0.33203125, 3.140625];
    // An odd-length F16 first puts the BF16 and F32 tensors at unaligned offsets (copy path).
    const data = Buffer.concat([u16le(f16), u16le(bf16), f32le([1.5, -0.25])]);
    const header = {
      __metadata__: { format: 'pt' },
      a: { dtype: 'F16', shape: [7], data_offsets: [0, 14] },
      b: { dtype: 'BF16', shape: [2, 2], data_offsets: [14, 22] },
      c: { dtype: 'F32', shape: [2], data_offsets: [22, 30] },
    };
    for (const pad of [true, false]) {
      const w = parseSafetensors(build(header, data, pad));
      expect([...(w.get('a')?.data ?? [])]).toEqual(f16want);
      expect(Object.is(w.get('a')?.data[5], -0)).toBe(true);
      expect([...(w.get('b')?.data ?? [])]).toEqual(bf16want);
      expect(w.get('b')?.shape).toEqual([2, 2]);
      expect([...(w.get('c')?.data ?? [])]).toEqual([1.5, -0.25]);
    }
  });

  it('rejects dtypes other than F32/F16/BF16 naming the key, unless skipped', () => {
    const buf = build(
      {
        'text_encoder.embeddings.position_ids': { dtype: 'I64', shape: [1, 2], data_offsets: [0, 16] },
        w: { dtype: 'F32', shape: [1], data_offsets: [16, 20] },
      },
      Buffer.concat([Buffer.alloc(16), f32le([2])]),
    );
    expect(() => parseSafetensors(buf)).toThrow(/text_encoder\.embeddings\.position_ids: dtype I64/);
    const w = parseSafetensors(buf, 'x', { skip: (k) => k.endsWith('position_ids') });
    expect([...w.keys()]).toEqual(['w']);
  });

  it('rejects corrupt headers with ModelError', () => {
    const ok = { w: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } };
    const data = f32le([1, 2]);
    const cases: Array<[Buffer, RegExp]> = [
      [Buffer.alloc(4), /too short/],
      [
        (() => {
          const b = build(ok, data);
          b.writeBigUInt64LE(10_000n);
          return b;
        })(),
        /exceeds the file/,
      ],
      [
        (() => {
          const b = build(ok, data);
          b.write('#', 8);
          return b;
        })(),
        /not valid JSON/,
      ],
      [
        build({ w: { dtype: 'F32', shape: [2], data_offsets: [0, 16] } }, data),
        /outside the 8-byte data section/,
      ],
      [build({ w: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, data), /needs 12 bytes/],
      [build({ w: { dtype: 'F32', shape: [-2], data_offsets: [0, 8] } }, data), /not a list of sizes/],
      [build({ w: { dtype: 'Q7', shape: [2], data_offsets: [0, 8] } }, data), /unknown dtype/],
      [
        build(
          {
            a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
            b: { dtype: 'F32', shape: [1], data_offsets: [4, 8] },
          },
          data,
        ),
        /overlap or gap/,
      ],
      [build(ok, Buffer.concat([data, Buffer.alloc(4)])), /cover 8 of 12/],
      [build([1, 2] as unknown as Record<string, unknown>, data), /not a JSON object/],
    ];
    for (const [buf, re] of cases) {
      expect(() => parseSafetensors(buf)).toThrow(ModelError);
      expect(() => parseSafetensors(buf)).toThrow(re);
    }
  });
});

describe('writeSafetensors', () => {
  it('round-trips tensors of any rank, with an 8-byte padded header and metadata', async () => {
    const weights: WeightMap = new Map([
      ['z.scalar', { shape: [], data: Float32Array.of(3.25) }],
      ['a.matrix', { shape: [2, 3], data: Float32Array.of(1, -2, 3.5, 1e-30, -0, 7) }],
      ['m.empty', { shape: [0, 4], data: new Float32Array(0) }],
      ['b.odd', { shape: [3], data: Float32Array.of(0.1, 0.2, 0.3) }],
    ]);
    const path = join(dir, 'rt.safetensors');
    await writeSafetensors(path, weights, { format: 'pt' });
    const raw = await readFile(path);
    const n = Number(raw.readBigUInt64LE(0));
    expect(n % 8).toBe(0);
    const header = JSON.parse(raw.subarray(8, 8 + n).toString()) as Record<string, unknown>;
    expect(header.__metadata__).toEqual({ format: 'pt' });
    expect(raw.length).toBe(8 + n + 4 * (1 + 6 + 0 + 3));
    const back = await readSafetensors(path);
    expect(back.size).toBe(weights.size);
    for (const [k, t] of weights) {
      expect(back.get(k)?.shape).toEqual(t.shape);
      expect([...(back.get(k)?.data ?? [])]).toEqual([...t.data]);
    }
    // Deterministic bytes for equal maps, whatever the insertion order.
    const path2 = join(dir, 'rt2.safetensors');
    await writeSafetensors(path2, new Map([...weights].reverse()), { format: 'pt' });
    expect((await readFile(path2)).equals(raw)).toBe(true);
  });

  it('round-trips the fixture checkpoint bit for bit', async () => {
    const weights = await readSafetensors(FIXTURE);
    const path = join(dir, 'fixture-copy.safetensors');
    await writeSafetensors(path, weights);
    const back = await readSafetensors(path);
    expect(back.size).toBe(weights.size);
    for (const [k, t] of weights) {
      const u = back.get(k);
      expect(u?.shape).toEqual(t.shape);
      const got = u ? Buffer.from(u.data.buffer, u.data.byteOffset, u.data.byteLength) : Buffer.alloc(0);
      // Buffer.equals, not toEqual: deep equality over a million elements takes minutes.
      expect(got.equals(Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength))).toBe(true);
    }
  });

  it('refuses a tensor whose data does not match its shape', async () => {
    const path = join(dir, 'bad.safetensors');
    await expect(
      writeSafetensors(path, new Map([['w', { shape: [2, 2], data: new Float32Array(3) }]])),
    ).rejects.toThrow(/w: 3 values for shape \[2,2\]/);
    await writeFile(path, '');
  });
});
