import {
  copyFile,
  lstat,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  realpath,
  rename,
  rm,
  writeFile,
} from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { DEFAULT_WEBGPU_STEPS } from '../../core/defaults.js';
import { ModelError, UsageError } from '../../core/errors.js';
import { CAPFILT_VERSION } from '../../core/version.js';
import { type BlipConfig, imageTokenCount, readBlipConfig } from '../config.js';
import { imageSpecFromPreprocessorConfig } from '../image-spec.js';
import { GRAPHS as GRAPH_ROLES } from '../io-names.js';
import {
  type CudaGraphs,
  type ImageSpec,
  MANIFEST_FORMAT_VERSION,
  type ModelManifest,
  type Precision,
  type RecheckGraphs,
  type SpecialIds,
  type WebGpuGraphs,
} from '../manifest.js';
import type { WeightMap } from '../tensor.js';
import { readVocab, vocabIds } from '../vocab.js';
import { loadCheckpoint } from './checkpoint.js';
import { buildCrossKvGraph, buildDecoderGraph, buildVisionGraph } from './graphs/captioner.js';
import { buildItcTextGraph, buildItmGraph, buildScoreGraph } from './graphs/filter.js';
import { buildGenerateGraph } from './graphs/generate.js';
import { fusedVariant, type GraphVariant, halfFusedVariant } from './graphs/variant.js';
import type { FloatType, GraphBuilder } from './onnx/graph-builder.js';
import { int8Roles, quantizeModel } from './quantize.js';

export interface ImportOptions {
  /**
   * fp32 (default); fp16 stores half-size weights widened at load; int8 quantizes the MatMul
   * weights of every graph but the decoder (model/convert/quantize.ts), for CPUs with VNNI, and
   * writes no WebGPU set (int8 models run on the CPU only).
   */
  precision?: Precision;
  /** With int8: quantize the captioner's decoder too (faster captions that differ more from fp32). */
  quantizeDecoder?: boolean;
  /** With int8: weights (by name) kept fp32 besides the default ones (for measuring, see quantize.ts). */
  int8AlsoFp32?: RegExp;
  /**
   * With int8, for a filter: also write its graphs in fp32 (the `recheck` set), with which the
   * filter scores again every image that has a text whose int8 ITM probability lies within this
   * margin of the decision threshold, so that decisions near it are fp32's (filter/filter.ts).
   */
  recheckMargin?: number;
  /** A human name recorded in the manifest (e.g. the hub repo id). */
  name?: string;
  /** Decoding steps of the WebGPU whole-graph captioner (DEFAULT_WEBGPU_STEPS). */
  webgpuSteps?: number;
  onProgress?: (message: string) => void;
}

type GraphFactory = (cfg: BlipConfig, weights: WeightMap, variant: GraphVariant) => GraphBuilder;

const GRAPHS: Record<BlipConfig['kind'], Record<string, GraphFactory>> = {
  captioner: {
    vision: buildVisionGraph,
    cross_kv: buildCrossKvGraph,
    decoder: buildDecoderGraph,
    generate_greedy: (cfg, weights, variant) => buildGenerateGraph(cfg, weights, variant, 'greedy'),
    generate_sample: (cfg, weights, variant) => buildGenerateGraph(cfg, weights, variant, 'sample'),
  },
  filter: {
    vision: buildVisionGraph,
    cross_kv: buildCrossKvGraph,
    itm: buildItmGraph,
    itc_text: buildItcTextGraph,
    score: buildScoreGraph,
  },
};

/**
 * Build and save every graph of `kind` in `variant` into `dir`, files named `<role><suffix>.onnx`;
 * returns role → file.
 */
function writeGraphs(
  cfg: BlipConfig,
  weights: WeightMap,
  variant: GraphVariant,
  dir: string,
  suffix: string,
  progress: (message: string) => void,
  skip: readonly string[] = [],
): Record<string, string> {
  const graphs: Record<string, string> = {};
  for (const [role, build] of Object.entries(GRAPHS[cfg.kind])) {
    if (skip.includes(role)) continue;
    const file = `${role}${suffix}.onnx`;
    progress(`building ${file}`);
    build(cfg, weights, variant).save(join(dir, file));
    graphs[role] = file;
  }
  return graphs;
}

/**
 * Convert a Hugging Face BLIP checkpoint directory into capfilt's ONNX graphs plus manifest.json.
 * The output is written to a fresh temp dir beside `outDir` and renamed into place, so an
 * interrupted import never leaves a half-written model behind. `outDir` may be new, an empty
 * folder or an earlier capfilt model; anything else (and the checkpoint's own folder) is refused.
 */
export async function importModel(
  hfDir: string,
  outDir: string,
  options: ImportOptions = {},
): Promise<ModelManifest> {
  const progress = options.onProgress ?? (() => {});
  checkImportOptions(options);
  const precision = options.precision ?? 'fp32';
  const target = resolve(outDir);
  await checkTarget(hfDir, target);
  const cfg = await readBlipConfig(hfDir);
  checkImportConfig(options, cfg);
  const image = await readImageSpec(hfDir, cfg);
  const vocab = vocabIds(await readVocab(hfDir));
  const specialIds = specialIdsOf(cfg, vocab);
  progress(`reading weights from ${hfDir}`);
  const checkpoint = await loadCheckpoint(hfDir);
  checkWeightShapes(cfg, checkpoint.weights);

  await mkdir(dirname(target), { recursive: true });
  const tmp = await mkdtemp(join(dirname(target), `.${basename(target)}.import-`));
  try {
    const sets = writeGraphSets(cfg, checkpoint.weights, options, tmp, progress);
    await copyFile(join(hfDir, 'vocab.txt'), join(tmp, 'vocab.txt'));
    await copyFile(join(hfDir, 'tokenizer_config.json'), join(tmp, 'tokenizer_config.json')).catch(
      (err: NodeJS.ErrnoException) => {
        // Optional: without it the tokenizer uses BertTokenizer's defaults (lower case), as HF does.
        if (err.code !== 'ENOENT') throw err;
      },
    );
    const manifest: ModelManifest = {
      format: MANIFEST_FORMAT,
      formatVersion: MANIFEST_FORMAT_VERSION,
      kind: cfg.kind,
      architecture: cfg.architecture,
      vision: cfg.vision,
      text: cfg.text,
      imageTextHiddenSize: cfg.imageTextHiddenSize,
      imageTokens: imageTokenCount(cfg.vision),
      image,
      specialIds,
      precision,
      ...sets,
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
    await swapInto(tmp, target);
    progress(`wrote ${target}`);
    return manifest;
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    throw err;
  }
}

const MANIFEST_FORMAT = 'capfilt-blip-onnx';

/** The graph sets of a model and where their records go in the manifest. */
type GraphSets = Pick<ModelManifest, 'graphs' | 'cuda' | 'webgpu' | 'quantization' | 'recheck'>;

/**
 * Every graph of an import, written into `dir`: the CPU set first (it writes the weights; the
 * other sets refer to them), then the CUDA and WebGPU sets, or for int8 the quantization (and the
 * fp32 recheck set of a filter imported with a margin).
 */
function writeGraphSets(
  cfg: BlipConfig,
  weights: WeightMap,
  options: ImportOptions,
  dir: string,
  progress: (message: string) => void,
): GraphSets {
  const precision = options.precision ?? 'fp32';
  const weightType: FloatType = precision === 'fp16' ? 'float16' : 'float32';
  const fused = fusedVariant(weightType);
  const unrolledSteps = options.webgpuSteps ?? DEFAULT_WEBGPU_STEPS;
  // int8 quantizes the per-stage graphs only (its quantizer does not enter Loop bodies): int8
  // models caption and score from the host, and run on the CPU only.
  if (precision === 'int8') {
    const skip = [GRAPH_ROLES.generateGreedy, GRAPH_ROLES.generateSample, GRAPH_ROLES.score];
    const graphs = writeGraphs(cfg, weights, fused, dir, '', progress, skip);
    const roles = int8Roles(Object.keys(graphs), options.quantizeDecoder ?? false);
    // The recheck set: the host path in fp32 beside the quantized graphs. The quantizer leaves the
    // roles it is not given as they are and writes their weights into the shared data file.
    const recheck: RecheckGraphs | undefined =
      options.recheckMargin === undefined
        ? undefined
        : {
            margin: options.recheckMargin,
            graphs: writeGraphs(cfg, weights, fused, dir, '.fp32', progress, [GRAPH_ROLES.score]),
          };
    const all = { ...graphs, ...prefixed(recheck?.graphs ?? {}, 'fp32:') };
    const quantization = quantizeModel(dir, all, roles, progress, options.int8AlsoFp32);
    return {
      graphs,
      cuda: { graphs, computeType: 'float32' },
      webgpu: { graphs: {}, computeType: 'float32', unrolledSteps },
      quantization,
      ...(recheck ? { recheck } : {}),
    };
  }
  const graphs = writeGraphs(cfg, weights, fused, dir, '', progress);
  const cuda: CudaGraphs =
    precision === 'fp16'
      ? {
          graphs: writeGraphs(cfg, weights, halfFusedVariant(fused.store), dir, '.cuda', progress),
          computeType: 'float16',
        }
      : { graphs, computeType: 'float32' };
  const portable: GraphVariant = { ...fused, computeType: weightType, portable: true, unrolledSteps };
  const webgpu: WebGpuGraphs = {
    graphs: writeGraphs(cfg, weights, portable, dir, '.webgpu', progress),
    computeType: weightType,
    unrolledSteps,
  };
  return { graphs, cuda, webgpu };
}

/** `graphs` with every role prefixed (distinct keys for one more set of files). */
function prefixed(graphs: Record<string, string>, prefix: string): Record<string, string> {
  return Object.fromEntries(Object.entries(graphs).map(([role, file]) => [`${prefix}${role}`, file]));
}

/** What an import's options allow, checked before anything is read or downloaded. */
export function checkImportOptions(options: ImportOptions): void {
  const margin = options.recheckMargin;
  if (margin === undefined) return;
  if (!(margin > 0 && margin < 0.5)) {
    throw new UsageError(`--recheck-margin must lie strictly between 0 and 0.5, got ${margin}`);
  }
  if ((options.precision ?? 'fp32') !== 'int8') throw new UsageError(RECHECK_FOR);
}

/** What an import's options ask of the checkpoint (its config read, its weights not yet). */
export function checkImportConfig(options: ImportOptions, cfg: BlipConfig): void {
  if (options.recheckMargin !== undefined && cfg.kind !== 'filter') throw new UsageError(RECHECK_FOR);
}

const RECHECK_FOR = '--recheck-margin is for filters imported with --precision int8';

/** The real path of `path`, or of its nearest existing ancestor joined with the rest. */
async function realOrResolved(path: string): Promise<string> {
  try {
    return await realpath(path);
  } catch {
    const parent = dirname(path);
    return parent === path ? path : join(await realOrResolved(parent), basename(path));
  }
}

/** True when `inner` is `outer` or lies inside it. */
function within(inner: string, outer: string): boolean {
  const rel = relative(outer, inner);
  return rel === '' || (rel !== '..' && !rel.startsWith(`..${sep}`) && !isAbsolute(rel));
}

/**
 * Refuses an output folder the import would destroy: the checkpoint's folder or one holding it,
 * a file, or a non-empty folder that is not an earlier capfilt model (manifest.json of ours).
 */
async function checkTarget(hfDir: string, target: string): Promise<void> {
  const source = await realOrResolved(resolve(hfDir));
  const out = await realOrResolved(target);
  if (within(source, out)) {
    throw new ModelError(
      `--out ${target} is the checkpoint folder ${source} or holds it; choose a folder outside the checkpoint`,
    );
  }
  const st = await lstat(target).catch(() => null);
  if (!st) return;
  if (!st.isDirectory())
    throw new ModelError(`--out ${target} exists and is not a folder; refusing to replace it`);
  if ((await readdir(target)).length === 0) return;
  if (!(await isCapfiltModel(target))) {
    throw new ModelError(
      `--out ${target} exists and is not a capfilt model (no manifest.json of ${MANIFEST_FORMAT}); ` +
        'refusing to replace it: choose a new folder or remove this one',
    );
  }
}

async function isCapfiltModel(dir: string): Promise<boolean> {
  try {
    const m = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')) as { format?: unknown };
    return m.format === MANIFEST_FORMAT;
  } catch {
    return false;
  }
}

/** Puts the finished `tmp` at `target`; an earlier model there is moved aside first, then removed. */
async function swapInto(tmp: string, target: string): Promise<void> {
  const st = await lstat(target).catch(() => null);
  if (!st || (await readdir(target)).length === 0) {
    // rename(2) replaces an empty folder and fails on a non-empty one: nothing is lost in a race.
    await rename(tmp, target);
    return;
  }
  if (!(await isCapfiltModel(target))) {
    throw new ModelError(`--out ${target} changed during the import and is no longer a capfilt model`);
  }
  const old = `${tmp}.old`;
  await rename(target, old);
  try {
    await rename(tmp, target);
  } catch (err) {
    await rename(old, target);
    throw err;
  }
  await rm(old, { recursive: true, force: true });
}

/** [name, expected shape] of the tensors that fix each configured size, checked before converting. */
function expectedShapes(cfg: BlipConfig): [string, number[]][] {
  const v = cfg.vision;
  const t = cfg.text;
  const text = cfg.kind === 'captioner' ? 'text_decoder.bert.' : 'text_encoder.';
  return [
    [
      'vision_model.embeddings.patch_embedding.weight',
      [v.hiddenSize, v.numChannels, v.patchSize, v.patchSize],
    ],
    ['vision_model.embeddings.position_embedding', [1, imageTokenCount(v), v.hiddenSize]],
    [`vision_model.encoder.layers.${v.numLayers - 1}.mlp.fc1.weight`, [v.intermediateSize, v.hiddenSize]],
    [`${text}embeddings.word_embeddings.weight`, [t.vocabSize, t.hiddenSize]],
    [`${text}embeddings.position_embeddings.weight`, [t.maxPositionEmbeddings, t.hiddenSize]],
    [`${text}encoder.layer.${t.numLayers - 1}.intermediate.dense.weight`, [t.intermediateSize, t.hiddenSize]],
  ];
}

/** A config that disagrees with its weights would convert into a model that fails at run time. */
function checkWeightShapes(cfg: BlipConfig, weights: WeightMap): void {
  for (const [name, shape] of expectedShapes(cfg)) {
    const w = weights.get(name);
    if (!w) throw new ModelError(`the checkpoint has no ${name}, which config.json implies`);
    if (w.shape.join(',') !== shape.join(',')) {
      throw new ModelError(
        `config.json does not match the weights: ${name} is [${w.shape.join(', ')}], the config implies [${shape.join(', ')}]`,
      );
    }
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
