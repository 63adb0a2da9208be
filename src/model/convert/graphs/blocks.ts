import { ModelError } from '../../../core/errors.js';
import type { HostTensor, WeightMap } from '../../tensor.js';
import type { GraphBuilder } from '../onnx/graph-builder.js';

/**
 * The building blocks BLIP is made of (linear, LayerNorm, GELU, multi-head attention), written
 * against a checkpoint's state dict. Graph files compose these; names follow the HF keys.
 */
export class Blocks {
  constructor(
    readonly g: GraphBuilder,
    private readonly weights: WeightMap,
  ) {}

  tensor(key: string): HostTensor {
    const t = this.weights.get(key);
    if (!t) throw new ModelError(`checkpoint has no tensor ${key}`);
    return t;
  }

  has(key: string): boolean {
    return this.weights.has(key);
  }

  /** A weight as stored in the checkpoint. */
  param(key: string): string {
    const t = this.tensor(key);
    return this.g.weight(key, t.shape, t.data);
  }

  /**
   * y = x W^T + b for one or several nn.Linear layers sharing the input: their weights are
   * concatenated into one [in, Σout] matrix so that one GEMM serves them all.
   */
  linear(x: string, prefixes: string[], name = prefixes.join('+')): string {
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
    const wName = this.g.weight(`${name}.weight_t`, [inDim, total], wt);
    const bName = this.g.weight(`${name}.bias`, [total], bias);
    return this.g.op('Add', [this.g.op('MatMul', [x, wName]), bName]);
  }

  layerNorm(x: string, prefix: string, eps: number): string {
    return this.g.op(
      'LayerNormalization',
      [x, this.param(`${prefix}.weight`), this.param(`${prefix}.bias`)],
      {
        axis: -1,
        epsilon: { float: eps },
      },
    );
  }

  /** Exact (erf) GELU, as nn.functional.gelu. */
  gelu(x: string): string {
    return this.g.op('Gelu', [x], {}, 'com.microsoft');
  }

  /** Split the last axis into equal parts. */
  split(x: string, parts: number, width: number): string[] {
    const sizes = this.g.constInt64(Array.from({ length: parts }, () => width));
    return this.g.node('Split', [x, sizes], parts, { axis: -1 });
  }

  /**
   * Scaled dot-product attention over all heads (com.microsoft.MultiHeadAttention, which runs on
   * the CPU and CUDA providers). Key/value are [B,T,D], or [B,H,T,hd] for precomputed keys.
   */
  attention(
    q: string,
    k: string,
    v: string,
    numHeads: number,
    opts: { keyPaddingMask?: string; pastKey?: string; pastValue?: string; causal?: boolean } = {},
  ): { out: string; presentKey?: string; presentValue?: string } {
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

  /** [B,T,D] → [B,H,T,hd], the layout cached keys/values are kept in. */
  toHeads(x: string, numHeads: number, headDim: number): string {
    const shape = this.g.constInt64([0, 0, numHeads, headDim]);
    return this.g.op('Transpose', [this.g.op('Reshape', [x, shape])], { perm: [0, 2, 1, 3] });
  }

  /** Row 0 of the sequence axis: [B,T,D] → [B,D]. */
  firstToken(x: string): string {
    return this.g.op('Gather', [x, this.g.constInt64([0], [])], { axis: 1 });
  }

  /** torch.nn.functional.normalize(x, dim=-1): x / max(‖x‖₂, 1e-12). */
  l2Normalize(x: string): string {
    const norm = this.g.op('ReduceL2', [x], { axes: [-1], keepdims: 1 });
    const clamped = this.g.op('Max', [norm, this.g.constFloat([1e-12], [])]);
    return this.g.op('Div', [x, clamped]);
  }
}
