/**
 * The input and output names of capfilt's ONNX graphs, the one place they are spelled: the graph
 * builders (model/convert/graphs) declare them and the sessions (model/runtime, captioner, filter)
 * feed and read them, so a renamed tensor cannot leave one side behind. After onnxruntime-genai's
 * ComposeKeyValueName.
 */

/** The graphs of a converted model, by role (the keys of manifest.graphs). */
export const GRAPHS = {
  vision: 'vision',
  crossKv: 'cross_kv',
  decoder: 'decoder',
  itm: 'itm',
  itcText: 'itc_text',
  /** The whole captioner in one call: pixels → greedy token ids. */
  generateGreedy: 'generate_greedy',
  /** The whole captioner in one call: pixels and uniforms → sampled token ids. */
  generateSample: 'generate_sample',
  /** The whole filter in one call: pixels and token ids → ITM logits and ITC cosines. */
  score: 'score',
} as const;
export type GraphRole = (typeof GRAPHS)[keyof typeof GRAPHS];

/** Plain tensors. */
export const IO = {
  /** vision: float32 [B, C, H, W] in. */
  pixelValues: 'pixel_values',
  /** vision out, cross_kv in: float32 [B, N, Dv]. */
  imageEmbeds: 'image_embeds',
  /** vision out (filter only): normalised ITC image features [B, E]. */
  imageFeat: 'image_feat',
  /**
   * decoder, itm, itc_text: int64 token ids. itm: [T, L] image-major, the same number of texts per
   * row of its cross keys/values (T = images·k).
   */
  inputIds: 'input_ids',
  /** itm, itc_text: int64 [T, L], 0 on padding. */
  attentionMask: 'attention_mask',
  /** decoder: next-token logits of the last position [B, V]. */
  logits: 'logits',
  /** itm: [T, 2] (no match, match). */
  itmLogits: 'itm_logits',
  /** itc_text: normalised ITC text features [T, E]. */
  textFeat: 'text_feat',
  /** score: int64 [T, L'], the same texts as input_ids tokenized for ITC ([CLS] first). */
  itcInputIds: 'itc_input_ids',
  /** score: int64 [T, L'], 0 on padding. */
  itcAttentionMask: 'itc_attention_mask',
  /** score: float32 [T], each text's ITC cosine with its image. */
  itc: 'itc',
  /**
   * generate_*: int64 [R, P], every row's prompt; rows are image-major, the same number per image
   * of pixel_values (R = images·k).
   */
  promptIds: 'prompt_ids',
  /** generate_*: int64 scalar, new tokens at most (the whole sequence: P + this). */
  maxNewTokens: 'max_new_tokens',
  /** generate_*: scalar of the sampling type (float64, or float32 on WebGPU). */
  repetitionPenalty: 'repetition_penalty',
  /** generate_*: int64 scalar, the whole-sequence length before which the end token is banned. */
  minLength: 'min_length',
  /** generate_sample: [R, S] of the sampling type, row r's t-th draw from its caption's stream. */
  uniforms: 'uniforms',
  /** generate_sample: scalar of the sampling type. */
  temperature: 'temperature',
  /** generate_sample: int64 scalar; the vocabulary size when top-k is off. */
  topK: 'top_k',
  /** generate_sample: scalar of the sampling type, 1 − top_p. */
  topPThreshold: 'top_p_threshold',
  /** generate_*: int64 [R, P + steps]; a row that ended repeats the end token. */
  sequences: 'sequences',
} as const;

/**
 * Per-layer attention keys/values: `past` (decoder in: the self-attention cache so far),
 * `present` (decoder out: the cache after this step), `cross` (cross_kv out; decoder and itm in:
 * the image's cross-attention keys/values), each [B, H, T, hd].
 */
export type KvRole = 'past' | 'present' | 'cross';

export function kvName(role: KvRole, part: 'key' | 'value', layer: number): string {
  return `${role}_${part}.${layer}`;
}
