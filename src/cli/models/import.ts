import { type Command, Option } from 'commander';
import { importModel } from '../../model/convert/import.js';
import { addAlias } from '../flags.js';
import { log, type Precision } from './log.js';

export interface ImportCommandOptions {
  output: string;
  precision: Precision;
  name?: string;
}

/** `capfilt models import <hf-dir>`: a Hugging Face BLIP checkpoint to ONNX graphs + manifest.json. */
export function registerImport(models: Command): void {
  const cmd = models
    .command('import')
    .description('convert a Hugging Face BLIP checkpoint directory into ONNX graphs + manifest.json')
    .argument('<hf-dir>', 'directory with config.json, model.safetensors or pytorch_model.bin, vocab.txt')
    .requiredOption('-o, --output <dir>', 'output directory')
    .addOption(new Option('--precision <p>', 'weight precision').choices(['fp32', 'fp16']).default('fp32'))
    .option('--name <id>', 'name recorded in the manifest (e.g. the hub repo id)');
  addAlias(cmd, '--out <dir>', 'output');
  cmd.action(async (hfDir: string, o: ImportCommandOptions) => {
    const manifest = await importModel(hfDir, o.output, {
      precision: o.precision,
      name: o.name,
      onProgress: log,
    });
    process.stdout.write(
      `${JSON.stringify({ out: o.output, kind: manifest.kind, graphs: manifest.graphs })}\n`,
    );
  });
}
