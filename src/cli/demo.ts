import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Command, Option } from 'commander';
import { UsageError } from '../core/errors.js';
import { isCurrentModelDir } from '../model/manifest.js';
import { addAlias } from './flags.js';

/**
 * The capfilt checkout this command runs from (src/cli or dist/cli, two levels down): the demo's
 * examples and models are found from here, so `capfilt demo` works from any folder once linked.
 */
const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** Where the demo keeps the converted tiny models. */
const DEMO_MODELS = join(ROOT, '.cache/models');

export interface DemoCommandOptions {
  examples: 'jsonl' | 'webdataset';
  output: string;
}

/** The tiny fixture checkpoints, converted once into .cache/models. */
async function demoModels(): Promise<{ captioner: string; filter: string }> {
  const { importModel } = await import('../model/convert/import.js');
  const dirs = { captioner: '', filter: '' };
  for (const kind of ['captioner', 'filter'] as const) {
    const dir = join(DEMO_MODELS, `blip-tiny-${kind}`);
    if (!isCurrentModelDir(dir)) {
      process.stderr.write(`capfilt: converting test/fixtures/blip-tiny/${kind} into ${dir}\n`);
      await importModel(join(ROOT, 'test/fixtures/blip-tiny', kind), dir, { name: `blip-tiny-${kind}` });
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
    .option('-o, --output <dir>', 'output folder', join(ROOT, '.cache/demo-output'));
  addAlias(cmd, '--format <format>', 'examples');
  cmd.action(async (o: DemoCommandOptions) => {
    const input =
      o.examples === 'webdataset'
        ? join(ROOT, 'examples/webdataset')
        : join(ROOT, 'examples/jsonl/captions.jsonl');
    if (!existsSync(input)) {
      throw new UsageError(`${input} not found: the demo needs a clone of the capfilt repository`);
    }
    const models = await demoModels();
    process.stderr.write('capfilt: the tiny models are random: their captions are gibberish by design\n');
    await program.parseAsync(
      [
        'run',
        ...['--input', input, '--output', resolve(o.output)],
        ...['--captioner', models.captioner, '--filter', models.filter],
        ...['--shard-size', '8', '--num-captions', '2', '--overwrite'],
        ...['--human', join(ROOT, 'examples/human/annotations.jsonl')],
        // The manifest names its images as ../images/…: outside its own folder, so allowed explicitly.
        ...['--allow-root', join(ROOT, 'examples')],
      ],
      { from: 'user' },
    );
    process.stdout.write(
      `capfilt: demo output in ${resolve(o.output)} (part-*.jsonl, part-*.stats.json, _summary.json)\n`,
    );
  });
}
