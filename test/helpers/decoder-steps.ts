import * as ort from 'onnxruntime-node';
import type { ModelManifest } from '../../src/model/manifest.js';

/**
 * Next-token logits of the first `steps` decoder calls for one image, fed `sequence` (prompt of
 * `promptLength` ids, then one id per step), through a captioner's vision, cross_kv and decoder
 * graphs opened by `open` — the path the Hugging Face step logits of the fixture are compared on.
 */
export async function decoderStepLogits(
  m: ModelManifest,
  open: (role: string) => Promise<ort.InferenceSession>,
  pixels: Float32Array,
  sequence: number[],
  steps: number,
  promptLength = 4,
): Promise<Float32Array[]> {
  const [vision, crossKv, decoder] = await Promise.all(['vision', 'cross_kv', 'decoder'].map(open));
  const v = await vision.run({ pixel_values: new ort.Tensor('float32', pixels, [1, 3, 64, 64]) });
  const kv = await crossKv.run({ image_embeds: v.image_embeds });
  const hd = m.text.hiddenSize / m.text.numHeads;
  const feeds: Record<string, ort.Tensor> = {};
  for (let l = 0; l < m.text.numLayers; l++) {
    feeds[`cross_key.${l}`] = kv[`cross_key.${l}`];
    feeds[`cross_value.${l}`] = kv[`cross_value.${l}`];
    feeds[`past_key.${l}`] = new ort.Tensor('float32', new Float32Array(0), [1, m.text.numHeads, 0, hd]);
    feeds[`past_value.${l}`] = new ort.Tensor('float32', new Float32Array(0), [1, m.text.numHeads, 0, hd]);
  }
  const logits: Float32Array[] = [];
  let tokens = sequence.slice(0, promptLength);
  for (let step = 0; step < steps; step++) {
    feeds.input_ids = new ort.Tensor('int64', BigInt64Array.from(tokens.map(BigInt)), [1, tokens.length]);
    const out = await decoder.run(feeds);
    logits.push(out.logits.data as Float32Array);
    for (let l = 0; l < m.text.numLayers; l++) {
      feeds[`past_key.${l}`] = out[`present_key.${l}`];
      feeds[`past_value.${l}`] = out[`present_value.${l}`];
    }
    tokens = [sequence[promptLength + step]];
  }
  await Promise.all([vision.release(), crossKv.release(), decoder.release()]);
  return logits;
}
