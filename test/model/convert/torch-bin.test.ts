import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ModelError, UnsafeCheckpointError } from '../../../src/core/errors.js';
import { readSafetensors } from '../../../src/model/convert/safetensors.js';
import { parseTorchBin, readTorchBin } from '../../../src/model/convert/torch-bin.js';
import type { HostTensor } from '../../../src/model/tensor.js';

const FIX = 'test/fixtures/blip-tiny';

/** A stored (uncompressed) zip, laid out as torch.save writes it. */
function zip(members: Array<[string, Uint8Array]>): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const [name, data] of members) {
    const n = Buffer.from(name);
    const crc = crc32(data);
    const lh = Buffer.alloc(30);
    lh.writeUInt32LE(0x04034b50, 0);
    lh.writeUInt16LE(20, 4);
    lh.writeUInt32LE(crc, 14);
    lh.writeUInt32LE(data.length, 18);
    lh.writeUInt32LE(data.length, 22);
    lh.writeUInt16LE(n.length, 26);
    const ch = Buffer.alloc(46);
    ch.writeUInt32LE(0x02014b50, 0);
    ch.writeUInt16LE(20, 4);
    ch.writeUInt16LE(20, 6);
    ch.writeUInt32LE(crc, 16);
    ch.writeUInt32LE(data.length, 20);
    ch.writeUInt32LE(data.length, 24);
    ch.writeUInt16LE(n.length, 28);
    ch.writeUInt32LE(offset, 42);
    locals.push(lh, n, Buffer.from(data));
    centrals.push(ch, n);
    offset += 30 + n.length + data.length;
  }
  const cd = Buffer.concat(centrals);
  const eocd = Buffer.alloc(22);
  eocd.writeUInt32LE(0x06054b50, 0);
  eocd.writeUInt16LE(members.length, 8);
  eocd.writeUInt16LE(members.length, 10);
  eocd.writeUInt32LE(cd.length, 12);
  eocd.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, cd, eocd]);
}

/** Pickle opcodes, enough to write what torch.save writes (and hostile variants). */
const P = {
  proto: (v: number) => Buffer.from([0x80, v]),
  global: (m: string, n: string) => Buffer.from(`c${m}\n${n}\n`, 'latin1'),
  str: (s: string) => {
    const b = Buffer.from(s);
    const h = Buffer.alloc(5);
    h[0] = 0x58;
    h.writeUInt32LE(b.length, 1);
    return Buffer.concat([h, b]);
  },
  shortStr: (s: string) => Buffer.concat([Buffer.from([0x8c, Buffer.byteLength(s)]), Buffer.from(s)]),
  int: (v: number) => {
    const b = Buffer.alloc(5);
    b[0] = 0x4a;
    b.writeInt32LE(v, 1);
    return b;
  },
  mark: Buffer.from('('),
  tuple: Buffer.from('t'),
  emptyTuple: Buffer.from(')'),
  reduce: Buffer.from('R'),
  persid: Buffer.from('Q'),
  newFalse: Buffer.from([0x89]),
  setitems: Buffer.from('u'),
  stackGlobal: Buffer.from([0x93]),
  stop: Buffer.from('.'),
};

interface FakeTensor {
  key: string;
  storage: string;
  storageType: string;
  storageNumel: number;
  offset: number;
  size: number[];
  stride: number[];
}

function tensorPickle(t: FakeTensor): Buffer {
  return Buffer.concat([
    P.str(t.key),
    P.global('torch._utils', '_rebuild_tensor_v2'),
    P.mark,
    P.mark,
    P.str('storage'),
    P.global('torch', t.storageType),
    P.str(t.storage),
    P.str('cpu'),
    P.int(t.storageNumel),
    P.tuple,
    P.persid,
    P.int(t.offset),
    P.mark,
    ...t.size.map(P.int),
    P.tuple,
    P.mark,
    ...t.stride.map(P.int),
    P.tuple,
    P.newFalse,
    P.global('collections', 'OrderedDict'),
    P.emptyTuple,
    P.reduce,
    P.tuple,
    P.reduce,
  ]);
}

function stateDictPickle(tensors: FakeTensor[]): Buffer {
  return Buffer.concat([
    P.proto(2),
    P.global('collections', 'OrderedDict'),
    P.emptyTuple,
    P.reduce,
    P.mark,
    ...tensors.map(tensorPickle),
    P.setitems,
    P.stop,
  ]);
}

function f32(values: number[]): Buffer {
  const b = Buffer.alloc(values.length * 4);
  for (const [i, v] of values.entries()) b.writeFloatLE(v, i * 4);
  return b;
}

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'capfilt-bin-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function sameBits(a: HostTensor | undefined, b: HostTensor | undefined): boolean {
  if (!a || !b || JSON.stringify(a.shape) !== JSON.stringify(b.shape)) return false;
  return Buffer.from(a.data.buffer, a.data.byteOffset, a.data.byteLength).equals(
    Buffer.from(b.data.buffer, b.data.byteOffset, b.data.byteLength),
  );
}

describe('readTorchBin on the fixture', () => {
  for (const kind of ['captioner', 'filter']) {
    it(`${kind}: pytorch_model.bin holds exactly the safetensors tensors`, async () => {
      const st = await readSafetensors(join(FIX, kind, 'model.safetensors'));
      const bin = await readTorchBin(join(FIX, `${kind}-bin`, 'pytorch_model.bin'));
      for (const [key, t] of st) expect(sameBits(bin.get(key), t), key).toBe(true);
      // The .bin keeps the tied alias that safetensors dedups; it must equal its twin.
      const extra = [...bin.keys()].filter((k) => !st.has(k));
      if (kind === 'captioner') {
        expect(extra).toEqual(['text_decoder.cls.predictions.decoder.bias']);
        expect(sameBits(bin.get(extra[0]), st.get('text_decoder.cls.predictions.bias'))).toBe(true);
      } else {
        expect(extra).toEqual([]);
      }
    });
  }
});

describe('parseTorchBin on hand-built archives', () => {
  it('honours storage offset, strides, shared storages and half storages', () => {
    // storage 0: 0..11; a = 3x2 contiguous from offset 1; b = transpose of a 2x3 view (strides 1,3);
    // c = every other element (stride 2); h = half storage [1, -2, 0.5].
    const storage0 = f32([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    const half = Buffer.alloc(6);
    half.writeUInt16LE(0x3c00, 0);
    half.writeUInt16LE(0xc000, 2);
    half.writeUInt16LE(0x3800, 4);
    const base = { storage: '0', storageType: 'FloatStorage', storageNumel: 12 };
    const pkl = stateDictPickle([
      { key: 'a', ...base, offset: 1, size: [3, 2], stride: [2, 1] },
      { key: 'b', ...base, offset: 0, size: [3, 2], stride: [1, 3] },
      { key: 'c', ...base, offset: 1, size: [4], stride: [2] },
      { key: 'scalar', ...base, offset: 11, size: [], stride: [] },
      {
        key: 'h',
        storage: '1',
        storageType: 'HalfStorage',
        storageNumel: 3,
        offset: 0,
        size: [3],
        stride: [1],
      },
    ]);
    const w = parseTorchBin(
      zip([
        ['archive/data.pkl', pkl],
        ['archive/byteorder', Buffer.from('little')],
        ['archive/data/0', storage0],
        ['archive/data/1', half],
        ['archive/version', Buffer.from('3\n')],
      ]),
    );
    expect([...(w.get('a')?.data ?? [])]).toEqual([1, 2, 3, 4, 5, 6]);
    expect(w.get('b')?.shape).toEqual([3, 2]);
    expect([...(w.get('b')?.data ?? [])]).toEqual([0, 3, 1, 4, 2, 5]);
    expect([...(w.get('c')?.data ?? [])]).toEqual([1, 3, 5, 7]);
    expect(w.get('scalar')?.shape).toEqual([]);
    expect([...(w.get('scalar')?.data ?? [])]).toEqual([11]);
    expect([...(w.get('h')?.data ?? [])]).toEqual([1, -2, 0.5]);
  });

  it('rejects views that reach past their storage, and missing storages', () => {
    const pkl = (t: Partial<FakeTensor>) =>
      stateDictPickle([
        {
          key: 'w',
          storage: '0',
          storageType: 'FloatStorage',
          storageNumel: 4,
          offset: 0,
          size: [4],
          stride: [1],
          ...t,
        },
      ]);
    const data = f32([1, 2, 3, 4]);
    expect(() =>
      parseTorchBin(
        zip([
          ['a/data.pkl', pkl({ offset: 1 })],
          ['a/data/0', data],
        ]),
      ),
    ).toThrow(/w: size\/stride/);
    expect(() =>
      parseTorchBin(
        zip([
          ['a/data.pkl', pkl({ storage: '9' })],
          ['a/data/0', data],
        ]),
      ),
    ).toThrow(/storage a\/data\/9 is missing/);
    expect(() =>
      parseTorchBin(
        zip([
          ['a/data.pkl', pkl({ storageNumel: 8, size: [8] })],
          ['a/data/0', data],
        ]),
      ),
    ).toThrow(/holds 16 bytes, needs 32/);
  });

  it('refuses views larger than their storage, and storages named over and over', () => {
    const data = f32([1, 2, 3, 4]);
    const base = { storage: '0', storageType: 'FloatStorage', storageNumel: 4, offset: 0 };
    // Stride 0 stays inside the storage whatever the size: 16 bytes asking for a million floats.
    const broadcast = stateDictPickle([{ key: 'w', ...base, size: [1_000_000], stride: [0] }]);
    expect(() =>
      parseTorchBin(
        zip([
          ['a/data.pkl', broadcast],
          ['a/data/0', data],
        ]),
      ),
    ).toThrow(/w: a \[1000000\] view has more elements than its 4-element storage/);

    // Every key a strided copy of the whole half storage: a few hundred kB of pickle, ~40x that in floats.
    const numelHalf = 4096;
    const many = Array.from({ length: 2000 }, (_, i) => ({
      key: `k${i}`,
      storage: '0',
      storageType: 'HalfStorage',
      storageNumel: numelHalf,
      offset: 0,
      size: [numelHalf / 2],
      stride: [2],
    }));
    expect(() =>
      parseTorchBin(
        zip([
          ['a/data.pkl', stateDictPickle(many)],
          ['a/data/0', Buffer.alloc(numelHalf * 2)],
        ]),
      ),
    ).toThrow(/the tensors would take more than \d+ elements/);
  });

  it('refuses corrupt zip directories with a ModelError, never reading outside the file', () => {
    const good = zip([
      ['a/data.pkl', stateDictPickle([])],
      ['a/data/0', f32([1])],
    ]);
    const central = good.indexOf(Buffer.from([0x50, 0x4b, 0x01, 0x02]));
    const corrupt = (edit: (b: Buffer) => void): Buffer => {
      const b = Buffer.from(good);
      edit(b);
      return b;
    };
    // An extra-field length that runs past the end of the file.
    expect(() => parseTorchBin(corrupt((b) => b.writeUInt16LE(0xffff, central + 30)))).toThrow(
      /zip central directory entry 0 runs past the end of the file/,
    );
    // A zip64 size marker whose zip64 extra field is too short to hold the size: the name's bytes
    // become an empty extra field (id 1, length 0) instead of a name.
    const zip64 = corrupt((b) => {
      b.writeUInt32LE(0xffffffff, central + 24);
      b.writeUInt16LE(0, central + 28);
      b.writeUInt16LE(4, central + 30);
      b.writeUInt32LE(0x00000001, central + 46);
    });
    expect(() => parseTorchBin(zip64)).toThrow(/zip member : short zip64 field/);
  });

  it('refuses a pickle that is not a state dict, however long its lists', () => {
    // EMPTY_LIST, MARK, 300k NONEs, APPENDS, STOP: more items than one call can spread.
    const pkl = Buffer.concat([
      P.proto(2),
      Buffer.from([0x5d]),
      P.mark,
      Buffer.alloc(300_000, 0x4e),
      Buffer.from('e'),
      P.stop,
    ]);
    expect(() => parseTorchBin(zip([['a/data.pkl', pkl]]))).toThrow(/holds a PyList, not a state dict/);
  });

  it('drops skipped int64 buffers and refuses them otherwise', () => {
    const pkl = stateDictPickle([
      {
        key: 'x.position_ids',
        storage: '0',
        storageType: 'LongStorage',
        storageNumel: 2,
        offset: 0,
        size: [1, 2],
        stride: [2, 1],
      },
    ]);
    const z = zip([
      ['a/data.pkl', pkl],
      ['a/data/0', Buffer.alloc(16)],
    ]);
    expect(() => parseTorchBin(z)).toThrow(/x\.position_ids: dtype I64 is not supported/);
    expect(parseTorchBin(z, 'x', { skip: (k) => k.endsWith('.position_ids') }).size).toBe(0);
  });

  it('refuses a legacy (non-zip) torch.save file and non-zip bytes', () => {
    expect(() => parseTorchBin(Buffer.from([0x80, 0x02, 0x8a, 0x0a]))).toThrow(/legacy/);
    expect(() => parseTorchBin(Buffer.from('definitely not a zip archive, just text'))).toThrow(/not a zip/);
  });
});

describe('hostile pickles', () => {
  const marker = () => join(dir, `pwned-${Math.random().toString(36).slice(2)}`);

  async function expectRefused(pkl: Buffer, refused: RegExp, sentinel: string): Promise<void> {
    const path = join(dir, `${Math.random().toString(36).slice(2)}.bin`);
    await writeFile(
      path,
      zip([
        ['archive/data.pkl', pkl],
        ['archive/data/0', f32([1])],
      ]),
    );
    const err = await readTorchBin(path).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(UnsafeCheckpointError);
    expect(err).toBeInstanceOf(ModelError);
    expect((err as UnsafeCheckpointError).refused).toMatch(refused);
    expect((err as Error).message).toContain(
      `refusing unsafe checkpoint: ${(err as UnsafeCheckpointError).refused}`,
    );
    expect(existsSync(sentinel)).toBe(false);
  }

  it('refuses os.system named by GLOBAL', async () => {
    const sentinel = marker();
    const pkl = Buffer.concat([
      P.proto(2),
      P.global('os', 'system'),
      P.str(`touch ${sentinel}`),
      Buffer.from([0x85]), // TUPLE1
      P.reduce,
      P.stop,
    ]);
    await expectRefused(pkl, /^os\.system$/, sentinel);
  });

  it('refuses builtins.eval named by STACK_GLOBAL (protocol 4)', async () => {
    const sentinel = marker();
    const pkl = Buffer.concat([
      P.proto(4),
      P.shortStr('builtins'),
      P.shortStr('eval'),
      P.stackGlobal,
      P.str(`__import__('os').system('touch ${sentinel}')`),
      Buffer.from([0x85]),
      P.reduce,
      P.stop,
    ]);
    await expectRefused(pkl, /^builtins\.eval$/, sentinel);
  });

  it('refuses a hostile global hidden after valid tensors', async () => {
    const sentinel = marker();
    const good = stateDictPickle([
      {
        key: 'w',
        storage: '0',
        storageType: 'FloatStorage',
        storageNumel: 1,
        offset: 0,
        size: [1],
        stride: [1],
      },
    ]);
    const pkl = Buffer.concat([
      good.subarray(0, good.length - 2), // drop SETITEMS + STOP
      P.str('evil'),
      P.global('subprocess', 'check_call'),
      P.str(`touch ${sentinel}`),
      Buffer.from([0x85]),
      P.reduce,
      P.setitems,
      P.stop,
    ]);
    await expectRefused(pkl, /^subprocess\.check_call$/, sentinel);
  });

  it('refuses calling an allowed non-function global and unknown opcodes', async () => {
    await expectRefused(
      Buffer.concat([P.proto(2), P.global('torch', 'FloatStorage'), P.emptyTuple, P.reduce, P.stop]),
      /calling torch\.FloatStorage/,
      marker(),
    );
    // INST (0x69) and NEWOBJ (0x81) build objects; neither is ever accepted.
    await expectRefused(Buffer.from('(ios\nsystem\n.', 'latin1'), /opcode 0x69/, marker());
    await expectRefused(
      Buffer.concat([
        P.proto(2),
        P.global('collections', 'OrderedDict'),
        P.emptyTuple,
        Buffer.from([0x81]),
        P.stop,
      ]),
      /opcode 0x81/,
      marker(),
    );
  });
});
