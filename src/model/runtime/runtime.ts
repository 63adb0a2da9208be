import { join } from 'node:path';
import protobuf from 'onnx-proto';
import * as ort from 'onnxruntime-node';
import { DEFAULT_ENGINE } from '../../core/defaults.js';
import { ModelError } from '../../core/errors.js';
import type { ModelManifest } from '../manifest.js';

// onnxruntime's own logger prints a red "Failed to load library …providers_shared.so" for every
// CUDA attempt on a host without the provider; capfilt reports that itself (one warning for
// --device auto, a ModelError for --device cuda), so only fatal lines stay. Read once, when the
// first session is created.
ort.env.logLevel = 'fatal';

/** Where and how onnxruntime runs a model. */
export interface RuntimeOptions {
  /**
   * cpu; cuda or cuda:N (fails clearly when CUDA is unavailable); webgpu (onnxruntime's WebGPU
   * provider over Vulkan; fails clearly without an adapter); auto = CUDA, else CPU with a warning.
   */
  device?: 'cpu' | 'cuda' | 'webgpu' | 'auto' | `cuda:${number}`;
  /** Threads inside one operator; 0 lets onnxruntime pick (one per core). */
  intraOpThreads?: number;
  /** Called when `auto` falls back to the CPU (default: one `capfilt:` line on stderr per process). */
  onWarning?: (message: string) => void;
}

export interface ResolvedDevice {
  kind: 'cpu' | 'cuda' | 'webgpu';
  deviceId: number;
}

/** Bytes handed to onnxruntime and back (feeds, outputs and preallocated outputs), since creation. */
export interface Traffic {
  bytesIn: number;
  bytesOut: number;
}

function executionProviders(device: ResolvedDevice): ort.InferenceSession.ExecutionProviderConfig[] {
  if (device.kind === 'cuda') return [{ name: 'cuda', deviceId: device.deviceId }];
  return [device.kind];
}

/** The session options capfilt opens every graph with (benchmarks open theirs the same way). */
export function sessionOptions(
  device: ResolvedDevice,
  opts: RuntimeOptions,
): ort.InferenceSession.SessionOptions {
  return {
    executionProviders: executionProviders(device),
    graphOptimizationLevel: 'all',
    intraOpNumThreads: opts.intraOpThreads ?? DEFAULT_ENGINE.intraOpThreads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    logSeverityLevel: 3,
  };
}

/** Why CUDA could not be used, once `auto` found out: later models go straight to the CPU. */
let cudaUnavailable: string | null = null;
let fallbackReported = false;

/** The fallback is said once per process by default (a run loads two models), always to a caller's hook. */
function reportFallback(opts: RuntimeOptions, why: string): void {
  const message = `--device auto: CUDA unavailable (${why}); running on the CPU`;
  if (opts.onWarning) opts.onWarning(message);
  else if (!fallbackReported) process.stderr.write(`capfilt: ${message}\n`);
  fallbackReported ||= !opts.onWarning;
}

function parseDevice(device: RuntimeOptions['device']): ResolvedDevice | 'auto' {
  if (!device || device === 'cpu') return { kind: 'cpu', deviceId: 0 };
  if (device === 'auto') return 'auto';
  if (device === 'webgpu') return { kind: 'webgpu', deviceId: 0 };
  const m = /^cuda(?::(\d+))?$/.exec(device);
  if (!m) throw new ModelError(`unknown device ${device}: use cpu, cuda, cuda:N, webgpu or auto`);
  return { kind: 'cuda', deviceId: m[1] ? Number(m[1]) : 0 };
}

/** A one-node float32 graph: opening it proves the execution provider loads and finds its device. */
function probeModel(): Uint8Array {
  const { onnx } = protobuf;
  const info = (name: string) =>
    onnx.ValueInfoProto.create({
      name,
      type: { tensorType: { elemType: 1, shape: { dim: [{ dimValue: 1 }] } } },
    });
  const graph = onnx.GraphProto.create({
    name: 'probe',
    node: [onnx.NodeProto.create({ opType: 'Identity', input: ['x'], output: ['y'] })],
    input: [info('x')],
    output: [info('y')],
  });
  return onnx.ModelProto.encode(
    onnx.ModelProto.create({ irVersion: 8, opsetImport: [{ domain: '', version: 17 }], graph }),
  ).finish();
}

/** What to do without the device: the message says what is missing and how to get it. */
function unavailable(device: ResolvedDevice, err: unknown): ModelError {
  const why = err instanceof Error ? err.message.split('\n')[0] : String(err);
  if (device.kind === 'webgpu') {
    return new ModelError(
      `cannot run on WebGPU: ${why}. onnxruntime-node's WebGPU provider runs on Vulkan and found no ` +
        'usable adapter: install a Vulkan driver (NVIDIA: the driver with its Vulkan ICD, e.g. ' +
        'libnvidia-gl; Debian 12: apt-get install -t bookworm-backports mesa-vulkan-drivers libvulkan1 — ' +
        "Mesa >= 24, bookworm's own Mesa 22 is refused; see README) or use --device cpu",
      { cause: err },
    );
  }
  return new ModelError(
    `cannot run on CUDA device ${device.deviceId}: ${why}. onnxruntime-node's CUDA provider ` +
      '(libonnxruntime_providers_cuda.so) comes from its install script run with ' +
      'ONNXRUNTIME_NODE_INSTALL=cuda12 (see README, GPU hosts), and needs CUDA 12 and cuDNN 9 on ' +
      'the host; use --device cpu or --device auto',
    { cause: err },
  );
}

/**
 * The device a run uses, checked by opening a one-node graph on it, so that a missing provider or
 * adapter fails at load with a clear message. onnxruntime-node does not fall back from CUDA by
 * itself (['cuda','cpu'] throws when the CUDA libraries are missing), so capfilt decides here.
 */
export async function resolveDevice(opts: RuntimeOptions = {}): Promise<ResolvedDevice> {
  const wanted = parseDevice(opts.device);
  if (wanted !== 'auto' && wanted.kind === 'cpu') return wanted;
  const device = wanted === 'auto' ? { kind: 'cuda' as const, deviceId: 0 } : wanted;
  const cpu = { kind: 'cpu' as const, deviceId: 0 };
  if (wanted === 'auto' && cudaUnavailable !== null) {
    reportFallback(opts, cudaUnavailable);
    return cpu;
  }
  try {
    const probe = await ort.InferenceSession.create(probeModel(), sessionOptions(device, opts));
    await probe.release();
    return device;
  } catch (err) {
    if (wanted !== 'auto') throw unavailable(device, err);
    cudaUnavailable = (err instanceof Error ? err.message : String(err)).split('\n')[0];
    reportFallback(opts, cudaUnavailable);
    return cpu;
  }
}

/** The graph files a device runs: the CPU, CUDA or WebGPU set. */
export function graphSet(manifest: ModelManifest, device: ResolvedDevice): Record<string, string> {
  if (device.kind === 'cuda') return manifest.cuda.graphs;
  if (device.kind === 'webgpu') return manifest.webgpu.graphs;
  return manifest.graphs;
}

/** A session whose runs count the bytes that cross into onnxruntime and back. */
export class CountedSession {
  constructor(
    private readonly session: ort.InferenceSession,
    private readonly traffic: Traffic,
  ) {}

  async run(
    feeds: Record<string, ort.Tensor>,
    fetches?: Record<string, ort.Tensor>,
  ): Promise<Record<string, ort.Tensor>> {
    this.traffic.bytesIn += hostBytes(feeds);
    const out = fetches ? await this.session.run(feeds, fetches) : await this.session.run(feeds);
    this.traffic.bytesOut += hostBytes(out);
    return out;
  }

  /** The element type a graph declares for input `name`. */
  inputType(name: string): ort.Tensor.Type {
    const meta = this.session.inputMetadata.find((m) => m.name === name);
    if (!meta?.isTensor) throw new ModelError(`graph has no tensor input ${name}`);
    return meta.type;
  }

  release(): Promise<void> {
    return this.session.release();
  }
}

function hostBytes(tensors: Record<string, ort.Tensor>): number {
  let n = 0;
  for (const t of Object.values(tensors)) {
    if (t.location === 'cpu') n += (t.data as ArrayBufferView).byteLength;
  }
  return n;
}

/**
 * The sessions of one converted model on one device, each opened the first time it is asked for:
 * an engine that decodes with the whole-graph captioner never loads the per-step graphs, and the
 * other way round.
 */
export class ModelSessions {
  private readonly open = new Map<string, Promise<CountedSession>>();
  private readonly files: Record<string, string>;
  readonly traffic: Traffic = { bytesIn: 0, bytesOut: 0 };

  constructor(
    private readonly dir: string,
    private readonly manifest: ModelManifest,
    readonly device: ResolvedDevice,
    private readonly opts: RuntimeOptions,
  ) {
    this.files = graphSet(manifest, device);
  }

  has(role: string): boolean {
    return role in this.files;
  }

  get(role: string): Promise<CountedSession> {
    let session = this.open.get(role);
    if (!session) {
      const file = this.files[role];
      if (!file) {
        throw new ModelError(`${this.dir}: manifest has no ${role} graph (is this a ${this.manifest.kind}?)`);
      }
      const options = sessionOptions(this.device, this.opts);
      session = ort.InferenceSession.create(join(this.dir, file), options).then(
        (s) => new CountedSession(s, this.traffic),
      );
      // A failed open is not cached: the next call tries again.
      session.catch(() => this.open.delete(role));
      this.open.set(role, session);
    }
    return session;
  }

  async release(): Promise<void> {
    const sessions = await Promise.allSettled(this.open.values());
    this.open.clear();
    await Promise.all(sessions.map((s) => (s.status === 'fulfilled' ? s.value.release() : undefined)));
  }
}

export function float32(data: Float32Array, dims: number[]): ort.Tensor {
  return new ort.Tensor('float32', data, dims);
}

export function int64(values: ArrayLike<number>, dims: number[]): ort.Tensor {
  const out = new BigInt64Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = BigInt(values[i]);
  return new ort.Tensor('int64', out, dims);
}
