import type { Command } from 'commander';
import { registerImport } from './import.js';
import { registerInspect } from './inspect.js';
import { registerPull } from './pull.js';
import { registerRandom } from './random.js';

/** `capfilt models import|pull|random|inspect`: getting BLIP checkpoints into capfilt's ONNX form. */
export function registerModels(program: Command): void {
  const models = program.command('models').description('convert, download and inspect BLIP models');
  registerImport(models);
  registerPull(models);
  registerRandom(models);
  registerInspect(models);
}
