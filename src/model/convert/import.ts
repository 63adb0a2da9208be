import { copyFile, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { ModelError } from '../../core/errors.js';
import { CAPFILT_VERSION } from '../../core/version.js';
import { type BlipConfig, imageTokenCount, readBlipConfig } from '../config.js';
import { imageSpecFromPreprocessorConfig } from '../image-spec.js';
import type { ImageSpec, ModelManifest, SpecialIds } from '../manifest.js';
import type { WeightMap } from '../tensor.js';
import { loadCheckpoint } from './checkpoint.js';
import {
  buildCrossKvGraph,
  buildDecoderGraph,
  buildVisionGraph,
  type WeightType,
} from './graphs/captioner.js';
import { buildItcTextGraph, buildItmGraph } from './graphs/filter.js';
import type { GraphBuilder } from './onnx/graph-builder.js';

export interface ImportOptions {
  precision?: 'fp32' | 'fp16';
  /** A human name recorded in the manifest (e.g. the hub repo id). */
  name?: string;
  onProgress?: (message: string) => void;
}

type GraphFactory = (cfg: BlipConfig, weights: WeightMap, weightType: WeightType) => GraphBuilder;

const GRAPHS: Record<BlipConfig['kind'], Record<string, GraphFactory>> = {
  captioner: { vision: buildVisionGraph, cross_kv: buildCrossKvGraph, decoder: buildDecoderGraph },
  filter: {
    vision: buildVisionGraph,
    cross_kv: buildCrossKvGraph,
    itm: buildItmGraph,
    itc_text: buildItcTextGraph,
  },
};

/**
 * Convert a Hugging Face BLIP checkpoint directory into capfilt's ONNX graphs plus manifest.json.
 * The output is written to a sibling temp dir and renamed into place, so an interrupted import never
 * leaves a half-written model behind.
 */
export async function importModel(
  hfDir: string,
  outDir: string,
  options: ImportOptions = {},
): Promise<ModelManifest> {
  const progress = options.onProgress ?? (() => {});
  const precision = options.precision ?? 'fp32';
  const cfg = await readBlipConfig(hfDir);
  const image = await readImageSpec(hfDir, cfg);
  const vocab = await readVocab(hfDir);
  const specialIds = specialIdsOf(cfg, vocab);
  const doLowerCase = await readDoLowerCase(hfDir);
  progress(`reading weights from ${hfDir}`);
  const checkpoint = await loadCheckpoint(hfDir);

  const target = resolve(outDir);
  const tmp = `${target}.tmp-${process.pid}`;
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp, { recursive: true });
  try {
    const graphs: Record<string, string> = {};
    for (const [role, build] of Object.entries(GRAPHS[cfg.kind])) {
      progress(`building ${role}.onnx`);
      const file = `${role}.onnx`;
      build(cfg, checkpoint.weights, precision === 'fp16' ? 'float16' : 'float32').save(join(tmp, file));
      graphs[role] = file;
    }
    await copyFile(join(hfDir, 'vocab.txt'), join(tmp, 'vocab.txt'));
    await copyFile(join(hfDir, 'tokenizer_config.json'), join(tmp, 'tokenizer_config.json')).catch(
      (err: NodeJS.ErrnoException) => {
        // Optional: without it the tokenizer uses BertTokenizer's defaults (lower case), as HF does.
        if (err.code !== 'ENOENT') throw err;
      },
    );
    const manifest: ModelManifest = {
      format: 'capfilt-blip-onnx',
      formatVersion: 1,
      kind: cfg.kind,
      architecture: cfg.architecture,
      vision: cfg.vision,
      text: cfg.text,
      imageTextHiddenSize: cfg.imageTextHiddenSize,
      imageTokens: imageTokenCount(cfg.vision),
      image,
      specialIds,
      precision,
      graphs,
      tokenizer: { vocab: 'vocab.txt', doLowerCase },
      source: {
        dir: resolve(hfDir),
        weightsFile: basename(checkpoint.file),
        sha256: checkpoint.sha256,
        ...(options.name ? { name: options.name } : {}),
      },
      capfiltVersion: CAPFILT_VERSION,
      createdAt: new Date().toISOString(),
    };
    await writeFile(join(tmp, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
    await rm(target, { recursive: true, force: true });
    await rename(tmp, target);
    progress(`wrote ${target}`);
    return manifest;
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    throw err;
  }
}

async function readImageSpec(dir: string, cfg: BlipConfig): Promise<ImageSpec> {
  let json: unknown = {};
  try {
    json = JSON.parse(await readFile(join(dir, 'preprocessor_config.json'), 'utf8'));
  } catch {
    // Absent processor config: BlipImageProcessor's defaults at the model's own resolution.
  }
  const spec = imageSpecFromPreprocessorConfig(json, cfg.vision.imageSize);
  if (spec.height !== cfg.vision.imageSize || spec.width !== cfg.vision.imageSize) {
    throw new ModelError(
      `preprocessor_config.json resizes to ${spec.width}x${spec.height} but the vision model expects ${cfg.vision.imageSize}`,
    );
  }
  return spec;
}

async function readVocab(dir: string): Promise<Map<string, number>> {
  let text: string;
  try {
    text = await readFile(join(dir, 'vocab.txt'), 'utf8');
  } catch (err) {
    throw new ModelError(`${dir}: no vocab.txt (BLIP uses the bert-base-uncased WordPiece vocabulary)`, {
      cause: err,
    });
  }
  const vocab = new Map<string, number>();
  text.split('\n').forEach((line, i) => {
    const token = line.replace(/\r$/, '');
    if (token !== '' && !vocab.has(token)) vocab.set(token, i);
  });
  return vocab;
}

async function readDoLowerCase(dir: string): Promise<boolean> {
  try {
    const cfg = JSON.parse(await readFile(join(dir, 'tokenizer_config.json'), 'utf8')) as {
      do_lower_case?: boolean;
    };
    return cfg.do_lower_case ?? true;
  } catch {
    return true;
  }
}

/** BLIP's ids: BERT's specials from the vocab; [DEC] = bos_token_id and [ENC] = the last id, from the config. */
function specialIdsOf(cfg: BlipConfig, vocab: Map<string, number>): SpecialIds {
  const id = (token: string): number => {
    const v = vocab.get(token);
    if (v === undefined) throw new ModelError(`vocab.txt has no ${token}`);
    return v;
  };
  const dec = cfg.text.bosTokenId;
  const enc = cfg.text.vocabSize - 1;
  if (enc === dec) throw new ModelError('cannot place [ENC]: vocab_size - 1 equals bos_token_id');
  return {
    pad: cfg.text.padTokenId,
    unk: id('[UNK]'),
    cls: id('[CLS]'),
    sep: cfg.text.sepTokenId,
    mask: id('[MASK]'),
    dec,
    enc,
  };
}
