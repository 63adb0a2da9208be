import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Command } from 'commander';
import { readManifest } from '../../model/manifest.js';

/** `capfilt models inspect <dir>`: what a converted model directory holds. */
export function registerInspect(models: Command): void {
  models
    .command('inspect')
    .description('describe a converted model directory')
    .argument('<dir>', 'converted model directory')
    .action(async (dir: string) => {
      const m = await readManifest(dir);
      const weightBytes = async (file: string) =>
        [
          file,
          await stat(join(dir, `${file}.data`)).then(
            (s) => s.size,
            () => 0,
          ),
        ] as const;
      const files = await Promise.all(Object.values(m.graphs).map(weightBytes));
      const summary = {
        kind: m.kind,
        architecture: m.architecture,
        source: m.source,
        precision: m.precision,
        // The type each device's graph set computes in (the CPU set always float32).
        compute: { cpu: 'float32', cuda: m.cuda.computeType, webgpu: m.webgpu.computeType },
        vision: m.vision,
        text: m.text,
        image: m.image,
        special_ids: m.specialIds,
        graphs: Object.fromEntries(files.map(([f, bytes]) => [f, { weight_bytes: bytes }])),
        capfilt_version: m.capfiltVersion,
      };
      process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
    });
}
