import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Command } from 'commander';
import { Option } from 'commander';
import { pullModel } from '../model/convert/hub.js';
import { importModel } from '../model/convert/import.js';
import { writeRandomCheckpoint } from '../model/convert/random.js';
import { readManifest } from '../model/manifest.js';
import { intArg } from './engine-options.js';

const log = (message: string) => process.stderr.write(`capfilt: ${message}\n`);

/** `capfilt models import|pull|random|inspect`: getting BLIP checkpoints into capfilt's ONNX form. */
export function registerModels(program: Command): void {
  const models = program.command('models').description('convert, download and inspect BLIP models');

  models
    .command('import')
    .description('convert a Hugging Face BLIP checkpoint directory into ONNX graphs + manifest.json')
    .argument('<hf-dir>', 'directory with config.json, model.safetensors or pytorch_model.bin, vocab.txt')
    .requiredOption('--out <dir>', 'output directory')
    .addOption(new Option('--precision <p>', 'weight precision').choices(['fp32', 'fp16']).default('fp32'))
    .option('--name <id>', 'name recorded in the manifest (e.g. the hub repo id)')
    .action(async (hfDir: string, o: { out: string; precision: 'fp32' | 'fp16'; name?: string }) => {
      const manifest = await importModel(hfDir, o.out, {
        precision: o.precision,
        name: o.name,
        onProgress: log,
      });
      process.stdout.write(
        `${JSON.stringify({ out: o.out, kind: manifest.kind, graphs: manifest.graphs })}\n`,
      );
    });

  models
    .command('pull')
    .description('download a BLIP repo from the Hugging Face hub (HF_ENDPOINT, HF_TOKEN) and import it')
    .argument('<repo-id>', 'e.g. Salesforce/blip-image-captioning-large')
    .requiredOption('--out <dir>', 'converted model directory')
    .option('--revision <rev>', 'branch, tag, commit or refs/pr/N', 'main')
    .option('--download-dir <dir>', 'where the raw checkpoint is kept (default <out>.hf)')
    .addOption(new Option('--precision <p>', 'weight precision').choices(['fp32', 'fp16']).default('fp32'))
    .action(
      async (
        repo: string,
        o: { out: string; revision: string; downloadDir?: string; precision: 'fp32' | 'fp16' },
      ) => {
        const raw = o.downloadDir ?? `${o.out}.hf`;
        let lastLogged = 0;
        const pulled = await pullModel({
          repo,
          revision: o.revision,
          out: raw,
          onProgress: (p) => {
            if (Date.now() - lastLogged < 2000) return;
            lastLogged = Date.now();
            log(
              `${p.file}: ${(p.received / 1e6).toFixed(1)}${p.total ? ` / ${(p.total / 1e6).toFixed(1)}` : ''} MB`,
            );
          },
        });
        const manifest = await importModel(raw, o.out, {
          precision: o.precision,
          name: `${repo}@${o.revision}`,
          onProgress: log,
        });
        process.stdout.write(
          `${JSON.stringify({ out: o.out, kind: manifest.kind, weights: pulled.weights, commit: pulled.commit })}\n`,
        );
      },
    );

  models
    .command('random')
    .description('write a randomly initialised BLIP checkpoint in the Hugging Face layout (for benchmarks)')
    .addOption(
      new Option('--preset <p>', 'model size').choices(['tiny', 'base', 'large']).makeOptionMandatory(),
    )
    .addOption(new Option('--kind <k>', 'which model').choices(['captioner', 'filter']).makeOptionMandatory())
    .requiredOption('--out <dir>', 'output directory')
    .option('--seed <n>', 'weights seed', intArg, 0)
    .action(
      async (o: {
        preset: 'tiny' | 'base' | 'large';
        kind: 'captioner' | 'filter';
        out: string;
        seed: number;
      }) => {
        const result = await writeRandomCheckpoint({
          preset: o.preset,
          kind: o.kind,
          out: o.out,
          seed: o.seed,
        });
        process.stdout.write(`${JSON.stringify({ out: result.out, params: result.params })}\n`);
      },
    );

  models
    .command('inspect')
    .description('describe a converted model directory')
    .argument('<dir>', 'converted model directory')
    .action(async (dir: string) => {
      const m = await readManifest(dir);
      const files = await Promise.all(
        Object.values(m.graphs).map(async (f) => {
          const bytes = await stat(join(dir, `${f}.data`)).then(
            (s) => s.size,
            () => 0,
          );
          return [f, bytes] as const;
        }),
      );
      const summary = {
        kind: m.kind,
        architecture: m.architecture,
        source: m.source,
        precision: m.precision,
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
