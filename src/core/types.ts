/**
 * The typed values that flow between pipeline stages. The local runner and the BullMQ workers
 * compose the same stage functions over these types; everything a queued job carries
 * (ShardRef, RunOptions) is plain JSON.
 */
import type { RejectReason } from './errors.js';

/** How captions are decoded. Defaults are BLIP CapFilt's (generate(sample=True) in salesforce/BLIP). */
export interface DecodingOptions {
  strategy: 'nucleus' | 'greedy' | 'beam';
  topP: number;
  topK: number;
  repetitionPenalty: number;
  numBeams: number;
  /** Whole decoder sequence length, counting [DEC] and the prompt ids, as Hugging Face counts it. */
  maxLength: number;
  minLength: number;
  /** Text prompt; "" means no prompt (the sequence starts with [DEC] alone). */
  prompt: string;
  numCaptions: number;
  seed: number;
  temperature: number;
}

/** One synthetic caption. */
export interface Caption {
  /** Decoded text with the prompt removed. */
  text: string;
  /** The whole decoder sequence as Hugging Face returns it: [DEC], prompt ids, generated ids. */
  tokenIds: number[];
}

/** How texts are scored and which survive. Defaults are BLIP's. */
export interface FilterOptions {
  /** A text is kept iff its ITM match probability is strictly greater than this. */
  threshold: number;
  /** Which texts may be kept: the web text, the synthetic captions, or both. */
  consider: 'web' | 'synthetic' | 'both';
  /** Keep at most this many texts per image, best ITM first (0: no limit). */
  keepTop: number;
  /** First token of the ITM input: [ENC] as BLIP was fine-tuned, or [CLS] as Hugging Face does. */
  firstToken: 'enc' | 'cls';
  /** Apply BLIP's pre_caption normalisation to web text before scoring (output keeps the original). */
  normalizeWebText: boolean;
  /** Token budget of the ITM/ITC text input, [CLS]/[ENC] and [SEP] included (BLIP uses 35). */
  maxTextLength: number;
}

/** ITM match probability and ITC cosine similarity of one text against one image. */
export interface TextScore {
  itm: number;
  itc: number;
}

/** 8-bit RGB pixels, row-major HWC, 3 bytes per pixel. */
export interface RgbImage {
  width: number;
  height: number;
  data: Uint8Array;
}

/** Input formats capfilt reads. */
export type InputFormat = 'jsonl' | 'csv' | 'tsv' | 'parquet' | 'webdataset' | 'folder';

/**
 * One unit of work, named by a stable id derived from the input (file name, or manifest name +
 * row range). JSON-serialisable: it is what a queue job carries.
 */
export interface ShardRef {
  id: string;
  format: InputFormat;
  /** The file the shard reads (manifest, tar, parquet), or the folder/prefix for 'folder'. */
  uri: string;
  /** Row range [rowStart, rowEnd) within the file (manifests, parquet) or the sorted image listing (folder). */
  rowStart?: number;
  rowEnd?: number;
  /** Human-annotated pairs: written unfiltered, marked human. */
  human?: boolean;
}

/** Where a pair's image bytes come from. */
export type ImageRef =
  /** Bytes already in hand (a tar member). */
  | { kind: 'inline'; bytes: Uint8Array; name: string }
  /** A location: absolute local path, s3://bucket/key or http(s) URL. */
  | { kind: 'location'; uri: string };

/** A pair as a reader yields it. `invalid` marks a row that becomes a rejected record as is. */
export interface PairRef {
  key: string;
  shardId: string;
  /** Position within the shard, 0-based, counting every pair including invalid ones. */
  index: number;
  /** Human-readable source reference written into the record (URL, path, tar#member). */
  source: string;
  image: ImageRef | null;
  text: string | null;
  meta: Record<string, unknown>;
  human?: boolean;
  invalid?: { reason: RejectReason; message: string };
}

/** Why a sample left the model path. */
export interface Rejection {
  reason: RejectReason;
  message: string;
}

/** After fetch + decode: model-ready pixels or a rejection. */
export interface LoadedSample {
  ref: PairRef;
  width?: number;
  height?: number;
  /** Pixel tensors per engine (the two models may use different sizes/normalisation). */
  captionerPixels?: Float32Array;
  filterPixels?: Float32Array;
  /** The encoded image as read, kept when the run's dataset format packs it (a WebDataset tar). */
  bytes?: Uint8Array;
  rejection?: Rejection;
}

export interface CaptionedSample extends LoadedSample {
  captions: Caption[];
}

export interface ScoredSample extends CaptionedSample {
  /** Null when the pair has no web text to score (never for valid pairs; kept for human pairs). */
  webScore: TextScore | null;
  syntheticScores: TextScore[];
}

/** Which engines and options produced a record (provenance). */
export interface RecordModels {
  captioner: string | null;
  filter: string | null;
}

export interface RecordOptions {
  threshold: number;
  consider: FilterOptions['consider'];
  top_k_texts: number;
  first_token: FilterOptions['firstToken'];
  normalize_web_text: boolean;
  strategy: DecodingOptions['strategy'];
  top_p: number;
  top_k: number;
  repetition_penalty: number;
  num_beams: number;
  max_length: number;
  min_length: number;
  prompt: string;
  num_captions: number;
  seed: number;
  /** The columns the texts and images were read from, as named by a flag (null: recognised names). */
  image_column: string | null;
  text_column: string | null;
}

export interface WebTextResult {
  text: string;
  itm: number | null;
  itc: number | null;
  kept: boolean;
}

export interface SyntheticTextResult {
  text: string;
  token_ids: number[];
  itm: number;
  itc: number;
  kept: boolean;
}

/** One output line; one per input pair. snake_case: it is a dataset file format (see README). */
export interface OutputRecord {
  key: string;
  source: string;
  shard: string;
  index: number;
  width: number | null;
  height: number | null;
  web: WebTextResult | null;
  synthetic: SyntheticTextResult[];
  /** Kept texts: the bootstrapped result for this image. */
  texts: string[];
  status: 'ok' | 'rejected';
  reason: RejectReason | null;
  error: string | null;
  human: boolean;
  /**
   * The input's other columns (manifest columns besides image, text and key; a tar's or folder's
   * `<key>.json`), kept as img2dataset keeps them.
   */
  meta: Record<string, unknown>;
  models: RecordModels;
  options: RecordOptions;
}

/** How inputs are read and images fetched/decoded. */
export interface InputOptions {
  /**
   * Column (or JSON field) holding the image reference, matched case-insensitively; a file without
   * it is refused. Unset: the first recognised name the file has (core/defaults.ts).
   */
  imageColumn?: string;
  /** Column holding the text, as imageColumn. */
  textColumn?: string;
  /** Pairs per shard for manifests (JSONL/CSV/TSV) and image folders. */
  shardSize: number;
}

export interface FetchLimits {
  /** Refuse images larger than this many bytes (download or file). */
  maxBytes: number;
  /** Refuse images with more pixels than this (decompression bombs). */
  maxPixels: number;
  decodeTimeoutMs: number;
  fetchTimeoutMs: number;
  fetchRetries: number;
  /** Allow URLs that resolve to loopback/private/link-local addresses (tests, trusted intranets). */
  allowPrivateNetwork: boolean;
  /** Concurrent fetch+decode operations per batch. */
  concurrency: number;
}

/**
 * The clean dataset a run writes per shard beside its records: none ('jsonl': the records are
 * the output), WebDataset tars of the kept samples, or Parquet rows of the kept texts.
 */
export type DatasetFormat = 'jsonl' | 'webdataset' | 'parquet';

export interface OutputOptions {
  compression: 'none' | 'gzip';
  format: DatasetFormat;
}

/**
 * Which image references a run may read, decided once at entry and recorded with the run (a
 * queued run's workers apply the recorded value). At entry the run's own inputs are added: a local
 * input's folder to `localRoots`, an S3 input's bucket to `s3Buckets`. http(s) URLs are always
 * allowed, behind the private-address guard. Anything else is rejected as `blocked_source`.
 */
export interface SourcePolicy {
  /** Absolute local folders whose regular files (real paths, symlinks resolved) references may name. */
  localRoots: string[];
  /** S3 buckets whose objects references may name. */
  s3Buckets: string[];
}

/**
 * Where the runs a worker serves may read and write: the operator's limit, set when the worker
 * starts (`capfilt worker --read-root/--write-root`), not the run's. A run record is anyone's
 * who can write to Redis and names its own input, output and source roots; a run outside these
 * limits is refused. Each entry is a local folder, `s3://bucket[/prefix]` or an http(s) prefix.
 */
export interface WorkerLimits {
  /** Where a served run's input, human inputs and source roots and buckets must lie; unset: anywhere. */
  readRoots?: string[];
  /** Where a served run's output must lie; unset: `readRoots` (and anywhere when both are unset). */
  writeRoots?: string[];
  /**
   * With `readRoots`: whether a served run may let its image URLs reach loopback/private/link-local
   * addresses (its `--allow-private-network`); without `readRoots` the worker serves any run.
   * @defaultValue false
   */
  privateNetwork?: boolean;
}

/** Every option of a run, parsed once by the CLI, stored with a queued run, written into records. */
export interface RunOptions {
  decoding: DecodingOptions;
  filter: FilterOptions;
  input: InputOptions;
  limits: FetchLimits;
  output: OutputOptions;
  sources: SourcePolicy;
  /** Samples per model call. */
  batchSize: number;
}

/** Per-stage wall time in milliseconds, summed over the shard. Stages overlap (prefetch). */
export interface StageTimings {
  read: number;
  decode: number;
  caption: number;
  filter: number;
  write: number;
}

/** Contents of part-<shard>.stats.json: the completion marker, written last. */
export interface ShardStats {
  shard: ShardRef;
  records: number;
  status: { ok: number; rejected: number };
  reasons: Partial<Record<RejectReason, number>>;
  /** Capped counter of distinct error messages (img2dataset's status_dict). */
  errors: Record<string, number>;
  kept: {
    /** Records with at least one kept text. */
    records: number;
    web: number;
    synthetic: number;
    human: number;
    texts: number;
  };
  /** 10 bins over [0, 1] of ITM match probability. */
  itmHistogram: { web: number[]; synthetic: number[] };
  timingsMs: StageTimings;
  wallMs: number;
  samplesPerSecond: number;
  models: RecordModels;
  options: RecordOptions;
  startedAt: string;
  finishedAt: string;
  /**
   * The fingerprint of the shard's input when it was read (`pipeline/fingerprint.ts`): a rerun
   * redoes the shard when its input's fingerprint differs. Absent in outputs of older releases.
   */
  fingerprint?: string;
  /** The clean dataset file written beside the records, when the run writes one. */
  dataset?: { format: Exclude<DatasetFormat, 'jsonl'>; file: string; samples: number };
}
