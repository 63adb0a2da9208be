import { type Command, Option } from 'commander';
import { writeRandomCheckpoint } from '../../model/convert/random.js';
import { addAlias, intArg } from '../flags.js';

export interface RandomCommandOptions {
  preset: 'tiny' | 'base' | 'large';
  kind: 'captioner' | 'filter';
  output: string;
  weightsSeed: number;
}

/** `capfilt models random`: a random checkpoint of the real architecture, for benchmarks. */
export function registerRandom(models: Command): void {
  const cmd = models
    .command('random')
    .description('write a randomly initialised BLIP checkpoint in the Hugging Face layout (for benchmarks)')
    .addOption(
      new Option('--preset <p>', 'model size').choices(['tiny', 'base', 'large']).makeOptionMandatory(),
    )
    .addOption(new Option('--kind <k>', 'which model').choices(['captioner', 'filter']).makeOptionMandatory())
    .requiredOption('-o, --output <dir>', 'output directory')
    .option('--weights-seed <n>', 'seed of the random weights', intArg, 0);
  addAlias(cmd, '--out <dir>', 'output');
  // `--seed` is the caption sampling seed everywhere else.
  addAlias(cmd, '--seed <n>', 'weightsSeed', intArg);
  cmd.action(async (o: RandomCommandOptions) => {
    const result = await writeRandomCheckpoint({
      preset: o.preset,
      kind: o.kind,
      out: o.output,
      seed: o.weightsSeed,
    });
    process.stdout.write(`${JSON.stringify({ out: result.out, params: result.params })}\n`);
  });
}
