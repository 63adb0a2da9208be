import type { BlipConfig } from '../../config.js';
import { GRAPHS, IO } from '../../io-names.js';
import type { WeightMap } from '../../tensor.js';
import type { GraphBuilder } from '../onnx/graph-builder.js';
import type { Blocks } from './blocks.js';
import { crossInputs } from './captioner.js';
import { crossKeyValues, type LayerCache, positionsAfter, textTransformer } from './text.js';
import { type GraphVariant, startGraph } from './variant.js';
import { imageFeatures, visionEncoder } from './vision.js';

const ENCODER = 'text_encoder.';

interface TextInputs {
  ids: string;
  mask: string;
}

function textInputs(g: GraphBuilder, ids: string = IO.inputIds, mask: string = IO.attentionMask): TextInputs {
  return {
    ids: g.input(ids, 'int64', ['texts', 'length']),
    mask: g.input(mask, 'int64', ['texts', 'length']),
  };
}

/** ITM logits [T, 2] of texts image-major over the images (rows) of `cross`, k texts per image. */
function itmLogits(
  b: Blocks,
  cfg: BlipConfig,
  text: TextInputs,
  cross: LayerCache[],
  images: string,
): string {
  const { g } = b;
  const width = g.constInt64([cfg.text.hiddenSize]);
  const { hidden } = textTransformer(b, cfg.text, text.ids, {
    prefix: ENCODER,
    positions: positionsAfter(b, text.ids),
    causal: false,
    keyPaddingMask: g.op('Cast', [text.mask], { to: 6 }),
    cross,
    // One image's texts attend to its keys/values as one sequence: no copy per text.
    crossGroups: {
      grouped: g.op('Concat', [g.op('Shape', [images], { end: 1 }), g.constInt64([-1]), width], { axis: 0 }),
      ungrouped: g.op('Concat', [g.op('Shape', [text.ids]), width], { axis: 0 }),
    },
  });
  return b.linear32(b.firstToken(hidden), ['itm_head']);
}

/** ITC text side: the text encoder alone (no image), normalize(text_proj(first token)). */
function textFeatures(b: Blocks, cfg: BlipConfig, text: TextInputs): string {
  const { hidden } = textTransformer(b, cfg.text, text.ids, {
    prefix: ENCODER,
    positions: positionsAfter(b, text.ids),
    causal: false,
    keyPaddingMask: b.g.op('Cast', [text.mask], { to: 6 }),
  });
  return b.l2Normalize(b.linear32(b.firstToken(hidden), ['text_proj']));
}

/**
 * ITM: the image-grounded text encoder over each text, cross-attending to the keys/values of its
 * image, then itm_head on the first token → itm_logits [T, 2] (no match, match). The texts come
 * image-major, the same number k per image (T = images·k): one image's keys/values serve its k
 * texts without being copied per text.
 */
export function buildItmGraph(cfg: BlipConfig, weights: WeightMap, variant: GraphVariant): GraphBuilder {
  const { g, b } = startGraph(GRAPHS.itm, weights, variant);
  const text = textInputs(g);
  const cross = crossInputs(g, cfg, 'images');
  g.output(itmLogits(b, cfg, text, cross, cross[0].key), IO.itmLogits, 'float32', ['texts', 2]);
  return g;
}

/** ITC text features [T, E]. */
export function buildItcTextGraph(cfg: BlipConfig, weights: WeightMap, variant: GraphVariant): GraphBuilder {
  const { g, b } = startGraph(GRAPHS.itcText, weights, variant);
  const feat = textFeatures(b, cfg, textInputs(g));
  g.output(feat, IO.textFeat, 'float32', ['texts', cfg.imageTextHiddenSize]);
  return g;
}

/**
 * The whole filter in one graph: pixels → ViT → ITC image features and cross keys/values (once per
 * image) → ITM logits [T, 2] and each text's ITC cosine with its image [T]. Texts come image-major,
 * k per image (T = images·k), as in the itm graph; the ITC texts are the same texts tokenized with
 * [CLS] first.
 */
export function buildScoreGraph(cfg: BlipConfig, weights: WeightMap, variant: GraphVariant): GraphBuilder {
  const { g, b } = startGraph(GRAPHS.score, weights, variant);
  const v = cfg.vision;
  const pixels = g.input(IO.pixelValues, 'float32', ['images', v.numChannels, v.imageSize, v.imageSize]);
  const itm = textInputs(g);
  const itc = textInputs(g, IO.itcInputIds, IO.itcAttentionMask);
  const embeds = visionEncoder(b, v, pixels);
  const cross = crossKeyValues(b, cfg.text, embeds, ENCODER);
  g.output(itmLogits(b, cfg, itm, cross, pixels), IO.itmLogits, 'float32', ['texts', 2]);
  // Cosines: text features [images, k, E] times their image's [images, 1, E], summed over E.
  const perImage = g.op(
    'Concat',
    [g.op('Shape', [pixels], { end: 1 }), g.constInt64([-1, cfg.imageTextHiddenSize])],
    {
      axis: 0,
    },
  );
  const texts = g.op('Reshape', [textFeatures(b, cfg, itc), perImage]);
  const image = g.op('Unsqueeze', [imageFeatures(b, embeds), g.constInt64([1])]);
  const cosines = g.op('ReduceSum', [g.op('Mul', [texts, image]), g.constInt64([2])], { keepdims: 0 });
  g.output(g.op('Reshape', [cosines, g.constInt64([-1])]), IO.itc, 'float32', ['texts']);
  return g;
}
