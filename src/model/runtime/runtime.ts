import { join } from 'node:path';
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
  /** cpu; cuda or cuda:N (fails clearly when CUDA is unavailable); auto = CUDA, else CPU with a warning. */
  device?: 'cpu' | 'cuda' | 'auto' | `cuda:${number}`;
  /** Threads inside one operator; 0 lets onnxruntime pick (one per core). */
  intraOpThreads?: number;
  /** Called when `auto` falls back to the CPU (default: one `capfilt:` line on stderr per process). */
  onWarning?: (message: string) => void;
}

export interface ResolvedDevice {
  kind: 'cpu' | 'cuda';
  deviceId: number;
}

function sessionOptions(device: ResolvedDevice, opts: RuntimeOptions): ort.InferenceSession.SessionOptions {
  return {
    executionProviders: device.kind === 'cuda' ? [{ name: 'cuda', deviceId: device.deviceId }] : ['cpu'],
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
  const m = /^cuda(?::(\d+))?$/.exec(device);
  if (!m) throw new ModelError(`unknown device ${device}: use cpu, cuda, cuda:N or auto`);
  return { kind: 'cuda', deviceId: m[1] ? Number(m[1]) : 0 };
}

/**
 * Open every graph of a converted model. onnxruntime-node does not fall back from CUDA by itself
 * (['cuda','cpu'] throws when the CUDA libraries are missing), so capfilt decides here.
 */
export async function openSessions(
  dir: string,
  manifest: ModelManifest,
  roles: string[],
  opts: RuntimeOptions = {},
): Promise<{ sessions: Record<string, ort.InferenceSession>; device: ResolvedDevice }> {
  const wanted = parseDevice(opts.device);
  const open = async (device: ResolvedDevice) => {
    const sessions: Record<string, ort.InferenceSession> = {};
    for (const role of roles) {
      const file = manifest.graphs[role];
      if (!file) throw new ModelError(`${dir}: manifest has no ${role} graph (is this a ${manifest.kind}?)`);
      sessions[role] = await ort.InferenceSession.create(join(dir, file), sessionOptions(device, opts));
    }
    return sessions;
  };
  if (wanted !== 'auto' && wanted.kind === 'cpu') return { sessions: await open(wanted), device: wanted };
  const cuda = wanted === 'auto' ? { kind: 'cuda' as const, deviceId: 0 } : wanted;
  const cpu = { kind: 'cpu' as const, deviceId: 0 };
  if (wanted === 'auto' && cudaUnavailable !== null) {
    reportFallback(opts, cudaUnavailable);
    return { sessions: await open(cpu), device: cpu };
  }
  try {
    return { sessions: await open(cuda), device: cuda };
  } catch (err) {
    const why = (err instanceof Error ? err.message : String(err)).split('\n')[0];
    if (wanted !== 'auto') {
      throw new ModelError(
        `cannot run on CUDA device ${cuda.deviceId}: ${why}. onnxruntime-node's CUDA provider ` +
          '(libonnxruntime_providers_cuda.so) comes from its install script run with ' +
          'ONNXRUNTIME_NODE_INSTALL=cuda12 (see README, GPU hosts), and needs CUDA 12 and cuDNN 9 on ' +
          'the host; use --device cpu or --device auto',
        { cause: err },
      );
    }
    cudaUnavailable = why;
    reportFallback(opts, why);
    return { sessions: await open(cpu), device: cpu };
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

export async function releaseAll(sessions: Record<string, ort.InferenceSession>): Promise<void> {
  await Promise.all(Object.values(sessions).map((s) => s.release()));
}
