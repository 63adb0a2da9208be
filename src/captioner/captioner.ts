import type { Caption, DecodingOptions } from '../core/types.js';
import { GRAPHS, IO } from '../model/io-names.js';
import { mapBatches } from '../model/runtime/batching.js';
import { BlipEngine, type EngineOptions, loadModel } from '../model/runtime/engine.js';
import { DecoderRun } from './decoder-session.js';
import { captionRng } from './rng.js';
import { beamSearch, decodeRows } from './search.js';
import { generateFeeds, sequencesOf } from './whole-graph.js';

export type { EngineOptions } from '../model/runtime/engine.js';

export interface CaptionSample {
  key: string;
  /** This model's pixel tensor, CHW float32 (see Captioner.pixels). */
  pixels: Float32Array;
}

/**
 * BLIP's captioner (BlipForConditionalGeneration) on onnxruntime: the vision encoder and the
 * cross-attention keys/values run once per image, then the text decoder generates with its
 * self-attention cache.
 */
export class Captioner extends BlipEngine {
  static async load(modelDir: string, options: EngineOptions = {}): Promise<Captioner> {
    return new Captioner(await loadModel(modelDir, 'captioner', options));
  }

  /** The decoder's starting ids: [DEC] then the prompt's word pieces (no [SEP]), as BLIP builds them. */
  promptIds(prompt: string): number[] {
    if (prompt === '') return [this.manifest.specialIds.dec];
    const ids = this.tokenizer.encode(prompt, { addSpecialTokens: true });
    ids[0] = this.manifest.specialIds.dec;
    return ids.slice(0, -1);
  }

  /** The caption text: the decoded sequence without special tokens and without the prompt. */
  captionText(tokenIds: readonly number[], promptIds: readonly number[]): string {
    const full = this.tokenizer.decode(tokenIds, { skipSpecialTokens: true });
    const prompt = this.tokenizer.decode(promptIds, { skipSpecialTokens: true });
    return full.startsWith(prompt) ? full.slice(prompt.length).trim() : full.trim();
  }

  /**
   * numCaptions captions per sample; a caption depends only on (seed, key, caption index).
   * `options` must have passed validateDecoding (core/validate.ts), as every entry point does.
   */
  async caption(samples: readonly CaptionSample[], options: DecodingOptions): Promise<Caption[][]> {
    if (options.numCaptions === 0) return samples.map(() => []);
    // The batch size counts decoder rows: with beams or several captions per image each image
    // takes that many rows (and copies of its cross-attention keys/values, 42 MB each at base size).
    const perImage = options.strategy === 'beam' ? options.numBeams : options.numCaptions;
    return mapBatches(
      samples,
      Math.max(1, Math.floor(this.batchSize / perImage)),
      (batch) => this.exclusive(() => this.captionBatch(batch, options)),
      (size) => this.warn(`out of memory while captioning; batch size lowered to ${size}`),
    );
  }

  /** image_embeds [B, N, Dv] of a batch (the cross-attention cache is filled as a side effect). */
  async encode(samples: readonly CaptionSample[]): Promise<{ imageEmbeds: Float32Array }> {
    return this.exclusive(async () => ({ imageEmbeds: (await this.encodeImages(samples)).imageEmbeds }));
  }

  /**
   * The whole-graph captioner for these options, or null for the host loop: beam search (it
   * reorders the caches and keeps hypotheses every step; see README), the wholeGraph option off,
   * a model without whole-graph captioners (int8, or imported before them), or more steps than an
   * unrolled (WebGPU) graph has.
   */
  private wholeGraphFor(o: DecodingOptions, prompt: readonly number[]): string | null {
    if (o.strategy === 'beam' || !this.wholeGraph) return null;
    const steps = o.maxLength - prompt.length;
    const unrolled = this.unrolledSteps;
    if (unrolled > 0 && steps > unrolled) {
      if (!this.warnedSteps) {
        this.warn(
          `${steps} decoding steps exceed the ${unrolled} of the WebGPU whole-graph captioner; decoding ` +
            'step by step from the host (re-import with a larger --webgpu-steps to avoid it)',
        );
      }
      this.warnedSteps = true;
      return null;
    }
    const role = o.strategy === 'greedy' ? GRAPHS.generateGreedy : GRAPHS.generateSample;
    return this.sessions.has(role) ? role : null;
  }

  private warnedSteps = false;

  /** The decoding steps the whole-graph captioner of this device inlines; 0 for a Loop. */
  private get unrolledSteps(): number {
    return this.device.kind === 'webgpu' ? this.manifest.webgpu.unrolledSteps : 0;
  }

  private async captionBatch(samples: CaptionSample[], o: DecodingOptions): Promise<Caption[][]> {
    const prompt = this.promptIds(o.prompt);
    const role = this.wholeGraphFor(o, prompt);
    const sequences = role
      ? await this.generateInGraph(role, samples, prompt, o)
      : await this.generateOnHost(samples, prompt, o);
    this.images += samples.length;
    return sequences.map((perSample) =>
      perSample.map((tokenIds) => ({ text: this.captionText(tokenIds, prompt), tokenIds })),
    );
  }

  /** One call: pixels (and uniforms) in, every row's token ids out. */
  private async generateInGraph(
    role: string,
    samples: CaptionSample[],
    prompt: number[],
    o: DecodingOptions,
  ): Promise<number[][][]> {
    const session = await this.session(role);
    const steps = Math.max(0, o.maxLength - prompt.length);
    const batch = {
      keys: samples.map((s) => s.key),
      pixels: this.pixelBatch(samples),
      prompt,
      perImage: o.numCaptions,
    };
    const type = session.inputType(IO.repetitionPenalty);
    const feeds = generateFeeds(batch, o, this.manifest.text.vocabSize, type, this.unrolledSteps || steps);
    const out = await session.run(feeds);
    const rows = sequencesOf(out[IO.sequences], prompt.length, o.maxLength, this.manifest.specialIds.sep);
    return samples.map((_, i) => rows.slice(i * o.numCaptions, (i + 1) * o.numCaptions));
  }

  /** Vision and cross K/V once, then the decoder step by step with the search on the host. */
  private async generateOnHost(
    samples: CaptionSample[],
    prompt: number[],
    o: DecodingOptions,
  ): Promise<number[][][]> {
    const perImage = o.strategy === 'beam' ? o.numBeams : o.numCaptions;
    await this.encodeImages(samples, perImage);
    const t = this.manifest.text;
    // Row r reads image floor(r / perImage): repeat_interleave, as generate() expands inputs.
    const rows = samples.flatMap((_, i) => Array.from({ length: perImage }, () => i));
    const run = new DecoderRun(await this.session(GRAPHS.decoder), this.crossCache, rows.length);
    const eosId = this.manifest.specialIds.sep;
    let sequences: number[][][];
    if (o.strategy === 'beam') {
      const results = await beamSearch(
        run,
        prompt,
        samples.length,
        {
          numBeams: o.numBeams,
          lengthPenalty: 1,
          repetitionPenalty: o.repetitionPenalty,
          numReturn: o.numCaptions,
          maxLength: o.maxLength,
          minLength: o.minLength,
          eosId,
        },
        t.vocabSize,
      );
      sequences = results.map((r) => r.map((h) => h.tokens));
    } else {
      const rngs = rows.map((image, r) =>
        o.strategy === 'nucleus' ? captionRng(o.seed, samples[image].key, r % perImage) : null,
      );
      const flat = await decodeRows(run, prompt, rngs, { ...o, eosId, maxLength: o.maxLength }, t.vocabSize);
      sequences = samples.map((_, i) => flat.slice(i * perImage, (i + 1) * perImage));
    }
    return sequences;
  }
}
