import { ModelError, UnsafeCheckpointError } from '../../core/errors.js';
import { numel, type WeightMap } from '../tensor.js';
import { DTYPE_BYTES, decodeFloats, type FloatDtype, readWholeFile } from './binary.js';
import type { ReadWeightsOptions } from './safetensors.js';
import { readZipDirectory, type ZipEntry } from './zip.js';

type StorageDtype = FloatDtype | 'I64' | 'U8';

const ELEMENT_BYTES: Record<StorageDtype, number> = { ...DTYPE_BYTES, I64: 8, U8: 1 };

/** What each allowed global is. Nothing here is ever called: REDUCE on them builds plain data. */
type Allowed =
  | { kind: 'ordered_dict' }
  | { kind: 'rebuild_tensor_v2' }
  | { kind: 'rebuild_parameter' }
  | { kind: 'storage_type'; dtype: StorageDtype }
  | { kind: 'dtype'; dtype: FloatDtype };

const ALLOWED_GLOBALS: ReadonlyMap<string, Allowed> = new Map<string, Allowed>([
  ['collections.OrderedDict', { kind: 'ordered_dict' }],
  ['torch._utils._rebuild_tensor_v2', { kind: 'rebuild_tensor_v2' }],
  ['torch._utils._rebuild_parameter', { kind: 'rebuild_parameter' }],
  ['torch.FloatStorage', { kind: 'storage_type', dtype: 'F32' }],
  ['torch.HalfStorage', { kind: 'storage_type', dtype: 'F16' }],
  ['torch.BFloat16Storage', { kind: 'storage_type', dtype: 'BF16' }],
  // int64 `position_ids` buffers of old checkpoints: readable so that they can be skipped by name.
  ['torch.LongStorage', { kind: 'storage_type', dtype: 'I64' }],
  ['torch.UntypedStorage', { kind: 'storage_type', dtype: 'U8' }],
  ['torch.storage.UntypedStorage', { kind: 'storage_type', dtype: 'U8' }],
  ['torch.float32', { kind: 'dtype', dtype: 'F32' }],
  ['torch.float16', { kind: 'dtype', dtype: 'F16' }],
  ['torch.bfloat16', { kind: 'dtype', dtype: 'BF16' }],
]);

class PyTuple {
  constructor(readonly items: PyValue[]) {}
}
class PyList {
  constructor(readonly items: PyValue[]) {}
}
class PyDict {
  readonly map = new Map<string | number, PyValue>();
}
class PyGlobal {
  constructor(
    readonly qualified: string,
    readonly allowed: Allowed,
  ) {}
}
class StorageRef {
  constructor(
    readonly key: string,
    readonly dtype: StorageDtype,
    readonly numel: number,
  ) {}
}
class TensorRef {
  constructor(
    readonly storage: StorageRef,
    readonly offset: number,
    readonly size: number[],
    readonly stride: number[],
  ) {}
}
type PyValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | PyTuple
  | PyList
  | PyDict
  | PyGlobal
  | StorageRef
  | TensorRef;

function describe(v: PyValue): string {
  if (v === null) return 'None';
  if (typeof v !== 'object') return typeof v;
  if (v instanceof Uint8Array) return 'bytes';
  if (v instanceof PyGlobal) return v.qualified;
  return v.constructor.name;
}

function asIndex(v: PyValue, what: string, source: string): number {
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return v;
  throw new ModelError(`${source}: ${what} must be a non-negative integer, got ${describe(v)}`);
}

function asIndexTuple(v: PyValue, what: string, source: string): number[] {
  if (!(v instanceof PyTuple)) throw new ModelError(`${source}: ${what} must be a tuple, got ${describe(v)}`);
  return v.items.map((x) => asIndex(x, what, source));
}

/**
 * A restricted unpickler for torch.save's `data.pkl`: it knows only the opcodes a state dict
 * needs and resolves only ALLOWED_GLOBALS; everything else raises UnsafeCheckpointError as soon
 * as it is read, before it could be used.
 */
// biome-ignore lint/complexity/noExcessiveLinesPerFunction: one pickle machine, its opcode switch read as one table; split, its shared stack and memo would be threaded through every piece.
function unpickleStateDict(pkl: Uint8Array, source: string): Map<string, TensorRef> {
  const dv = new DataView(pkl.buffer, pkl.byteOffset, pkl.byteLength);
  const text = new TextDecoder('utf-8', { fatal: true });
  let pos = 0;
  let stack: PyValue[] = [];
  const metastack: PyValue[][] = [];
  const memo = new Map<number, PyValue>();
  const storages = new Map<string, StorageRef>();

  const need = (n: number): number => {
    if (pos + n > pkl.byteLength) throw new ModelError(`${source}: pickle truncated at byte ${pos}`);
    const at = pos;
    pos += n;
    return at;
  };
  const pop = (): PyValue => {
    if (stack.length === 0) throw new ModelError(`${source}: pickle stack underflow at byte ${pos}`);
    return stack.pop() as PyValue;
  };
  const top = (): PyValue => {
    if (stack.length === 0) throw new ModelError(`${source}: pickle stack underflow at byte ${pos}`);
    return stack[stack.length - 1];
  };
  const popMark = (): PyValue[] => {
    const items = stack;
    const prev = metastack.pop();
    if (prev === undefined) throw new ModelError(`${source}: pickle MARK missing at byte ${pos}`);
    stack = prev;
    return items;
  };
  const readLine = (): string => {
    const end = pkl.indexOf(0x0a, pos);
    if (end < 0) throw new ModelError(`${source}: pickle truncated in a GLOBAL at byte ${pos}`);
    const s = Buffer.from(pkl.buffer, pkl.byteOffset + pos, end - pos).toString('latin1');
    pos = end + 1;
    return s;
  };
  const str = (n: number): string => {
    const at = need(n);
    return text.decode(pkl.subarray(at, at + n));
  };
  const resolveGlobal = (module: string, name: string): PyGlobal => {
    const qualified = `${module}.${name}`;
    const allowed = ALLOWED_GLOBALS.get(qualified);
    if (!allowed) throw new UnsafeCheckpointError(source, qualified, 'is not an allowed global');
    return new PyGlobal(qualified, allowed);
  };
  const setItems = (target: PyValue, kv: PyValue[]): void => {
    if (!(target instanceof PyDict)) throw new ModelError(`${source}: SETITEM(S) on ${describe(target)}`);
    if (kv.length % 2 !== 0) throw new ModelError(`${source}: SETITEMS with an odd number of items`);
    for (let i = 0; i < kv.length; i += 2) {
      const k = kv[i];
      if (typeof k !== 'string' && typeof k !== 'number')
        throw new ModelError(`${source}: dict key ${describe(k)}`);
      target.map.set(k, kv[i + 1]);
    }
  };
  const append = (target: PyValue, items: PyValue[]): void => {
    if (!(target instanceof PyList)) throw new ModelError(`${source}: APPEND(S) on ${describe(target)}`);
    // Not push(...items): a hostile APPENDS can carry more items than a call can take arguments.
    for (const item of items) target.items.push(item);
  };
  const persistentLoad = (pid: PyValue): StorageRef => {
    if (!(pid instanceof PyTuple) || pid.items.length !== 5 || pid.items[0] !== 'storage') {
      throw new ModelError(`${source}: unexpected persistent id ${describe(pid)}`);
    }
    const [, type, key, , count] = pid.items;
    if (!(type instanceof PyGlobal) || type.allowed.kind !== 'storage_type') {
      throw new ModelError(`${source}: persistent id names ${describe(type)}, not a storage type`);
    }
    if (typeof key !== 'string' || !/^[A-Za-z0-9_]+$/.test(key)) {
      throw new ModelError(`${source}: bad storage key ${JSON.stringify(key)}`);
    }
    const n = asIndex(count, 'storage size', source);
    const seen = storages.get(key);
    if (seen) {
      if (seen.dtype !== type.allowed.dtype)
        throw new ModelError(`${source}: storage ${key} used with two dtypes`);
      return seen;
    }
    const ref = new StorageRef(key, type.allowed.dtype, n);
    storages.set(key, ref);
    return ref;
  };
  const reduce = (fn: PyValue, args: PyValue): PyValue => {
    if (!(fn instanceof PyGlobal))
      throw new UnsafeCheckpointError(source, `REDUCE on ${describe(fn)}`, 'is not supported');
    if (!(args instanceof PyTuple)) throw new ModelError(`${source}: REDUCE arguments are ${describe(args)}`);
    const a = args.items;
    switch (fn.allowed.kind) {
      case 'ordered_dict': {
        const d = new PyDict();
        if (a.length === 0) return d;
        const pairs = a[0];
        if (a.length === 1 && pairs instanceof PyList) {
          for (const p of pairs.items) {
            if (!(p instanceof PyTuple) || p.items.length !== 2)
              throw new ModelError(`${source}: OrderedDict item`);
            setItems(d, p.items);
          }
          return d;
        }
        throw new ModelError(`${source}: unsupported OrderedDict arguments`);
      }
      case 'rebuild_tensor_v2': {
        if (a.length < 6 || a.length > 7)
          throw new ModelError(`${source}: _rebuild_tensor_v2 with ${a.length} arguments`);
        const storage = a[0];
        if (!(storage instanceof StorageRef))
          throw new ModelError(`${source}: tensor storage is ${describe(storage)}`);
        const offset = asIndex(a[1], 'storage offset', source);
        const size = asIndexTuple(a[2], 'tensor size', source);
        const stride = asIndexTuple(a[3], 'tensor stride', source);
        if (size.length !== stride.length)
          throw new ModelError(`${source}: tensor size and stride ranks differ`);
        return new TensorRef(storage, offset, size, stride);
      }
      case 'rebuild_parameter': {
        if (!(a[0] instanceof TensorRef))
          throw new ModelError(`${source}: _rebuild_parameter of ${describe(a[0])}`);
        return a[0];
      }
      default:
        throw new UnsafeCheckpointError(source, `calling ${fn.qualified}`, 'is not allowed');
    }
  };

  for (;;) {
    const at = need(1);
    const op = pkl[at];
    switch (op) {
      case 0x80: // PROTO
        if (pkl[need(1)] > 5)
          throw new ModelError(`${source}: pickle protocol ${pkl[at + 1]} is newer than 5`);
        break;
      case 0x95: // FRAME: a length hint only
        need(8);
        break;
      case 0x2e: {
        // STOP
        const result = pop();
        return toStateDict(result, source);
      }
      case 0x28: // MARK
        metastack.push(stack);
        stack = [];
        break;
      case 0x7d: // EMPTY_DICT
        stack.push(new PyDict());
        break;
      case 0x5d: // EMPTY_LIST
        stack.push(new PyList([]));
        break;
      case 0x29: // EMPTY_TUPLE
        stack.push(new PyTuple([]));
        break;
      case 0x74: {
        // TUPLE (popMark swaps `stack`, so take the items before pushing)
        const items = popMark();
        stack.push(new PyTuple(items));
        break;
      }
      case 0x85: // TUPLE1
        stack.push(new PyTuple([pop()]));
        break;
      case 0x86: {
        // TUPLE2
        const b = pop();
        const a = pop();
        stack.push(new PyTuple([a, b]));
        break;
      }
      case 0x87: {
        // TUPLE3
        const c = pop();
        const b = pop();
        const a = pop();
        stack.push(new PyTuple([a, b, c]));
        break;
      }
      case 0x4e: // NONE
        stack.push(null);
        break;
      case 0x88: // NEWTRUE
        stack.push(true);
        break;
      case 0x89: // NEWFALSE
        stack.push(false);
        break;
      case 0x4b: // BININT1
        stack.push(pkl[need(1)]);
        break;
      case 0x4d: // BININT2
        stack.push(dv.getUint16(need(2), true));
        break;
      case 0x4a: // BININT
        stack.push(dv.getInt32(need(4), true));
        break;
      case 0x8a: {
        // LONG1: little-endian two's complement of n bytes
        const n = pkl[need(1)];
        const start = need(n);
        let v = 0n;
        for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(pkl[start + i]);
        if (n > 0 && pkl[start + n - 1] & 0x80) v -= 1n << BigInt(8 * n);
        stack.push(
          v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v,
        );
        break;
      }
      case 0x47: // BINFLOAT (big-endian double)
        stack.push(dv.getFloat64(need(8), false));
        break;
      case 0x58: // BINUNICODE
        stack.push(str(dv.getUint32(need(4), true)));
        break;
      case 0x8c: // SHORT_BINUNICODE
        stack.push(str(pkl[need(1)]));
        break;
      case 0x8d: {
        // BINUNICODE8
        const n = dv.getBigUint64(need(8), true);
        if (n > BigInt(pkl.byteLength)) throw new ModelError(`${source}: pickle string too long`);
        stack.push(str(Number(n)));
        break;
      }
      case 0x43: {
        // SHORT_BINBYTES
        const n = pkl[need(1)];
        const s = need(n);
        stack.push(pkl.slice(s, s + n));
        break;
      }
      case 0x42: {
        // BINBYTES
        const n = dv.getUint32(need(4), true);
        const s = need(n);
        stack.push(pkl.slice(s, s + n));
        break;
      }
      case 0x71: // BINPUT
        memo.set(pkl[need(1)], top());
        break;
      case 0x72: // LONG_BINPUT
        memo.set(dv.getUint32(need(4), true), top());
        break;
      case 0x94: // MEMOIZE
        memo.set(memo.size, top());
        break;
      case 0x68: // BINGET
      case 0x6a: {
        // LONG_BINGET
        const idx = op === 0x68 ? pkl[need(1)] : dv.getUint32(need(4), true);
        if (!memo.has(idx)) throw new ModelError(`${source}: pickle memo ${idx} is empty`);
        stack.push(memo.get(idx) as PyValue);
        break;
      }
      case 0x30: // POP
        pop();
        break;
      case 0x31: // POP_MARK
        popMark();
        break;
      case 0x32: // DUP
        stack.push(top());
        break;
      case 0x63: {
        // GLOBAL "module\nname\n"
        const module = readLine();
        const name = readLine();
        stack.push(resolveGlobal(module, name));
        break;
      }
      case 0x93: {
        // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') {
          throw new UnsafeCheckpointError(source, 'STACK_GLOBAL with non-string operands');
        }
        stack.push(resolveGlobal(module, name));
        break;
      }
      case 0x51: // BINPERSID
        stack.push(persistentLoad(pop()));
        break;
      case 0x52: {
        // REDUCE
        const args = pop();
        const fn = pop();
        stack.push(reduce(fn, args));
        break;
      }
      case 0x62: {
        // BUILD: torch sets `_metadata` (module versions) on the OrderedDict; plain data, dropped.
        pop();
        const target = top();
        if (!(target instanceof PyDict)) {
          throw new UnsafeCheckpointError(source, `BUILD on ${describe(target)}`, 'is not supported');
        }
        break;
      }
      case 0x73: {
        // SETITEM
        const v = pop();
        const k = pop();
        setItems(top(), [k, v]);
        break;
      }
      case 0x75: {
        // SETITEMS
        const items = popMark();
        setItems(top(), items);
        break;
      }
      case 0x61: {
        // APPEND
        const v = pop();
        append(top(), [v]);
        break;
      }
      case 0x65: {
        // APPENDS
        const items = popMark();
        append(top(), items);
        break;
      }
      default:
        throw new UnsafeCheckpointError(
          source,
          `opcode 0x${op.toString(16).padStart(2, '0')} (${JSON.stringify(String.fromCharCode(op))}) at byte ${at}`,
          'is not supported',
        );
    }
  }
}

function toStateDict(result: PyValue, source: string): Map<string, TensorRef> {
  if (!(result instanceof PyDict))
    throw new ModelError(`${source}: the pickle holds a ${describe(result)}, not a state dict`);
  const out = new Map<string, TensorRef>();
  for (const [k, v] of result.map) {
    if (typeof k !== 'string') throw new ModelError(`${source}: state dict key ${k} is not a string`);
    if (!(v instanceof TensorRef)) throw new ModelError(`${source}: ${k} is a ${describe(v)}, not a tensor`);
    out.set(k, v);
  }
  return out;
}

function contiguousStrides(size: readonly number[]): number[] {
  const s = new Array<number>(size.length);
  let acc = 1;
  for (let i = size.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= size[i];
  }
  return s;
}

/** Materialise one tensor as contiguous float32, honouring storage offset and strides. */
function materialise(
  key: string,
  t: TensorRef,
  buf: Uint8Array,
  member: ZipEntry,
  source: string,
): Float32Array {
  const { dtype } = t.storage;
  if (dtype !== 'F32' && dtype !== 'F16' && dtype !== 'BF16') {
    throw new ModelError(`${source}: ${key}: dtype ${dtype} is not supported (F32, F16 and BF16 are)`);
  }
  const width = ELEMENT_BYTES[dtype];
  if (t.storage.numel * width > member.size) {
    throw new ModelError(
      `${source}: ${key}: storage ${t.storage.key} holds ${member.size} bytes, needs ${t.storage.numel * width}`,
    );
  }
  const n = numel(t.size);
  if (n === 0) return new Float32Array(0);
  // Zero or overlapping strides would let a few pickle bytes ask for an arbitrarily large copy.
  if (n > t.storage.numel) {
    throw new ModelError(
      `${source}: ${key}: a ${JSON.stringify(t.size)} view has more elements than its ${t.storage.numel}-element storage`,
    );
  }
  let last = t.offset;
  for (let i = 0; i < t.size.length; i++) last += (t.size[i] - 1) * t.stride[i];
  if (last >= t.storage.numel) {
    throw new ModelError(
      `${source}: ${key}: size/stride/offset reach element ${last} of a ${t.storage.numel}-element storage`,
    );
  }
  const want = contiguousStrides(t.size);
  const contiguous = t.size.every((s, i) => s === 1 || t.stride[i] === want[i]);
  if (contiguous) return decodeFloats(buf, member.dataOffset + t.offset * width, n, dtype);
  const span = decodeFloats(buf, member.dataOffset + t.offset * width, last - t.offset + 1, dtype);
  const out = new Float32Array(n);
  const rank = t.size.length;
  const idx = new Array<number>(rank).fill(0);
  let src = 0;
  for (let o = 0; o < n; o++) {
    out[o] = span[src];
    for (let d = rank - 1; d >= 0; d--) {
      idx[d]++;
      src += t.stride[d];
      if (idx[d] < t.size[d]) break;
      src -= t.stride[d] * t.size[d];
      idx[d] = 0;
    }
  }
  return out;
}

/**
 * Read a `pytorch_model.bin` written by torch.save (zip format, torch ≥ 1.6) as float32 weights.
 * Tensors sharing a storage (tied weights) come back as separate entries; aligned contiguous
 * F32 tensors are views into the one file buffer.
 */
export async function readTorchBin(path: string, options: ReadWeightsOptions = {}): Promise<WeightMap> {
  const buf = await readWholeFile(path);
  return parseTorchBin(buf, path, options);
}

export function parseTorchBin(
  buf: Uint8Array,
  source = 'pytorch_model.bin',
  options: ReadWeightsOptions = {},
): WeightMap {
  if (buf.byteLength >= 2 && buf[0] === 0x80 && buf[1] <= 5) {
    throw new ModelError(
      `${source}: legacy (pre-1.6, non-zip) torch.save format is not supported; re-save it with torch ≥ 1.6`,
    );
  }
  const entries = readZipDirectory(buf, source);
  const pklNames = [...entries.keys()].filter((n) => /^[^/]+\/data\.pkl$/.test(n));
  if (pklNames.length !== 1) {
    throw new ModelError(`${source}: expected one <archive>/data.pkl in the zip, found ${pklNames.length}`);
  }
  const prefix = pklNames[0].slice(0, -'data.pkl'.length);
  const byteorder = entries.get(`${prefix}byteorder`);
  if (byteorder) {
    const order = Buffer.from(buf.buffer, buf.byteOffset + byteorder.dataOffset, byteorder.size).toString(
      'latin1',
    );
    if (order.trim() !== 'little')
      throw new ModelError(`${source}: ${order.trim()}-endian checkpoints are not supported`);
  }
  const pklEntry = entries.get(pklNames[0]) as ZipEntry;
  const pkl = buf.subarray(pklEntry.dataOffset, pklEntry.dataOffset + pklEntry.size);
  const tensors = unpickleStateDict(pkl, source);
  const weights: WeightMap = new Map();
  // Many keys can name one storage (tied weights do); each copy counts, so that a small pickle naming a
  // large storage thousands of times cannot multiply the file's size in memory. Legitimate files stay
  // far below this (half storages widen 2x, tied copies are few).
  const copyBudget = 2 * buf.byteLength;
  let copied = 0;
  for (const [key, t] of tensors) {
    if (options.skip?.(key)) continue;
    const member = entries.get(`${prefix}data/${t.storage.key}`);
    if (!member) throw new ModelError(`${source}: ${key}: storage ${prefix}data/${t.storage.key} is missing`);
    // materialise() caps one copy at its storage's size, so checking after it bounds the overshoot.
    const data = materialise(key, t, buf, member, source);
    if (data.buffer !== buf.buffer) copied += data.length;
    if (copied > copyBudget) {
      throw new ModelError(`${source}: ${key}: the tensors would take more than ${copyBudget} elements`);
    }
    weights.set(key, { shape: [...t.size], data });
  }
  return weights;
}
