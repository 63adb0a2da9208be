import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { type Command, Option } from 'commander';
import { UsageError } from '../core/errors.js';
import { isCurrentModelDir } from '../model/manifest.js';
import { addAlias } from './flags.js';

/** Where `npm run demo` keeps the converted tiny models. */
const DEMO_MODELS = '.cache/models';

export interface DemoCommandOptions {
  examples: 'jsonl' | 'webdataset';
  output: string;
}

/** The tiny fixture checkpoints, converted once into .cache/models. */
async function demoModels(root: string): Promise<{ captioner: string; filter: string }> {
  const { importModel } = await import('../model/convert/import.js');
  const dirs = { captioner: '', filter: '' };
  for (const kind of ['captioner', 'filter'] as const) {
    const dir = resolve(DEMO_MODELS, `blip-tiny-${kind}`);
    if (!isCurrentModelDir(dir)) {
      process.stderr.write(`capfilt: converting test/fixtures/blip-tiny/${kind} into ${dir}\n`);
      await importModel(join(root, 'test/fixtures/blip-tiny', kind), dir, { name: `blip-tiny-${kind}` });
    }
    dirs[kind] = dir;
  }
  return dirs;
}

/** `capfilt demo`: `capfilt run` on the bundled examples with the tiny test models. */
export function registerDemo(program: Command): void {
  const cmd = program
    .command('demo')
    .description('run capfilt on the bundled examples with the tiny test models (local mode)')
    .addOption(
      new Option('--examples <format>', 'which copy of the examples')
        .choices(['jsonl', 'webdataset'])
        .default('jsonl'),
    )
    .option('-o, --output <dir>', 'output folder', '.cache/demo-output');
  addAlias(cmd, '--format <format>', 'examples');
  cmd.action(async (o: DemoCommandOptions) => {
    const root = process.cwd();
    const input =
      o.examples === 'webdataset'
        ? join(root, 'examples/webdataset')
        : join(root, 'examples/jsonl/captions.jsonl');
    if (!existsSync(input)) throw new UsageError(`${input} not found; run the demo from the repository root`);
    const models = await demoModels(root);
    process.stderr.write('capfilt: the tiny models are random: their captions are gibberish by design\n');
    await program.parseAsync(
      [
        'run',
        ...['--input', input, '--output', resolve(o.output)],
        ...['--captioner', models.captioner, '--filter', models.filter],
        ...['--shard-size', '8', '--num-captions', '2', '--overwrite'],
        ...['--human', join(root, 'examples/human/annotations.jsonl')],
        // The manifest names its images as ../images/…: outside its own folder, so allowed explicitly.
        ...['--allow-root', join(root, 'examples')],
      ],
      { from: 'user' },
    );
    process.stdout.write(
      `capfilt: demo output in ${resolve(o.output)} (part-*.jsonl, part-*.stats.json, _summary.json)\n`,
    );
  });
}
