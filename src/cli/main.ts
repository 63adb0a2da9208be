#!/usr/bin/env node
import { Command } from 'commander';
import { CapfiltError } from '../core/errors.js';
import { CAPFILT_VERSION } from '../core/version.js';
import { registerDataset } from './dataset.js';
import { registerInference } from './infer.js';
import { registerModels } from './models.js';
import { registerQueue } from './queue.js';
import { registerRun } from './run.js';

// The AWS SDK warns on every run that releases after January 2027 will need Node 22; capfilt's
// lockfile pins a release that supports Node 20, so the warning is noise for our users.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

export function buildProgram(): Command {
  const program = new Command();
  program
    .name('capfilt')
    .description('Clean scraped image-text datasets with BLIP CapFilt (captioner + ITM filter)')
    .version(CAPFILT_VERSION);
  registerModels(program);
  registerInference(program);
  registerRun(program);
  registerDataset(program);
  registerQueue(program);
  return program;
}

async function main(argv: string[]): Promise<void> {
  try {
    await buildProgram().parseAsync(argv);
  } catch (err) {
    if (err instanceof CapfiltError) {
      process.stderr.write(`capfilt: ${err.message}\n`);
      process.exitCode = 2;
      return;
    }
    throw err;
  }
}

await main(process.argv);
