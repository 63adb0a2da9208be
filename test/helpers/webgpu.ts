import { execFile, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';

/**
 * WebGPU work runs in child processes: Dawn prints warnings from native code that vitest cannot
 * silence, and a broken driver can abort a process. The child (webgpu-child.ts) prints one JSON
 * line; its stderr may hold only Dawn's known adapter-limit notice.
 *
 * The WebGPU tests need a Vulkan device (lavapipe: `.ci/run` installs Mesa from bookworm-backports).
 * Without one they fail, saying what to install, unless `CAPFILT_SKIP_WEBGPU=1` is set: then they
 * are skipped with the reason printed. CI never sets it.
 */
export const SKIP_ENV = 'CAPFILT_SKIP_WEBGPU';

const CHILD = join(import.meta.dirname, 'webgpu-child.ts');

/** Dawn's notice, printed once per process on the first device: harmless. */
const KNOWN_STDERR = /^Warning: maxDynamic(Uniform|Storage)BuffersPerPipelineLayout artificially reduced/;

export function unexpectedStderr(stderr: string): string[] {
  return stderr.split('\n').filter((line) => line.trim() !== '' && !KNOWN_STDERR.test(line));
}

export interface WebGpuProbe {
  available: boolean;
  reason: string;
}

/** Does onnxruntime find a WebGPU adapter on this machine? (a one-node graph, in a child) */
export function probeWebGpu(): WebGpuProbe {
  const r = spawnSync(process.execPath, ['--import', 'tsx', CHILD, 'probe'], { encoding: 'utf8' });
  if (r.status === 0) return { available: true, reason: '' };
  const why = `${r.stdout}\n${r.stderr}`.match(/Failed to get a WebGPU adapter[^\n]*/)?.[0];
  return { available: false, reason: why ?? `probe exited ${r.status}: ${r.stderr.slice(0, 300)}` };
}

export const INSTALL_HINT =
  'no WebGPU adapter: install a Vulkan driver (Debian 12: add bookworm-backports, then ' +
  'apt-get install -t bookworm-backports mesa-vulkan-drivers libvulkan1; .ci/run does it) ' +
  `or set ${SKIP_ENV}=1 to skip the WebGPU tests on this machine`;

/** Runs scenario `name` of webgpu-child.ts with a JSON argument; returns its JSON result. */
export async function inWebGpuChild<T>(
  name: string,
  arg: unknown,
  env: NodeJS.ProcessEnv = {},
): Promise<{ result: T; stderr: string[] }> {
  const { stdout, stderr } = await promisify(execFile)(
    process.execPath,
    ['--import', 'tsx', CHILD, name, JSON.stringify(arg)],
    { env: { ...process.env, ...env }, maxBuffer: 256 << 20 },
  ).catch((err: { stdout?: string; stderr?: string; message: string }) => {
    throw new Error(`WebGPU child '${name}' failed: ${err.message}\n${err.stderr ?? ''}`.slice(0, 4000));
  });
  return {
    result: JSON.parse(stdout.trim().split('\n').pop() as string) as T,
    stderr: unexpectedStderr(stderr),
  };
}
