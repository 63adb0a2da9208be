/**
 * A deliberately naive reference of BLIP's forward math (transformers 4.40's modeling_blip*.py), for tests only.
 *
 * Plain loops, float64 activations and accumulators, written from the Hugging Face description and
 * sharing no code with src/model/graphs or the engines: when the ONNX path and this file agree on a
 * config, two independent readings of the architecture agree. Slow by design; keep models tiny.
 */
import type { BlipConfig } from '../../src/model/config.js';
import type { WeightMap } from '../../src/model/tensor.js';

type Vec = Float64Array;

function tensor(weights: WeightMap, key: string): Float32Array {
  const t = weights.get(key);
  if (!t) throw new Error(`reference: missing weight ${key}`);
  return t.data;
}

function firstTensor(weights: WeightMap, keys: string[]): Float32Array {
  for (const key of keys) {
    const t = weights.get(key);
    if (t) return t.data;
  }
  throw new Error(`reference: none of ${keys.join(', ')}`);
}

/** erf in float64: the all-positive series erf(x) = 2/√π·e^(−x²)·Σ (2x²)^n·x / (1·3·…·(2n+1)). */
export function erf(x: number): number {
  if (x === 0) return 0;
  const ax = Math.abs(x);
  if (ax > 6.5) return Math.sign(x); // erfc(6.5) < 1e-19
  const x2 = ax * ax;
  let term = ax;
  let sum = ax;
  for (let n = 1; n < 1000; n++) {
    term *= (2 * x2) / (2 * n + 1);
    sum += term;
    if (term < sum * 1e-17) break;
  }
  const r = (2 / Math.sqrt(Math.PI)) * Math.exp(-x2) * sum;
  return x < 0 ? -r : r;
}

/** Exact (erf) GELU, as torch.nn.functional.gelu's default. */
export function gelu(x: number): number {
  return 0.5 * x * (1 + erf(x / Math.SQRT2));
}

/** y[n, out] = x[n, in] · W[out, in]ᵀ + b[out] (torch.nn.Linear). */
function linear(
  x: Vec,
  rows: number,
  inDim: number,
  w: Float32Array,
  b: Float32Array | null,
  outDim: number,
): Vec {
  if (w.length !== outDim * inDim)
    throw new Error(`reference: weight has ${w.length} values, not ${outDim}x${inDim}`);
  const y = new Float64Array(rows * outDim);
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < outDim; o++) {
      let acc = b ? b[o] : 0;
      for (let i = 0; i < inDim; i++) acc += x[r * inDim + i] * w[o * inDim + i];
      y[r * outDim + o] = acc;
    }
  }
  return y;
}

function layerNorm(x: Vec, rows: number, dim: number, g: Float32Array, b: Float32Array, eps: number): Vec {
  const y = new Float64Array(rows * dim);
  for (let r = 0; r < rows; r++) {
    let mean = 0;
    for (let i = 0; i < dim; i++) mean += x[r * dim + i];
    mean /= dim;
    let variance = 0;
    for (let i = 0; i < dim; i++) variance += (x[r * dim + i] - mean) ** 2;
    variance /= dim; // biased, as torch's layer_norm
    const inv = 1 / Math.sqrt(variance + eps);
    for (let i = 0; i < dim; i++) y[r * dim + i] = (x[r * dim + i] - mean) * inv * g[i] + b[i];
  }
  return y;
}

function add(a: Vec, b: Vec): Vec {
  const y = new Float64Array(a.length);
  for (let i = 0; i < a.length; i++) y[i] = a[i] + b[i];
  return y;
}

function geluAll(x: Vec): Vec {
  const y = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) y[i] = gelu(x[i]);
  return y;
}

/**
 * Multi-head attention over already projected rows. q: [Sq, qStride] read at qOff + h·hd + j,
 * likewise k and v with [Sk, ·]; bias(i, j) is the additive mask (0 where allowed). Out: [Sq, H·hd].
 */
function attention(
  q: Vec,
  qStride: number,
  qOff: number,
  k: Vec,
  kStride: number,
  kOff: number,
  v: Vec,
  vStride: number,
  vOff: number,
  sq: number,
  sk: number,
  heads: number,
  hd: number,
  bias: ((i: number, j: number) => number) | null,
): Vec {
  const out = new Float64Array(sq * heads * hd);
  const scale = 1 / Math.sqrt(hd);
  const scores = new Float64Array(sk);
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < sq; i++) {
      let max = Number.NEGATIVE_INFINITY;
      for (let j = 0; j < sk; j++) {
        let dot = 0;
        for (let d = 0; d < hd; d++)
          dot += q[i * qStride + qOff + h * hd + d] * k[j * kStride + kOff + h * hd + d];
        const s = dot * scale + (bias ? bias(i, j) : 0);
        scores[j] = s;
        if (s > max) max = s;
      }
      let total = 0;
      for (let j = 0; j < sk; j++) {
        scores[j] = Math.exp(scores[j] - max);
        total += scores[j];
      }
      for (let d = 0; d < hd; d++) {
        let acc = 0;
        for (let j = 0; j < sk; j++) acc += scores[j] * v[j * vStride + vOff + h * hd + d];
        out[i * heads * hd + h * hd + d] = acc / total;
      }
    }
  }
  return out;
}

/** Number of image tokens: patches plus the class token. */
export function imageTokens(cfg: BlipConfig): number {
  return (cfg.vision.imageSize / cfg.vision.patchSize) ** 2 + 1;
}

/** BlipVisionModel(pixel_values)[0]: image_embeds [N, Dv] (after post_layernorm), flattened. */
export function visionForward(weights: WeightMap, cfg: BlipConfig, pixels: ArrayLike<number>): Float32Array {
  const {
    hiddenSize: D,
    numHeads: H,
    imageSize: S,
    patchSize: P,
    numChannels: C,
    intermediateSize: I,
  } = cfg.vision;
  const eps = cfg.vision.layerNormEps;
  if (pixels.length !== C * S * S) throw new Error(`reference: ${pixels.length} pixels, not ${C}x${S}x${S}`);
  const grid = S / P;
  const N = grid * grid + 1;
  const pfx = 'vision_model.';
  const patchW = tensor(weights, `${pfx}embeddings.patch_embedding.weight`);
  const patchB = tensor(weights, `${pfx}embeddings.patch_embedding.bias`);
  const cls = tensor(weights, `${pfx}embeddings.class_embedding`);
  const pos = tensor(weights, `${pfx}embeddings.position_embedding`);

  let x: Vec = new Float64Array(N * D);
  for (let d = 0; d < D; d++) x[d] = cls[d] + pos[d];
  for (let gy = 0; gy < grid; gy++) {
    for (let gx = 0; gx < grid; gx++) {
      const t = 1 + gy * grid + gx; // flatten(2) is row-major over (h, w)
      for (let d = 0; d < D; d++) {
        let acc = patchB[d];
        for (let c = 0; c < C; c++) {
          for (let ky = 0; ky < P; ky++) {
            for (let kx = 0; kx < P; kx++) {
              acc +=
                patchW[((d * C + c) * P + ky) * P + kx] * pixels[(c * S + gy * P + ky) * S + gx * P + kx];
            }
          }
        }
        x[t * D + d] = acc + pos[t * D + d];
      }
    }
  }

  const hd = D / H;
  for (let l = 0; l < cfg.vision.numLayers; l++) {
    const lp = `${pfx}encoder.layers.${l}.`;
    const w = (name: string): Float32Array => tensor(weights, lp + name);
    const h = layerNorm(x, N, D, w('layer_norm1.weight'), w('layer_norm1.bias'), eps);
    // Fused qkv rows: Q (head-major) then K then V, i.e. feature s·D + head·hd + j.
    const qkv = linear(h, N, D, w('self_attn.qkv.weight'), w('self_attn.qkv.bias'), 3 * D);
    const a = attention(qkv, 3 * D, 0, qkv, 3 * D, D, qkv, 3 * D, 2 * D, N, N, H, hd, null);
    x = add(x, linear(a, N, D, w('self_attn.projection.weight'), w('self_attn.projection.bias'), D));
    const h2 = layerNorm(x, N, D, w('layer_norm2.weight'), w('layer_norm2.bias'), eps);
    const f = geluAll(linear(h2, N, D, w('mlp.fc1.weight'), w('mlp.fc1.bias'), I));
    x = add(x, linear(f, N, I, w('mlp.fc2.weight'), w('mlp.fc2.bias'), D));
  }
  const out = layerNorm(
    x,
    N,
    D,
    tensor(weights, `${pfx}post_layernorm.weight`),
    tensor(weights, `${pfx}post_layernorm.bias`),
    eps,
  );
  return Float32Array.from(out);
}

interface TextRun {
  prefix: string;
  ids: readonly number[];
  /** 1 = attend, 0 = padding; defaults to all ones. */
  mask?: readonly number[];
  causal: boolean;
  /** image_embeds [N, Dv]; null runs the unimodal text encoder (no cross-attention, as ITC). */
  image: ArrayLike<number> | null;
}

/** BlipTextModel last_hidden_state [S, Dt] (post-norm BERT with optional cross-attention). */
export function textForward(weights: WeightMap, cfg: BlipConfig, run: TextRun): Vec {
  const { hiddenSize: D, numHeads: H, intermediateSize: I, layerNormEps: eps } = cfg.text;
  const Dv = cfg.text.encoderHiddenSize;
  const S = run.ids.length;
  const hd = D / H;
  const p = run.prefix;
  const word = tensor(weights, `${p}embeddings.word_embeddings.weight`);
  const posEmb = tensor(weights, `${p}embeddings.position_embeddings.weight`);
  let x: Vec = new Float64Array(S * D);
  run.ids.forEach((id, i) => {
    for (let d = 0; d < D; d++) x[i * D + d] = word[id * D + d] + posEmb[i * D + d];
  });
  x = layerNorm(
    x,
    S,
    D,
    tensor(weights, `${p}embeddings.LayerNorm.weight`),
    tensor(weights, `${p}embeddings.LayerNorm.bias`),
    eps,
  );

  const mask = run.mask ?? run.ids.map(() => 1);
  // get_extended_attention_mask: (1 − M)·−10000 with M = causal ⊙ padding (decoder) or padding alone.
  const selfBias = (i: number, j: number): number => {
    const allowed = (run.causal ? (j <= i ? 1 : 0) : 1) * mask[j];
    return (1 - allowed) * -10000;
  };
  const image = run.image;
  const N = image ? image.length / Dv : 0;
  const imageRows = image ? Float64Array.from(image) : null;

  for (let l = 0; l < cfg.text.numLayers; l++) {
    const lp = `${p}encoder.layer.${l}.`;
    const w = (name: string): Float32Array => tensor(weights, lp + name);
    const q = linear(x, S, D, w('attention.self.query.weight'), w('attention.self.query.bias'), D);
    const k = linear(x, S, D, w('attention.self.key.weight'), w('attention.self.key.bias'), D);
    const v = linear(x, S, D, w('attention.self.value.weight'), w('attention.self.value.bias'), D);
    const a = attention(q, D, 0, k, D, 0, v, D, 0, S, S, H, hd, selfBias);
    x = layerNorm(
      add(linear(a, S, D, w('attention.output.dense.weight'), w('attention.output.dense.bias'), D), x),
      S,
      D,
      w('attention.output.LayerNorm.weight'),
      w('attention.output.LayerNorm.bias'),
      eps,
    );
    if (imageRows) {
      const cq = linear(
        x,
        S,
        D,
        w('crossattention.self.query.weight'),
        w('crossattention.self.query.bias'),
        D,
      );
      const ck = linear(
        imageRows,
        N,
        Dv,
        w('crossattention.self.key.weight'),
        w('crossattention.self.key.bias'),
        D,
      );
      const cv = linear(
        imageRows,
        N,
        Dv,
        w('crossattention.self.value.weight'),
        w('crossattention.self.value.bias'),
        D,
      );
      // Every BLIP caller passes an all-ones image mask: cross-attention is unmasked.
      const ca = attention(cq, D, 0, ck, D, 0, cv, D, 0, S, N, H, hd, null);
      x = layerNorm(
        add(
          linear(ca, S, D, w('crossattention.output.dense.weight'), w('crossattention.output.dense.bias'), D),
          x,
        ),
        S,
        D,
        w('crossattention.output.LayerNorm.weight'),
        w('crossattention.output.LayerNorm.bias'),
        eps,
      );
    }
    const f = geluAll(linear(x, S, D, w('intermediate.dense.weight'), w('intermediate.dense.bias'), I));
    x = layerNorm(
      add(linear(f, S, I, w('output.dense.weight'), w('output.dense.bias'), D), x),
      S,
      D,
      w('output.LayerNorm.weight'),
      w('output.LayerNorm.bias'),
      eps,
    );
  }
  return x;
}

/** The captioner's next-token logits [V] at the last position of `ids` (decoder with causal mask). */
export function decoderLogits(
  weights: WeightMap,
  cfg: BlipConfig,
  imageEmbeds: ArrayLike<number>,
  ids: readonly number[],
): Float64Array {
  const { hiddenSize: D, vocabSize: V, layerNormEps: eps } = cfg.text;
  const h = textForward(weights, cfg, {
    prefix: 'text_decoder.bert.',
    ids,
    causal: true,
    image: imageEmbeds,
  });
  const last = h.subarray((ids.length - 1) * D, ids.length * D);
  const c = 'text_decoder.cls.predictions.';
  const t = geluAll(
    linear(
      last,
      1,
      D,
      tensor(weights, `${c}transform.dense.weight`),
      tensor(weights, `${c}transform.dense.bias`),
      D,
    ),
  );
  const n = layerNorm(
    t,
    1,
    D,
    tensor(weights, `${c}transform.LayerNorm.weight`),
    tensor(weights, `${c}transform.LayerNorm.bias`),
    eps,
  );
  // The LM decoder is tied to the word embeddings when the checkpoint omits it.
  const decoder = firstTensor(weights, [
    `${c}decoder.weight`,
    'text_decoder.bert.embeddings.word_embeddings.weight',
  ]);
  const bias = firstTensor(weights, [`${c}bias`, `${c}decoder.bias`]);
  return linear(n, 1, D, decoder, bias, V);
}

export interface GreedyResult {
  /** The whole sequence as HF generate() returns it: prompt ids then generated ids (eos included). */
  tokenIds: number[];
  /** Top-1 minus top-2 logit at each generated step: how safely argmax is decided. */
  margins: number[];
}

/** HF greedy generate(): argmax (first index on ties) until eos or maxLength ids in all. */
export function greedyCaption(
  weights: WeightMap,
  cfg: BlipConfig,
  imageEmbeds: ArrayLike<number>,
  promptIds: readonly number[],
  maxLength: number,
  eosId: number,
): GreedyResult {
  const tokenIds = [...promptIds];
  const margins: number[] = [];
  while (tokenIds.length < maxLength) {
    const logits = decoderLogits(weights, cfg, imageEmbeds, tokenIds);
    let best = 0;
    for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
    let second = Number.NEGATIVE_INFINITY;
    for (let i = 0; i < logits.length; i++) if (i !== best && logits[i] > second) second = logits[i];
    margins.push(logits[best] - second);
    tokenIds.push(best);
    if (best === eosId) break;
  }
  return { tokenIds, margins };
}

/** BlipForImageTextRetrieval's itm_head logits [no match, match] on token 0 of the image-grounded encoder. */
export function itmLogits(
  weights: WeightMap,
  cfg: BlipConfig,
  imageEmbeds: ArrayLike<number>,
  ids: readonly number[],
  mask?: readonly number[],
): [number, number] {
  const D = cfg.text.hiddenSize;
  const h = textForward(weights, cfg, {
    prefix: 'text_encoder.',
    ids,
    mask,
    causal: false,
    image: imageEmbeds,
  });
  const logits = linear(
    h.subarray(0, D),
    1,
    D,
    tensor(weights, 'itm_head.weight'),
    tensor(weights, 'itm_head.bias'),
    2,
  );
  return [logits[0], logits[1]];
}

/** softmax(itm_logits)[1]: the probability that text and image match. */
export function itmProbability(
  weights: WeightMap,
  cfg: BlipConfig,
  imageEmbeds: ArrayLike<number>,
  ids: readonly number[],
  mask?: readonly number[],
): number {
  const [noMatch, match] = itmLogits(weights, cfg, imageEmbeds, ids, mask);
  return 1 / (1 + Math.exp(noMatch - match));
}

function normalize(x: Vec): Vec {
  let norm = 0;
  for (const v of x) norm += v * v;
  const scale = 1 / Math.max(Math.sqrt(norm), 1e-12); // F.normalize's eps
  return x.map((v) => v * scale);
}

/** ITC: normalize(vision_proj(image_embeds[0])) · normalize(text_proj(unimodal text_encoder[0])). */
export function itcCosine(
  weights: WeightMap,
  cfg: BlipConfig,
  imageEmbeds: ArrayLike<number>,
  ids: readonly number[],
  mask?: readonly number[],
): number {
  const Dv = cfg.vision.hiddenSize;
  const Dt = cfg.text.hiddenSize;
  const E = cfg.imageTextHiddenSize;
  const cls = Float64Array.from({ length: Dv }, (_, i) => imageEmbeds[i]);
  const imageFeat = normalize(
    linear(cls, 1, Dv, tensor(weights, 'vision_proj.weight'), tensor(weights, 'vision_proj.bias'), E),
  );
  const h = textForward(weights, cfg, { prefix: 'text_encoder.', ids, mask, causal: false, image: null });
  const textFeat = normalize(
    linear(
      h.subarray(0, Dt),
      1,
      Dt,
      tensor(weights, 'text_proj.weight'),
      tensor(weights, 'text_proj.bias'),
      E,
    ),
  );
  let dot = 0;
  for (let i = 0; i < E; i++) dot += imageFeat[i] * textFeat[i];
  return dot;
}
