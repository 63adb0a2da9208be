import { closeSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { basename, join } from 'node:path';
import protobuf from 'onnx-proto';
import { GRAPHS } from '../io-names.js';
import type { Quantization } from '../manifest.js';

const { onnx } = protobuf;
type Tensor = protobuf.onnx.ITensorProto;
type Node = protobuf.onnx.INodeProto;

const FLOAT = 1;
const INT8 = 3;

/**
 * capfilt's int8 recipe for CPUs (measured in issue 12): every MatMul with a constant fp32 weight
 * W[K,N] becomes com.microsoft.DynamicQuantizeMatMul with W stored as int8, one symmetric scale
 * per output column (s8, |q| ≤ 127), and the following bias Add folded into the op. onnxruntime
 * quantizes the activations at run time (u8, one scale per tensor). Everything that is not such a
 * MatMul (LayerNorm, attention, GELU, embeddings, the patch convolution) stays fp32, and so do the
 * heads whose outputs are the results: the LM head logits, the ITM head and the ITC projections.
 * The captioner's decoder stays fp32 unless asked: it is bound by memory, gains least (1.3×), and
 * int8 there changes greedy captions most.
 */
export const INT8_KEEP_FP32 = /^(lm_head|itm_head|vision_proj|text_proj)\./;

/** The graphs an int8 import quantizes: the image and text encoders; the decoder only when asked. */
export function int8Roles(roles: readonly string[], quantizeDecoder: boolean): string[] {
  const quantized: string[] = [GRAPHS.vision, GRAPHS.crossKv, GRAPHS.itm, GRAPHS.itcText];
  if (quantizeDecoder) quantized.push(GRAPHS.decoder);
  return roles.filter((r) => quantized.includes(r));
}

function int8Record(graphs: readonly string[], keep: RegExp): Quantization {
  return {
    op: 'com.microsoft.DynamicQuantizeMatMul',
    weights: 's8 symmetric, one scale per output column',
    activations: 'u8, one scale per tensor, computed at run time',
    keptFp32: keep.source,
    graphs: [...graphs],
  };
}

/**
 * s8 per output column of W[K,N] (row-major): scale_n = max_k |W[k,n]| / 127, q = round(W / scale_n).
 * Full-range s8 needs VNNI on x86 (see model/runtime/cpu.ts).
 */
export function quantizeColumns(
  w: Float32Array,
  k: number,
  n: number,
): { q: Int8Array; scale: Float32Array } {
  const scale = new Float32Array(n);
  const q = new Int8Array(k * n);
  for (let c = 0; c < n; c++) {
    let max = 0;
    for (let r = 0; r < k; r++) max = Math.max(max, Math.abs(w[r * n + c]));
    const s = max > 0 ? max / 127 : 1;
    scale[c] = s;
    for (let r = 0; r < k; r++) q[r * n + c] = Math.max(-127, Math.min(127, Math.round(w[r * n + c] / s)));
  }
  return { q, scale };
}

interface Weight {
  name: string;
  dims: number[];
  dataType: number;
  bytes: Uint8Array;
}

/** The external data files of a model directory, read once each. */
class DataFiles {
  private readonly files = new Map<string, Buffer>();
  constructor(private readonly dir: string) {}

  /** An initializer's bytes, inline or in the file its external data names. */
  bytes(t: Tensor): Uint8Array {
    if (t.dataLocation !== onnx.TensorProto.DataLocation.EXTERNAL) return t.rawData ?? new Uint8Array(0);
    const kv = Object.fromEntries((t.externalData ?? []).map((e) => [e.key, e.value ?? '']));
    let data = this.files.get(kv.location);
    if (!data) {
      data = readFileSync(join(this.dir, basename(kv.location)));
      this.files.set(kv.location, data);
    }
    const offset = Number(kv.offset ?? 0);
    return data.subarray(offset, offset + Number(kv.length));
  }

  get names(): string[] {
    return [...this.files.keys()];
  }
}

function floats(b: Uint8Array): Float32Array {
  return new Float32Array(new Uint8Array(b).buffer);
}

/** The bias initializer [N] of an Add that is `y`'s only consumer, when there is one. */
function foldableBias(
  graph: protobuf.onnx.IGraphProto,
  y: string,
  n: number,
): { add: Node; bias: string } | null {
  const users = (graph.node ?? []).filter((node) => node.input?.includes(y));
  if (users.length !== 1 || users[0].opType !== 'Add' || graph.output?.some((o) => o.name === y)) return null;
  const add = users[0];
  const bias = add.input?.[0] === y ? add.input?.[1] : add.input?.[0];
  const t = graph.initializer?.find((i) => i.name === bias);
  if (!bias || !t || t.dataType !== FLOAT || t.dims?.length !== 1 || Number(t.dims[0]) !== n) return null;
  return { add, bias };
}

/**
 * Rewrite one graph's MatMuls over constant fp32 weights with the int8 recipe. `int8` caches the
 * quantized tensors by weight name (graphs of a model share weights). Returns how many it rewrote.
 */
function quantizeGraph(
  graph: protobuf.onnx.IGraphProto,
  data: DataFiles,
  int8: Map<string, Weight[]>,
  keep: RegExp,
): number {
  const inits = new Map((graph.initializer ?? []).map((t) => [t.name ?? '', t]));
  const replaced = new Map<Node, Node | null>();
  for (const node of graph.node ?? []) {
    const name = node.input?.[1] ?? '';
    const w = inits.get(name);
    if (node.opType !== 'MatMul' || (node.domain ?? '') !== '' || !w) continue;
    if (w.dataType !== FLOAT || w.dims?.length !== 2 || keep.test(name)) continue;
    const [k, n] = w.dims.map(Number);
    if (!int8.has(name)) {
      const { q, scale } = quantizeColumns(floats(data.bytes(w)), k, n);
      int8.set(name, [
        { name: `${name}.s8`, dims: [k, n], dataType: INT8, bytes: new Uint8Array(q.buffer) },
        { name: `${name}.scale`, dims: [n], dataType: FLOAT, bytes: new Uint8Array(scale.buffer) },
        { name: `${name}.zero_point`, dims: [n], dataType: INT8, bytes: new Uint8Array(n) },
      ]);
    }
    const added = int8.get(name) ?? [];
    graph.initializer?.push(
      ...added.map((a) =>
        onnx.TensorProto.create({ name: a.name, dims: a.dims, dataType: a.dataType, rawData: a.bytes }),
      ),
    );
    const inputs = [node.input?.[0] ?? '', ...added.map((a) => a.name)];
    let output = node.output?.[0] ?? '';
    const fold = foldableBias(graph, output, n);
    if (fold) {
      inputs.push(fold.bias);
      output = fold.add.output?.[0] ?? '';
      replaced.set(fold.add, null);
    }
    const op = onnx.NodeProto.create({
      opType: 'DynamicQuantizeMatMul',
      domain: 'com.microsoft',
      name: `${node.name}_int8`,
      input: inputs,
      output: [output],
    });
    replaced.set(node, op);
  }
  graph.node = (graph.node ?? []).flatMap((n) => {
    const r = replaced.get(n);
    return r === undefined ? [n] : r === null ? [] : [r];
  });
  const used = new Set(graph.node.flatMap((n) => n.input ?? []));
  graph.initializer = (graph.initializer ?? []).filter((t) => used.has(t.name ?? ''));
  return [...replaced.values()].filter((r) => r !== null).length;
}

/** Name of the one data file an int8 model's graphs share. */
export const INT8_DATA_FILE = 'weights.int8.data';

/**
 * The int8 pass over a model directory's CPU/CUDA graphs (`graphs`: role → file): the graphs of
 * `roles` are quantized, and every graph's weights move into one shared data file (graphs of a
 * model share weights, so files are rewritten together); the old data files are removed.
 * `alsoFp32` names more weights to keep fp32 besides INT8_KEEP_FP32 (to measure what a part's
 * quantization costs in accuracy and buys in speed: `npm run bench -- int8 --variants`).
 */
export function quantizeModel(
  dir: string,
  graphs: Record<string, string>,
  roles: readonly string[],
  progress: (message: string) => void = () => {},
  alsoFp32?: RegExp,
): Quantization {
  const keep = alsoFp32 ? new RegExp(`${INT8_KEEP_FP32.source}|${alsoFp32.source}`) : INT8_KEEP_FP32;
  const data = new DataFiles(dir);
  const int8 = new Map<string, Weight[]>();
  const models = Object.entries(graphs).map(([role, file]) => {
    const model = onnx.ModelProto.decode(readFileSync(join(dir, file)));
    if (roles.includes(role)) {
      const count = quantizeGraph(model.graph as protobuf.onnx.IGraphProto, data, int8, keep);
      progress(`${file}: ${count} weight matrices quantized to int8`);
      if (!model.opsetImport?.some((o) => o.domain === 'com.microsoft'))
        model.opsetImport?.push({ domain: 'com.microsoft', version: 1 });
    }
    return { file, model };
  });
  writeShared(dir, models, data);
  for (const old of data.names)
    if (basename(old) !== INT8_DATA_FILE) rmSync(join(dir, basename(old)), { force: true });
  return int8Record(roles, keep);
}

/** Every large initializer of `models` into INT8_DATA_FILE once (by name), then the graphs. */
function writeShared(
  dir: string,
  models: { file: string; model: protobuf.onnx.ModelProto }[],
  data: DataFiles,
): void {
  const written = new Map<string, { offset: number; length: number }>();
  const fd = openSync(join(dir, INT8_DATA_FILE), 'w');
  let offset = 0;
  try {
    for (const { model } of models) {
      const graph = model.graph as protobuf.onnx.IGraphProto;
      graph.initializer = (graph.initializer ?? []).map((t) => {
        const bytes = data.bytes(t);
        if (bytes.byteLength < 1024)
          return onnx.TensorProto.create({
            name: t.name,
            dims: t.dims,
            dataType: t.dataType,
            rawData: new Uint8Array(bytes),
          });
        let at = written.get(t.name ?? '');
        if (!at) {
          const pad = (64 - (offset % 64)) % 64;
          if (pad) writeSync(fd, new Uint8Array(pad));
          offset += pad;
          writeSync(fd, bytes);
          at = { offset, length: bytes.byteLength };
          written.set(t.name ?? '', at);
          offset += bytes.byteLength;
        }
        return onnx.TensorProto.create({
          name: t.name,
          dims: t.dims,
          dataType: t.dataType,
          dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
          externalData: [
            { key: 'location', value: INT8_DATA_FILE },
            { key: 'offset', value: String(at.offset) },
            { key: 'length', value: String(at.length) },
          ],
        });
      });
    }
  } finally {
    closeSync(fd);
  }
  for (const { file, model } of models)
    writeFileSync(join(dir, file), onnx.ModelProto.encode(model).finish());
}
