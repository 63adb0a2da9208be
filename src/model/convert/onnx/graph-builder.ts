import { closeSync, openSync, writeSync } from 'node:fs';
import { basename } from 'node:path';
import protobuf from 'onnx-proto';
import { numel } from '../../tensor.js';

const { onnx } = protobuf;

/** Element types capfilt's graphs use (values of onnx.TensorProto.DataType). */
export const DType = { float32: 1, int32: 6, int64: 7, bool: 9, float16: 10, float64: 11 } as const;
export type DTypeName = keyof typeof DType;
export type FloatType = 'float32' | 'float16';

type Dim = number | string;
type AttrValue = number | number[] | string | { float: number } | { graph: GraphBuilder };

/** Where a weight's bytes live once written: external data of the graph that wrote it first. */
interface WrittenWeight {
  shape: number[];
  dtype: FloatType;
  location: string;
  offset: number;
  length: number;
}

/**
 * The weights of one model directory, shared by all of its graphs: the first graph saved with a
 * weight writes its bytes into that graph's `.data` file, every later graph refers to them there.
 * So variants of a model (per device, whole-graph calls) cost graph protos, not weight copies.
 * Weights are identified by name; the graph files name them after the checkpoint keys they come
 * from, so one name is one tensor.
 */
export class WeightStore {
  private readonly written = new Map<string, WrittenWeight>();

  lookup(name: string, shape: number[], dtype: FloatType): WrittenWeight | undefined {
    const w = this.written.get(name);
    if (w && (w.dtype !== dtype || w.shape.join(',') !== shape.join(','))) {
      throw new Error(`weight ${name} written as ${w.dtype} [${w.shape}], now wanted as ${dtype} [${shape}]`);
    }
    return w;
  }

  record(name: string, w: WrittenWeight): void {
    this.written.set(name, w);
  }
}

interface PendingWeight {
  name: string;
  shape: number[];
  data: Float32Array;
  dtype: FloatType;
}

export interface GraphOptions {
  /** Storage type of float weights (default float32). */
  weightType?: FloatType;
  /**
   * Type the graph computes in (default float32). With float16, weights are used as stored, and
   * float32 graph inputs and outputs are cast on entry and exit, so the interface stays float32.
   */
  computeType?: FloatType;
  /** Weights shared with the other graphs of the model (default: this graph's own). */
  store?: WeightStore;
}

/**
 * A small ONNX graph builder: named values, nodes, weights kept as external data so that graphs of
 * BLIP-large stay far below protobuf's 2 GB cap, and sub-graphs (Loop bodies) that read the outer
 * graph's values and weights. Everything model-specific lives in the graph files that use it; this
 * file knows only ONNX.
 */
export class GraphBuilder {
  private readonly nodes: InstanceType<typeof onnx.NodeProto>[] = [];
  private readonly inputs: InstanceType<typeof onnx.ValueInfoProto>[] = [];
  private readonly outputs: InstanceType<typeof onnx.ValueInfoProto>[] = [];
  private readonly constants: InstanceType<typeof onnx.TensorProto>[] = [];
  private readonly constantNames = new Map<string, string>();
  private readonly weights = new Map<string, PendingWeight>();
  /** `<weight>_<type>` → the cast of a weight to another float type. */
  private readonly weightValues = new Map<string, string>();
  private counter = 0;
  readonly weightType: FloatType;
  readonly computeType: FloatType;
  private readonly store: WeightStore;
  /** The outermost graph: it owns the weights and the name counter of its sub-graphs. */
  private readonly root: GraphBuilder;

  constructor(
    readonly name: string,
    options: GraphOptions = {},
    parent?: GraphBuilder,
  ) {
    this.root = parent?.root ?? this;
    this.weightType = parent?.weightType ?? options.weightType ?? 'float32';
    this.computeType = parent?.computeType ?? options.computeType ?? 'float32';
    this.store = parent?.store ?? options.store ?? new WeightStore();
  }

  /** A graph for a control-flow node's attribute; it may read every value of this graph. */
  subgraph(name: string): GraphBuilder {
    return new GraphBuilder(name, {}, this);
  }

  fresh(prefix: string): string {
    if (this.root !== this) return this.root.fresh(prefix);
    this.counter += 1;
    return `${prefix}_${this.counter}`;
  }

  /**
   * A graph input. float32 inputs of a float16 graph come out cast to float16, unless `compute` is
   * false (parameters, not activations).
   */
  input(name: string, dtype: DTypeName, dims: Dim[], compute = true): string {
    this.inputs.push(valueInfo(name, dtype, dims));
    return compute && this.castsInterface(dtype) ? this.op('Cast', [name], { to: DType.float16 }) : name;
  }

  output(value: string, name: string, dtype: DTypeName, dims: Dim[]): void {
    // Graph outputs need their own names; an Identity (or the cast back to float32) decouples them.
    if (this.castsInterface(dtype)) this.node('Cast', [value], [name], { to: DType.float32 });
    else this.node('Identity', [value], [name]);
    this.outputs.push(valueInfo(name, dtype, dims));
  }

  private castsInterface(dtype: DTypeName): boolean {
    return this.root === this && this.computeType === 'float16' && dtype === 'float32';
  }

  /** The value of a float weight in the compute type, registered once per graph and name. */
  weight(name: string, shape: number[], data: Float32Array): string {
    const root = this.root;
    if (!root.weights.has(name)) {
      if (data.length !== numel(shape)) {
        throw new Error(`weight ${name}: ${data.length} values for shape [${shape.join(',')}]`);
      }
      root.weights.set(name, { name, shape, data, dtype: root.weightType });
    }
    return this.weightAs(name, root.computeType);
  }

  /** Whether `weight(name, …)` was already called (its data need not be computed again). */
  hasWeight(name: string): boolean {
    return this.root.weights.has(name);
  }

  /**
   * A registered weight in `dtype`: the stored value, or one cast of it in the outermost graph,
   * shared by every reader (onnxruntime folds it into a constant at load).
   */
  weightAs(name: string, dtype: FloatType): string {
    const root = this.root;
    if (!root.hasWeight(name)) throw new Error(`weight ${name} is not registered`);
    if (dtype === root.weightType) return name;
    const key = `${name}_${dtype}`;
    let value = root.weightValues.get(key);
    if (!value) {
      value = root.node('Cast', [name], [key], { to: DType[dtype] })[0];
      root.weightValues.set(key, value);
    }
    return value;
  }

  /** A small inline constant (shapes, indices, scalars). */
  constInt64(values: number[], shape: number[] = [values.length]): string {
    return this.constant('int64', shape, values, () => new BigInt64Array(values.map(BigInt)));
  }

  constFloat(values: number[], shape: number[] = [values.length]): string {
    return this.constant('float32', shape, values, () => new Float32Array(values));
  }

  constDouble(values: number[], shape: number[] = [values.length]): string {
    return this.constant('float64', shape, values, () => new Float64Array(values));
  }

  /**
   * One initializer per distinct constant of this graph: an unrolled decoder asks for the same
   * shapes and scalars thousands of times, and onnxruntime's load time grows faster than linearly
   * with the number of initializers.
   */
  private constant(dtype: DTypeName, dims: number[], values: number[], data: () => ArrayBufferView): string {
    const key = `${dtype}[${dims.join(',')}]${values.join(',')}`;
    let name = this.constantNames.get(key);
    if (!name) {
      name = this.fresh(dtype === 'int64' ? 'c' : 'f');
      const view = data();
      const rawData = new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
      this.constants.push(onnx.TensorProto.create({ name, dims, dataType: DType[dtype], rawData }));
      this.constantNames.set(key, name);
    }
    return name;
  }

  /** Add a node; returns its output names (generated when not given). */
  node(
    op: string,
    inputs: string[],
    outputs: string[] | number = 1,
    attrs: Record<string, AttrValue> = {},
    domain = '',
  ): string[] {
    const outs =
      typeof outputs === 'number' ? Array.from({ length: outputs }, () => this.fresh(op)) : outputs;
    this.nodes.push(
      onnx.NodeProto.create({
        opType: op,
        domain,
        name: this.fresh(`n_${op}`),
        input: inputs,
        output: outs,
        attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)),
      }),
    );
    return outs;
  }

  /** One-output convenience form of node(). */
  op(op: string, inputs: string[], attrs: Record<string, AttrValue> = {}, domain = ''): string {
    return this.node(op, inputs, 1, attrs, domain)[0];
  }

  /**
   * ONNX Loop. `body` (a subgraph() of this graph) has inputs (iteration, condition, ...carried)
   * and outputs (condition, ...carried, ...scanned); returns the final carried values, then the
   * scanned outputs stacked along a new first axis.
   */
  loop(tripCount: string, condition: string, carried: string[], body: GraphBuilder, scanned = 0): string[] {
    if (body.root !== this.root) throw new Error('a Loop body must be a subgraph of the same graph');
    return this.node('Loop', [tripCount, condition, ...carried], carried.length + scanned, {
      body: { graph: body },
    });
  }

  private proto(initializers: InstanceType<typeof onnx.TensorProto>[]): InstanceType<typeof onnx.GraphProto> {
    return onnx.GraphProto.create({
      name: this.name,
      node: this.nodes,
      input: this.inputs,
      output: this.outputs,
      initializer: initializers,
    });
  }

  /**
   * Serialise to `onnxPath`. Weights not yet written by another graph of the same store go to
   * `<onnxPath>.data` (64-byte aligned, which lets onnxruntime memory-map them); the others are
   * referenced where they already are, so all graphs of a model must be saved in one folder.
   */
  save(onnxPath: string): { bytes: number; weightBytes: number } {
    if (this.root !== this) throw new Error('save() the outermost graph');
    const dataPath = `${onnxPath}.data`;
    const location = basename(dataPath);
    const initializers: InstanceType<typeof onnx.TensorProto>[] = [...this.constants];
    let fd: number | undefined;
    let offset = 0;
    try {
      for (const w of this.weights.values()) {
        let ref = this.store.lookup(w.name, w.shape, w.dtype);
        if (!ref) {
          const bytes = w.dtype === 'float16' ? toFloat16Bytes(w.data) : floatBytes(w.data);
          fd ??= openSync(dataPath, 'w');
          const pad = (64 - (offset % 64)) % 64;
          if (pad) writeSync(fd, new Uint8Array(pad));
          offset += pad;
          writeSync(fd, bytes);
          ref = { shape: w.shape, dtype: w.dtype, location, offset, length: bytes.byteLength };
          this.store.record(w.name, ref);
          offset += bytes.byteLength;
        }
        initializers.push(externalTensor(w.name, ref));
      }
    } finally {
      if (fd !== undefined) closeSync(fd);
    }
    const model = onnx.ModelProto.create({
      irVersion: 8,
      producerName: 'capfilt',
      opsetImport: [
        { domain: '', version: 17 },
        { domain: 'com.microsoft', version: 1 },
      ],
      graph: this.proto(initializers),
    });
    const encoded = onnx.ModelProto.encode(model).finish();
    const out = openSync(onnxPath, 'w');
    try {
      writeSync(out, encoded);
    } finally {
      closeSync(out);
    }
    return { bytes: encoded.byteLength, weightBytes: offset };
  }

  /** The body of a control-flow attribute: its own nodes and constants; weights stay outside. */
  subgraphProto(): InstanceType<typeof onnx.GraphProto> {
    if (this.root === this) throw new Error(`${this.name} is not a subgraph`);
    return this.proto(this.constants);
  }
}

function externalTensor(name: string, w: WrittenWeight): InstanceType<typeof onnx.TensorProto> {
  return onnx.TensorProto.create({
    name,
    dims: w.shape,
    dataType: DType[w.dtype],
    dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
    externalData: [
      { key: 'location', value: w.location },
      { key: 'offset', value: String(w.offset) },
      { key: 'length', value: String(w.length) },
    ],
  });
}

function valueInfo(name: string, dtype: DTypeName, dims: Dim[]): InstanceType<typeof onnx.ValueInfoProto> {
  return onnx.ValueInfoProto.create({
    name,
    type: {
      tensorType: {
        elemType: DType[dtype],
        shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  });
}

function attribute(name: string, v: AttrValue): InstanceType<typeof onnx.AttributeProto> {
  const T = onnx.AttributeProto.AttributeType;
  if (typeof v === 'object' && 'graph' in v)
    return onnx.AttributeProto.create({ name, type: T.GRAPH, g: v.graph.subgraphProto() });
  if (typeof v === 'string') return onnx.AttributeProto.create({ name, type: T.STRING, s: Buffer.from(v) });
  if (Array.isArray(v)) return onnx.AttributeProto.create({ name, type: T.INTS, ints: v });
  if (typeof v === 'object') return onnx.AttributeProto.create({ name, type: T.FLOAT, f: v.float });
  return onnx.AttributeProto.create({ name, type: T.INT, i: v });
}

function floatBytes(data: Float32Array): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/** IEEE half precision with round-to-nearest-even, as numpy's astype(float16). */
export function toFloat16Bytes(data: Float32Array): Uint8Array {
  const out = new Uint16Array(data.length);
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  for (let i = 0; i < data.length; i++) {
    f[0] = data[i];
    const x = u[0];
    const sign = (x >>> 16) & 0x8000;
    const exp = (x >>> 23) & 0xff;
    let mant = x & 0x7fffff;
    if (exp === 0xff) {
      out[i] = sign | 0x7c00 | (mant ? 0x200 : 0);
      continue;
    }
    let e = exp - 127 + 15;
    if (e >= 0x1f) {
      out[i] = sign | 0x7c00;
      continue;
    }
    if (e <= 0) {
      if (e < -10) {
        out[i] = sign;
        continue;
      }
      mant |= 0x800000;
      const shift = 14 - e;
      let h = mant >>> shift;
      const rem = mant & ((1 << shift) - 1);
      const half = 1 << (shift - 1);
      if (rem > half || (rem === half && h & 1)) h += 1;
      out[i] = sign | h;
      continue;
    }
    let h = (e << 10) | (mant >>> 13);
    const rem = mant & 0x1fff;
    if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h += 1;
    e = h;
    out[i] = sign | e;
  }
  return new Uint8Array(out.buffer);
}
