import type { Command } from 'commander';
import { DEFAULT_WEBGPU_STEPS } from '../../core/defaults.js';
import { importModel } from '../../model/convert/import.js';
import { addAlias, positiveInt } from '../flags.js';
import { addPrecisionOptions, log, type PrecisionOptions } from './log.js';

export interface ImportCommandOptions extends PrecisionOptions {
  output: string;
  name?: string;
  webgpuSteps: number;
}

/** `capfilt models import <hf-dir>`: a Hugging Face BLIP checkpoint to ONNX graphs + manifest.json. */
export function registerImport(models: Command): void {
  const cmd = models
    .command('import')
    .description('convert a Hugging Face BLIP checkpoint directory into ONNX graphs + manifest.json')
    .argument('<hf-dir>', 'directory with config.json, model.safetensors or pytorch_model.bin, vocab.txt')
    .requiredOption('-o, --output <dir>', 'output directory')
    .option('--name <id>', 'name recorded in the manifest (e.g. the hub repo id)')
    .option(
      '--webgpu-steps <n>',
      'decoding steps of the WebGPU whole-graph captioner (longer decodes go step by step)',
      positiveInt,
      DEFAULT_WEBGPU_STEPS,
    );
  addPrecisionOptions(cmd);
  addAlias(cmd, '--out <dir>', 'output');
  cmd.action(async (hfDir: string, o: ImportCommandOptions) => {
    const manifest = await importModel(hfDir, o.output, {
      precision: o.precision,
      quantizeDecoder: o.quantizeDecoder,
      recheckMargin: o.recheckMargin,
      name: o.name,
      webgpuSteps: o.webgpuSteps,
      onProgress: log,
    });
    process.stdout.write(
      `${JSON.stringify({ out: o.output, kind: manifest.kind, graphs: manifest.graphs })}\n`,
    );
  });
}
