import { type Command, Option } from 'commander';
import { PRECISIONS, type Precision } from '../../model/manifest.js';

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
    );
}

export interface PrecisionOptions {
  precision: Precision;
  quantizeDecoder: boolean;
}
