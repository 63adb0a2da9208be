import { ModelError } from '../../../core/errors.js';
import type { HostTensor, WeightMap } from '../../tensor.js';
import { DType, type GraphBuilder } from '../onnx/graph-builder.js';

/** Outputs of one Split in the portable form: with its input, the WebGPU standard's 8 storage buffers. */
const PORTABLE_SPLIT_OUTPUTS = 7;

/** float32's lowest value: Hugging Face's additive mask for padded keys (torch.finfo.min). */
const MASKED = -3.4028234663852886e38;

export interface BlockOptions {
  /**
   * Write attention as MatMul → Softmax → MatMul with an additive mask, and LayerNorm in two passes,
   * instead of com.microsoft.MultiHeadAttention and LayerNormalization. For the WebGPU execution
   * provider: in onnxruntime 1.30 its MultiHeadAttention is wrong for 32 or more query positions
   * and has no key_padding_mask, and its LayerNormalization computes E[x²] − mean² in one pass.
   * The fused ops stay for CPU and CUDA, where they are faster.
   */
  portable?: boolean;
}

/**
 * The building blocks BLIP is made of (linear, LayerNorm, GELU, multi-head attention), written
 * against a checkpoint's state dict. Graph files compose these; names follow the HF keys. In a
 * float16 graph the numerically delicate parts (LayerNorm statistics, softmax with its mask, L2
 * normalisation, the heads asked for in float32) run in float32.
 */
export class Blocks {
  constructor(
    readonly g: GraphBuilder,
    private readonly weights: WeightMap,
    readonly options: BlockOptions = {},
  ) {}

  private get half(): boolean {
    return this.g.computeType === 'float16';
  }

  /** `x` (compute type) as float32. */
  float32(x: string): string {
    return this.half ? this.g.op('Cast', [x], { to: DType.float32 }) : x;
  }

  /** `x` (float32) in the compute type. */
  compute(x: string): string {
    return this.half ? this.g.op('Cast', [x], { to: DType.float16 }) : x;
  }

  tensor(key: string): HostTensor {
    const t = this.weights.get(key);
    if (!t) throw new ModelError(`checkpoint has no tensor ${key}`);
    return t;
  }

  has(key: string): boolean {
    return this.weights.has(key);
  }

  /** A weight as stored in the checkpoint, in the compute type or the one asked for. */
  param(key: string, dtype = this.g.computeType): string {
    const t = this.tensor(key);
    this.g.weight(key, t.shape, t.data);
    return this.g.weightAs(key, dtype);
  }

  /**
   * y = x W^T + b for one or several nn.Linear layers sharing the input: their weights are
   * concatenated into one [in, Σout] matrix so that one GEMM serves them all.
   */
  linear(x: string, prefixes: string[], name = prefixes.join('+')): string {
    const dtype = this.g.computeType;
    const [w, b] = this.linearWeights(prefixes, name).map((key) => this.g.weightAs(key, dtype));
    return this.g.op('Add', [this.g.op('MatMul', [x, w]), b]);
  }

  /** linear() computed in float32 whatever the graph's compute type (output heads): float32 out. */
  linear32(x: string, prefixes: string[], name = prefixes.join('+')): string {
    const [w, b] = this.linearWeights(prefixes, name).map((key) => this.g.weightAs(key, 'float32'));
    return this.g.op('Add', [this.g.op('MatMul', [this.float32(x), w]), b]);
  }

  /** The names of the concatenated, transposed weight [in, Σout] and bias of linear layers. */
  private linearWeights(prefixes: string[], name: string): [string, string] {
    const keys: [string, string] = [`${name}.weight_t`, `${name}.bias`];
    if (this.g.hasWeight(keys[0])) return keys;
    const ws = prefixes.map((p) => this.tensor(`${p}.weight`));
    const inDim = ws[0].shape[1];
    const outDims = ws.map((w) => w.shape[0]);
    const total = outDims.reduce((a, b) => a + b, 0);
    const wt = new Float32Array(inDim * total);
    const bias = new Float32Array(total);
    let col = 0;
    prefixes.forEach((p, k) => {
      const w = ws[k];
      if (w.shape[1] !== inDim) throw new ModelError(`${p}.weight: input width ${w.shape[1]} != ${inDim}`);
      const out = outDims[k];
      for (let o = 0; o < out; o++) {
        const row = o * inDim;
        for (let i = 0; i < inDim; i++) wt[i * total + col + o] = w.data[row + i];
      }
      const b = this.weights.get(`${p}.bias`);
      if (b) bias.set(b.data, col);
      col += out;
    });
    this.g.weight(keys[0], [inDim, total], wt);
    this.g.weight(keys[1], [total], bias);
    return keys;
  }

  layerNorm(x: string, prefix: string, eps: number): string {
    if (this.options.portable) return this.twoPassLayerNorm(x, prefix, eps);
    return this.g.op(
      'LayerNormalization',
      [x, this.param(`${prefix}.weight`), this.param(`${prefix}.bias`)],
      {
        axis: -1,
        epsilon: { float: eps },
      },
    );
  }

  /**
   * (x − mean) / sqrt(var + eps) · γ + β with the variance of the centred values, in float32. Mul(d, d)
   * rather than Pow(d, 2): onnxruntime's LayerNormFusion would turn the Pow form back into
   * LayerNormalization.
   */
  private twoPassLayerNorm(x: string, prefix: string, eps: number): string {
    const { g } = this;
    const x32 = this.float32(x);
    const d = g.op('Sub', [x32, g.op('ReduceMean', [x32], { axes: [-1], keepdims: 1 })]);
    const variance = g.op('ReduceMean', [g.op('Mul', [d, d])], { axes: [-1], keepdims: 1 });
    const inv = g.op('Reciprocal', [g.op('Sqrt', [g.op('Add', [variance, g.constFloat([eps], [])])])]);
    const gamma = this.param(`${prefix}.weight`, 'float32');
    const beta = this.param(`${prefix}.bias`, 'float32');
    return this.compute(g.op('Add', [g.op('Mul', [g.op('Mul', [d, inv]), gamma]), beta]));
  }

  /** Exact (erf) GELU, as nn.functional.gelu. */
  gelu(x: string): string {
    return this.g.op('Gelu', [x], {}, 'com.microsoft');
  }

  /** Split the last axis into equal parts. */
  split(x: string, parts: number, width: number): string[] {
    return this.splitSizes(
      x,
      Array.from({ length: parts }, () => width),
    );
  }

  /**
   * Split the last axis into parts of `sizes`. A WebGPU shader binds one storage buffer per output
   * and the WebGPU standard guarantees 8 per stage (lavapipe: 16), so the portable form splits at
   * most PORTABLE_SPLIT_OUTPUTS ways at a time: BLIP's 24 cross keys/values become a split of splits.
   */
  private splitSizes(x: string, sizes: number[]): string[] {
    const max = this.options.portable ? PORTABLE_SPLIT_OUTPUTS : sizes.length;
    if (sizes.length <= max) {
      return this.g.node('Split', [x, this.g.constInt64(sizes)], sizes.length, { axis: -1 });
    }
    const perGroup = Math.ceil(sizes.length / max);
    const groups: number[][] = [];
    for (let i = 0; i < sizes.length; i += perGroup) groups.push(sizes.slice(i, i + perGroup));
    const groupWidths = groups.map((g) => g.reduce((a, b) => a + b, 0));
    return this.splitSizes(x, groupWidths).flatMap((part, i) => this.splitSizes(part, groups[i]));
  }

  /**
   * Scaled dot-product attention over all heads (com.microsoft.MultiHeadAttention, which runs on
   * the CPU and CUDA providers, or its portable form). Key/value are [B,T,D], or [B,H,T,hd] for
   * precomputed keys (`kvInHeads`).
   */
  attention(q: string, k: string, v: string, numHeads: number, opts: AttentionOptions = {}): AttentionResult {
    if (this.options.portable) return this.portableAttention(q, k, v, numHeads, opts);
    const withPast = opts.pastKey !== undefined;
    const inputs = [q, k, v, '', opts.keyPaddingMask ?? '', '', opts.pastKey ?? '', opts.pastValue ?? ''];
    while (inputs[inputs.length - 1] === '') inputs.pop();
    const outs = this.g.node(
      'MultiHeadAttention',
      inputs,
      withPast ? 3 : 1,
      {
        num_heads: numHeads,
        ...(opts.causal ? { unidirectional: 1 } : {}),
      },
      'com.microsoft',
    );
    return withPast ? { out: outs[0], presentKey: outs[1], presentValue: outs[2] } : { out: outs[0] };
  }

  /**
   * softmax(q kᵀ / √hd + mask) v per head with plain ops; scores, mask and softmax in float32.
   * Padded keys get float32's lowest value added (HF's extended attention mask); causal positions
   * after the query's own (past included) are set to it.
   */
  private portableAttention(
    q: string,
    k: string,
    v: string,
    numHeads: number,
    o: AttentionOptions,
  ): AttentionResult {
    const { g } = this;
    const heads = (x: string) =>
      g.op('Transpose', [g.op('Reshape', [x, g.constInt64([0, 0, numHeads, -1])])], { perm: [0, 2, 1, 3] });
    const qh = heads(q);
    let kh = o.kvInHeads ? k : heads(k);
    let vh = o.kvInHeads ? v : heads(v);
    if (o.pastKey && o.pastValue) {
      kh = g.op('Concat', [o.pastKey, kh], { axis: 2 });
      vh = g.op('Concat', [o.pastValue, vh], { axis: 2 });
    }
    const headDim = g.op('Cast', [g.op('Shape', [qh], { start: 3, end: 4 })], { to: DType.float32 });
    const scale = g.op('Reciprocal', [g.op('Sqrt', [headDim])]);
    const raw = g.op('MatMul', [qh, g.op('Transpose', [kh], { perm: [0, 1, 3, 2] })]);
    let scores = g.op('Mul', [this.float32(raw), scale]);
    if (o.keyPaddingMask) {
      // [B, T] 1/0 → [B, 1, 1, T]: 0 where kept, MASKED where padded.
      const keep = g.op('Cast', [g.op('Unsqueeze', [o.keyPaddingMask, g.constInt64([1, 2])])], {
        to: DType.float32,
      });
      const bias = g.op('Mul', [g.op('Sub', [g.constFloat([1], []), keep]), g.constFloat([MASKED], [])]);
      scores = g.op('Add', [scores, bias]);
    }
    if (o.causal) scores = g.op('Where', [this.futureKeys(qh, kh), g.constFloat([MASKED], []), scores]);
    const probs = this.compute(g.op('Softmax', [scores], { axis: -1 }));
    const context = g.op('Transpose', [g.op('MatMul', [probs, vh])], { perm: [0, 2, 1, 3] });
    const out = g.op('Reshape', [context, g.constInt64([0, 0, -1])]);
    return o.pastKey ? { out, presentKey: kh, presentValue: vh } : { out };
  }

  /** bool [S, T]: key j lies after query i, whose absolute position is (T − S) + i. */
  private futureKeys(qh: string, kh: string): string {
    const { g } = this;
    const queries = g.op('Shape', [qh], { start: 2, end: 3 });
    const total = g.op('Shape', [kh], { start: 2, end: 3 });
    const keys = g.op('Squeeze', [total]);
    const one = g.constInt64([1], []);
    const first = g.op('Squeeze', [g.op('Sub', [total, queries])]);
    const rows = g.op('Unsqueeze', [g.op('Range', [first, keys, one]), g.constInt64([1])]);
    const cols = g.op('Unsqueeze', [g.op('Range', [g.constInt64([0], []), keys, one]), g.constInt64([0])]);
    return g.op('Greater', [cols, rows]);
  }

  /** [B,T,D] → [B,H,T,hd], the layout cached keys/values are kept in. */
  toHeads(x: string, numHeads: number, headDim: number): string {
    const shape = this.g.constInt64([0, 0, numHeads, headDim]);
    return this.g.op('Transpose', [this.g.op('Reshape', [x, shape])], { perm: [0, 2, 1, 3] });
  }

  /** Row 0 of the sequence axis: [B,T,D] → [B,D]. */
  firstToken(x: string): string {
    return this.g.op('Gather', [x, this.g.constInt64([0], [])], { axis: 1 });
  }

  /** torch.nn.functional.normalize(x, dim=-1): x / max(‖x‖₂, 1e-12), in float32 (float32 out). */
  l2Normalize(x: string): string {
    const x32 = this.float32(x);
    const norm = this.g.op('ReduceL2', [x32], { axes: [-1], keepdims: 1 });
    const clamped = this.g.op('Max', [norm, this.g.constFloat([1e-12], [])]);
    return this.g.op('Div', [x32, clamped]);
  }
}

export interface AttentionOptions {
  keyPaddingMask?: string;
  pastKey?: string;
  pastValue?: string;
  causal?: boolean;
  /** Key and value are already [B,H,T,hd] (precomputed cross-attention keys/values). */
  kvInHeads?: boolean;
}

export interface AttentionResult {
  out: string;
  presentKey?: string;
  presentValue?: string;
}
