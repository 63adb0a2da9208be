import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { imageSpecFromPreprocessorConfig } from '../../src/model/image-spec.js';

const FIXTURE = join(import.meta.dirname, '../fixtures/blip-tiny');

describe('imageSpecFromPreprocessorConfig', () => {
  it('reads the fixture config', async () => {
    const spec = imageSpecFromPreprocessorConfig(
      JSON.parse(await readFile(join(FIXTURE, 'captioner/preprocessor_config.json'), 'utf8')),
    );
    expect(spec).toEqual({
      height: 64,
      width: 64,
      mean: [0.48145466, 0.4578275, 0.40821073],
      std: [0.26862954, 0.26130258, 0.27577711],
      rescaleFactor: 0.00392156862745098,
      resample: 'bicubic',
    });
  });

  it('applies BlipImageProcessor defaults and the hub integer size', () => {
    const s = imageSpecFromPreprocessorConfig({ size: 384, do_normalize: true, do_resize: true });
    expect(s.height).toBe(384);
    expect(s.width).toBe(384);
    expect(s.resample).toBe('bicubic');
    expect(s.rescaleFactor).toBeCloseTo(1 / 255, 15);
    expect(imageSpecFromPreprocessorConfig({}, 224).width).toBe(224);
    expect(imageSpecFromPreprocessorConfig({ resample: 2 }).resample).toBe('bilinear');
  });

  it('rejects what it cannot reproduce', () => {
    expect(() => imageSpecFromPreprocessorConfig({ resample: 1 })).toThrow(/resample/);
    expect(() => imageSpecFromPreprocessorConfig({ do_resize: false })).toThrow(/do_resize/);
    expect(() => imageSpecFromPreprocessorConfig({ size: { shortest_edge: 384 } })).toThrow(/size/);
  });
});
