import type { Command } from 'commander';
import type { PullProgress } from '../../model/convert/hub.js';
import {
  checkImportConfig,
  checkImportOptions,
  type ImportOptions,
  importModel,
} from '../../model/convert/import.js';
import { pullCheckpoint } from '../../model/convert/pull.js';
import { addAlias } from '../flags.js';
import { addPrecisionOptions, log, type PrecisionOptions } from './log.js';

export interface PullCommandOptions extends PrecisionOptions {
  output: string;
  revision: string;
  downloadDir?: string;
}

/** Download progress, at most every 2 s. */
function progressLog(): (p: PullProgress) => void {
  let last = 0;
  return (p) => {
    if (Date.now() - last < 2000) return;
    last = Date.now();
    const total = p.total ? ` / ${(p.total / 1e6).toFixed(1)}` : '';
    log(`${p.file}: ${(p.received / 1e6).toFixed(1)}${total} MB`);
  };
}

/** `capfilt models pull <repo>`: download from the Hugging Face hub, then import. */
export function registerPull(models: Command): void {
  const cmd = models
    .command('pull')
    .description('download a BLIP repo from the Hugging Face hub (HF_ENDPOINT, HF_TOKEN) and import it')
    .argument('<repo-id>', 'e.g. Salesforce/blip-image-captioning-large')
    .requiredOption('-o, --output <dir>', 'converted model directory')
    .option('--revision <rev>', 'branch, tag, commit or refs/pr/N', 'main')
    .option('--download-dir <dir>', 'where the raw checkpoint is kept (default <output>.hf)');
  addPrecisionOptions(cmd);
  addAlias(cmd, '--out <dir>', 'output');
  cmd.action(async (repo: string, o: PullCommandOptions) => {
    const raw = o.downloadDir ?? `${o.output}.hf`;
    const options: ImportOptions = {
      precision: o.precision,
      quantizeDecoder: o.quantizeDecoder,
      recheckMargin: o.recheckMargin,
      name: `${repo}@${o.revision}`,
      onProgress: log,
    };
    // What import would refuse is refused before anything is downloaded.
    checkImportOptions(options);
    const pulled = await pullCheckpoint(
      { repo, revision: o.revision, out: raw, onProgress: progressLog() },
      (cfg) => checkImportConfig(options, cfg),
    );
    const manifest = await importModel(raw, o.output, options);
    process.stdout.write(
      `${JSON.stringify({ out: o.output, kind: manifest.kind, weights: pulled.weights, commit: pulled.commit })}\n`,
    );
  });
}
