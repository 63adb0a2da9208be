import type { Command } from 'commander';
import { Captioner } from '../captioner/captioner.js';
import { validateDecoding } from '../core/validate.js';
import {
  addAlias,
  addDecodingFlags,
  addEngineFlags,
  type DecodingFlags,
  decodingFromFlags,
  type EngineFlags,
  engineFromFlags,
} from './flags.js';
import { pixelsOf, printLine } from './pixels.js';

export interface CaptionCommandOptions extends DecodingFlags, EngineFlags {
  captioner: string;
}

async function captionCommand(inputs: string[], o: CaptionCommandOptions): Promise<void> {
  const options = decodingFromFlags(o);
  validateDecoding(options);
  const captioner = await Captioner.load(o.captioner, engineFromFlags(o));
  try {
    const samples = [];
    for (const input of inputs) samples.push({ key: input, pixels: await pixelsOf(input, captioner) });
    const results = await captioner.caption(samples, options);
    results.forEach((captions, i) => {
      printLine({
        input: inputs[i],
        captions: captions.map((c) => ({ text: c.text, token_ids: c.tokenIds })),
        model: captioner.modelId,
      });
    });
  } finally {
    await captioner.close();
  }
}

/** `capfilt caption`: synthetic captions for a few images, one JSON line each. */
export function registerCaption(program: Command): void {
  const cmd = program
    .command('caption')
    .description('write synthetic captions for images (or .npy pixel tensors)')
    .requiredOption('--captioner <dir>', 'converted captioner')
    .argument('<input...>', 'image files or .npy arrays');
  addAlias(cmd, '--model <dir>', 'captioner');
  addEngineFlags(addDecodingFlags(cmd));
  cmd.action(captionCommand);
}
