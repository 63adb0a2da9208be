#!/usr/bin/env node
import { CapfiltError } from '../core/errors.js';
import { buildProgram } from './program.js';

// The AWS SDK warns on every run that releases after January 2027 will need Node 22; capfilt's
// lockfile pins a release that supports Node 20, so the warning is noise for our users.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

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
