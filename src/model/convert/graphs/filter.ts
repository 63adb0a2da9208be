import type { BlipConfig } from '../../config.js';
import { GRAPHS, IO } from '../../io-names.js';
import type { WeightMap } from '../../tensor.js';
import type { GraphBuilder } from '../onnx/graph-builder.js';
import { crossInputs } from './captioner.js';
import { positionsAfter, textTransformer } from './text.js';
import { type GraphVariant, startGraph } from './variant.js';

const ENCODER = 'text_encoder.';

function textInputs(g: GraphBuilder): { ids: string; mask: string } {
  return {
    ids: g.input(IO.inputIds, 'int64', ['texts', 'length']),
    mask: g.input(IO.attentionMask, 'int64', ['texts', 'length']),
  };
}

/**
 * ITM: the image-grounded text encoder over each text, cross-attending to the keys/values of its
 * image, then itm_head on the first token → itm_logits [T, 2] (no match, match). The texts come
 * image-major, the same number k per image (T = images·k): one image's keys/values serve its k
 * texts without being copied per text.
 */
export function buildItmGraph(cfg: BlipConfig, weights: WeightMap, variant: GraphVariant): GraphBuilder {
  const { g, b } = startGraph(GRAPHS.itm, weights, variant);
  const { ids, mask } = textInputs(g);
  const cross = crossInputs(g, cfg, 'images');
  const width = g.constInt64([cfg.text.hiddenSize]);
  const crossGroups = {
    grouped: g.op('Concat', [g.op('Shape', [cross[0].key], { end: 1 }), g.constInt64([-1]), width], {
      axis: 0,
    }),
    ungrouped: g.op('Concat', [g.op('Shape', [ids]), width], { axis: 0 }),
  };
  const { hidden } = textTransformer(b, cfg.text, ids, {
    prefix: ENCODER,
    positions: positionsAfter(b, ids),
    causal: false,
    keyPaddingMask: g.op('Cast', [mask], { to: 6 }),
    cross,
    crossGroups,
  });
  g.output(b.linear32(b.firstToken(hidden), ['itm_head']), IO.itmLogits, 'float32', ['texts', 2]);
  return g;
}

/** ITC text side: the text encoder alone (no image), normalize(text_proj(first token)). */
export function buildItcTextGraph(cfg: BlipConfig, weights: WeightMap, variant: GraphVariant): GraphBuilder {
  const { g, b } = startGraph(GRAPHS.itcText, weights, variant);
  const { ids, mask } = textInputs(g);
  const { hidden } = textTransformer(b, cfg.text, ids, {
    prefix: ENCODER,
    positions: positionsAfter(b, ids),
    causal: false,
    keyPaddingMask: g.op('Cast', [mask], { to: 6 }),
  });
  const feat = b.l2Normalize(b.linear32(b.firstToken(hidden), ['text_proj']));
  g.output(feat, IO.textFeat, 'float32', ['texts', cfg.imageTextHiddenSize]);
  return g;
}
