import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Captioner } from '../../src/captioner/captioner.js';
import type { CaptionEngine, FilterEngine } from '../../src/pipeline/engines.js';

/** The repository's examples folder (its images are what test manifests name). */
export const EXAMPLES = join(import.meta.dirname, '../../examples');

/**
 * JSONL lines of `n` pairs keyed pair-0…pair-<n-1>, cycling through the examples' images (by
 * absolute path: a run reading them needs `--allow-root EXAMPLES`) and captions.
 */
export function examplePairLines(n: number): string[] {
  const rows = readFileSync(join(EXAMPLES, 'jsonl/captions.jsonl'), 'utf8').trim().split('\n');
  return Array.from({ length: n }, (_, i) => {
    const row = JSON.parse(rows[i % rows.length]) as { image: string; caption: string };
    return JSON.stringify({
      key: `pair-${i}`,
      image: join(EXAMPLES, 'jsonl', row.image),
      caption: row.caption,
    });
  });
}

/** The engines, with `onCaption` told the images of every captioner call before it runs. */
export function watchedCaptioner(
  engines: { captioner: Captioner; filter: FilterEngine },
  onCaption: (images: number) => void,
): { captioner: CaptionEngine; filter: FilterEngine } {
  const { captioner } = engines;
  return {
    captioner: {
      modelId: captioner.modelId,
      manifest: captioner.manifest,
      pixels: captioner.pixels.bind(captioner),
      caption: async (...args: Parameters<Captioner['caption']>) => {
        onCaption(args[0].length);
        return captioner.caption(...args);
      },
    },
    filter: engines.filter,
  };
}
