import { type BlipConfig, readBlipConfig } from '../config.js';
import { type PullOptions, type PullResult, pullModel } from './hub.js';

/**
 * `capfilt models pull`: what `models import` needs of a repo is checked before the weights are
 * downloaded. config.json (a supported BLIP architecture, sane sizes) and vocab.txt come first;
 * a repo import would refuse fails then, not after gigabytes. The full pull reuses those files.
 */
export async function pullCheckpoint(
  opts: PullOptions,
  /** What the caller's import will ask of the config, checked before the weights come. */
  checkConfig: (cfg: BlipConfig) => void = () => {},
): Promise<PullResult> {
  const first = await pullModel({ ...opts, files: ['config.json', 'vocab.txt'] });
  checkConfig(await readBlipConfig(opts.out));
  // The revision as resolved by the first pull, so that a push in between cannot mix commits.
  const revision = first.commit ?? opts.revision;
  const pulled = await pullModel({ ...opts, ...(revision ? { revision } : {}) });
  return { ...pulled, revision: first.revision };
}
