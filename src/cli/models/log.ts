import { type Command, Option } from 'commander';
import { PRECISIONS, type Precision } from '../../model/manifest.js';
import { floatArg } from '../flags.js';

export const log = (message: string) => process.stderr.write(`capfilt: ${message}\n`);

/** `--precision` and `--quantize-decoder`, shared by import and pull. */
export function addPrecisionOptions(cmd: Command): Command {
  return cmd
    .addOption(
      new Option(
        '--precision <p>',
        'weight precision: fp32; fp16 (half-size files); int8 (x86 CPUs with VNNI: faster, scores shift slightly; see README)',
      )
        .choices([...PRECISIONS])
        .default('fp32'),
    )
    .option(
      '--quantize-decoder',
      'with --precision int8: quantize the captioner decoder too (captions differ more)',
      false,
    )
    .option(
      '--recheck-margin <p>',
      'with --precision int8, for a filter: score again in fp32 every image with a text whose ITM probability lies within p of the threshold (keeps fp32 graphs too; see README)',
      floatArg,
    );
}

export interface PrecisionOptions {
  precision: Precision;
  quantizeDecoder: boolean;
  recheckMargin?: number;
}
