import type { BlipConfig } from '../../config.js';
import { GRAPHS, IO } from '../../io-names.js';
import type { WeightMap } from '../../tensor.js';
import { GraphBuilder } from '../onnx/graph-builder.js';
import { Blocks } from './blocks.js';
import { crossInputs, type WeightType } from './captioner.js';
import { positionsAfter, textTransformer } from './text.js';

const ENCODER = 'text_encoder.';

function textInputs(g: GraphBuilder): { ids: string; mask: string } {
  return {
    ids: g.input(IO.inputIds, 'int64', ['texts', 'length']),
    mask: g.input(IO.attentionMask, 'int64', ['texts', 'length']),
  };
}

/**
 * ITM: the image-grounded text encoder over each text, cross-attending to the keys/values of the
 * image it is paired with (image_index picks the row, so one image serves many texts), then
 * itm_head on the first token → itm_logits [T, 2] (no match, match).
 */
export function buildItmGraph(cfg: BlipConfig, weights: WeightMap, weightType: WeightType): GraphBuilder {
  const g = new GraphBuilder(GRAPHS.itm, weightType);
  const b = new Blocks(g, weights);
  const { ids, mask } = textInputs(g);
  const imageIndex = g.input(IO.imageIndex, 'int64', ['texts']);
  const cross = crossInputs(g, cfg, 'images').map((c) => ({
    key: g.op('Gather', [c.key, imageIndex], { axis: 0 }),
    value: g.op('Gather', [c.value, imageIndex], { axis: 0 }),
  }));
  const { hidden } = textTransformer(b, cfg.text, ids, {
    prefix: ENCODER,
    positions: positionsAfter(b, ids),
    causal: false,
    keyPaddingMask: g.op('Cast', [mask], { to: 6 }),
    cross,
  });
  g.output(b.linear(b.firstToken(hidden), ['itm_head']), IO.itmLogits, 'float32', ['texts', 2]);
  return g;
}

/** ITC text side: the text encoder alone (no image), normalize(text_proj(first token)). */
export function buildItcTextGraph(cfg: BlipConfig, weights: WeightMap, weightType: WeightType): GraphBuilder {
  const g = new GraphBuilder(GRAPHS.itcText, weightType);
  const b = new Blocks(g, weights);
  const { ids, mask } = textInputs(g);
  const { hidden } = textTransformer(b, cfg.text, ids, {
    prefix: ENCODER,
    positions: positionsAfter(b, ids),
    causal: false,
    keyPaddingMask: g.op('Cast', [mask], { to: 6 }),
  });
  const feat = b.l2Normalize(b.linear(b.firstToken(hidden), ['text_proj']));
  g.output(feat, IO.textFeat, 'float32', ['texts', cfg.imageTextHiddenSize]);
  return g;
}
