import { closeSync, openSync, writeSync } from 'node:fs';
import { basename } from 'node:path';
import protobuf from 'onnx-proto';
import { numel } from '../../tensor.js';

const { onnx } = protobuf;

/** Element types capfilt's graphs use (values of onnx.TensorProto.DataType). */
export const DType = { float32: 1, int32: 6, int64: 7, float16: 10 } as const;
export type DTypeName = keyof typeof DType;

type Dim = number | string;
type AttrValue = number | number[] | string | { float: number };

interface PendingWeight {
  name: string;
  shape: number[];
  data: Float32Array;
  dtype: 'float32' | 'float16';
}

/**
 * A small ONNX graph builder: named values, nodes, weights kept as external data so that graphs of
 * BLIP-large stay far below protobuf's 2 GB cap. Everything model-specific lives in the graph files
 * that use it; this file knows only ONNX.
 */
export class GraphBuilder {
  private readonly nodes: InstanceType<typeof onnx.NodeProto>[] = [];
  private readonly inputs: InstanceType<typeof onnx.ValueInfoProto>[] = [];
  private readonly outputs: InstanceType<typeof onnx.ValueInfoProto>[] = [];
  private readonly constants: InstanceType<typeof onnx.TensorProto>[] = [];
  private readonly weights: PendingWeight[] = [];
  private counter = 0;

  /**
   * @param weightType storage type of weights; fp16 weights are cast back to fp32 inside the graph
   *   when `computeType` is float32 (halves the files; onnxruntime folds the casts at load).
   */
  constructor(
    readonly name: string,
    readonly weightType: 'float32' | 'float16' = 'float32',
  ) {}

  fresh(prefix: string): string {
    this.counter += 1;
    return `${prefix}_${this.counter}`;
  }

  input(name: string, dtype: DTypeName, dims: Dim[]): string {
    this.inputs.push(valueInfo(name, dtype, dims));
    return name;
  }

  output(value: string, name: string, dtype: DTypeName, dims: Dim[]): void {
    // Graph outputs need their own names; an Identity decouples them from internal values.
    this.node('Identity', [value], [name]);
    this.outputs.push(valueInfo(name, dtype, dims));
  }

  /** A float weight stored as external data; returns a float32 value. */
  weight(name: string, shape: number[], data: Float32Array): string {
    if (data.length !== numel(shape)) {
      throw new Error(`weight ${name}: ${data.length} values for shape [${shape.join(',')}]`);
    }
    this.weights.push({ name, shape, data, dtype: this.weightType });
    if (this.weightType === 'float16') {
      return this.node('Cast', [name], [`${name}_f32`], { to: DType.float32 })[0];
    }
    return name;
  }

  /** A small inline constant (shapes, indices, scalars). */
  constInt64(values: number[], shape: number[] = [values.length], name = this.fresh('c')): string {
    const bytes = new BigInt64Array(values.map((v) => BigInt(v)));
    this.constants.push(
      onnx.TensorProto.create({
        name,
        dims: shape,
        dataType: DType.int64,
        rawData: new Uint8Array(bytes.buffer),
      }),
    );
    return name;
  }

  constFloat(values: number[], shape: number[] = [values.length], name = this.fresh('f')): string {
    const bytes = new Float32Array(values);
    this.constants.push(
      onnx.TensorProto.create({
        name,
        dims: shape,
        dataType: DType.float32,
        rawData: new Uint8Array(bytes.buffer),
      }),
    );
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
   * Serialise to `onnxPath`, with all weights in `<onnxPath>.data` (one file per graph, 64-byte
   * aligned, which lets onnxruntime memory-map them).
   */
  save(onnxPath: string): { bytes: number; weightBytes: number } {
    const dataPath = `${onnxPath}.data`;
    const location = basename(dataPath);
    const initializers: InstanceType<typeof onnx.TensorProto>[] = [...this.constants];
    const fd = openSync(dataPath, 'w');
    let offset = 0;
    try {
      for (const w of this.weights) {
        const bytes = w.dtype === 'float16' ? toFloat16Bytes(w.data) : floatBytes(w.data);
        const pad = (64 - (offset % 64)) % 64;
        if (pad) writeSync(fd, new Uint8Array(pad));
        offset += pad;
        writeSync(fd, bytes);
        initializers.push(
          onnx.TensorProto.create({
            name: w.name,
            dims: w.shape,
            dataType: w.dtype === 'float16' ? DType.float16 : DType.float32,
            dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
            externalData: [
              { key: 'location', value: location },
              { key: 'offset', value: String(offset) },
              { key: 'length', value: String(bytes.byteLength) },
            ],
          }),
        );
        offset += bytes.byteLength;
      }
    } finally {
      closeSync(fd);
    }
    const model = onnx.ModelProto.create({
      irVersion: 8,
      producerName: 'capfilt',
      opsetImport: [
        { domain: '', version: 17 },
        { domain: 'com.microsoft', version: 1 },
      ],
      graph: onnx.GraphProto.create({
        name: this.name,
        node: this.nodes,
        input: this.inputs,
        output: this.outputs,
        initializer: initializers,
      }),
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
