import { describe, expect, it } from 'vitest';
import { ModelError } from '../../../src/core/errors.js';
import type { ModelManifest } from '../../../src/model/manifest.js';
import { checkRunnable, cpuFlags, int8Unsupported } from '../../../src/model/runtime/cpu.js';

const CPUINFO = (flags: string) =>
  `processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: ${flags}\nbugs\t\t: none\n`;

describe('int8 support by CPU', () => {
  it('reads the flags line of /proc/cpuinfo', () => {
    expect([...cpuFlags(CPUINFO('fpu avx2 avx512_vnni'))]).toEqual(['fpu', 'avx2', 'avx512_vnni']);
    expect(cpuFlags('').size).toBe(0);
  });

  it('accepts x86 with AVX-512 VNNI or AVX-VNNI', () => {
    expect(int8Unsupported(cpuFlags(CPUINFO('avx2 avx512f avx512_vnni')), 'x64')).toBeNull();
    expect(int8Unsupported(cpuFlags(CPUINFO('avx2 avx_vnni')), 'x64')).toBeNull();
  });

  it('refuses x86 without VNNI, saying why', () => {
    expect(int8Unsupported(cpuFlags(CPUINFO('avx2 fma avx512f avx512bw')), 'x64')).toMatch(
      /no VNNI.*saturate/,
    );
  });

  it('does not judge other architectures', () => {
    expect(int8Unsupported(new Set(), 'arm64')).toBeNull();
  });

  it('refuses an int8 model on a GPU device; fp32 models pass whatever the device', () => {
    const int8 = { precision: 'int8' } as ModelManifest;
    expect(() => checkRunnable('/m', int8, 'cuda')).toThrow(ModelError);
    expect(() => checkRunnable('/m', int8, 'cuda')).toThrow(/CPU only/);
    expect(() => checkRunnable('/m', { precision: 'fp32' } as ModelManifest, 'cuda')).not.toThrow();
  });
});
