import { readFileSync } from 'node:fs';
import { ModelError } from '../../core/errors.js';
import type { ModelManifest } from '../manifest.js';

/** The flags of /proc/cpuinfo's first processor ('' where there is no such file). */
export function cpuFlags(cpuinfo?: string): Set<string> {
  let text = cpuinfo;
  if (text === undefined) {
    try {
      text = readFileSync('/proc/cpuinfo', 'utf8');
    } catch {
      text = '';
    }
  }
  const line = /^flags\s*:(.*)$/m.exec(text)?.[1] ?? '';
  return new Set(line.trim().split(/\s+/).filter(Boolean));
}

/**
 * Why this machine cannot run int8 graphs correctly, or null when it can. capfilt's int8 weights
 * use the full s8 range; onnxruntime multiplies them with u8 activations. On x86 with VNNI
 * (avx512_vnni or avx_vnni) that product is summed straight into int32 and is exact; without
 * VNNI, MLAS pairs products into int16 first (vpmaddubsw), which saturates with full-range
 * weights and gives wrong scores. Other architectures were not measured and are not refused.
 */
export function int8Unsupported(flags: Set<string> = cpuFlags(), arch: string = process.arch): string | null {
  if (arch !== 'x64' && arch !== 'ia32') return null;
  if (flags.has('avx512_vnni') || flags.has('avx_vnni')) return null;
  return 'this CPU has no VNNI (avx512_vnni or avx_vnni), so onnxruntime would saturate its int8 sums and give wrong scores';
}

/** Refuses a model this machine and device cannot run as converted (checked once, at load). */
export function checkRunnable(dir: string, manifest: ModelManifest, device: string): void {
  if (manifest.precision !== 'int8') return;
  if (device !== 'cpu') {
    throw new ModelError(
      `${dir} is an int8 model, which runs on the CPU only: use --device cpu, or an fp32 model`,
    );
  }
  const why = int8Unsupported();
  if (why)
    throw new ModelError(
      `${dir} is an int8 model and ${why}; import the checkpoint without --precision int8`,
    );
}
