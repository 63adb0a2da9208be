import type { Command } from 'commander';
import { UsageError } from '../core/errors.js';
import type { FilterOptions } from '../core/types.js';
import { validateFilter } from '../core/validate.js';
import { decideTexts } from '../filter/decision.js';
import { Filter } from '../filter/filter.js';
import { preCaption } from '../filter/normalize.js';
import {
  addAlias,
  addEngineFlags,
  addFilterFlags,
  type EngineFlags,
  engineFromFlags,
  type FilterFlags,
  filterFromFlags,
} from './flags.js';
import { pixelsOf, printLine, readInput } from './pixels.js';

export interface ScoreCommandOptions extends FilterFlags, EngineFlags {
  filter: string;
  image?: string;
  text: string[];
  pairs?: string;
}

async function pairsOf(o: ScoreCommandOptions): Promise<{ image: string; text: string }[]> {
  const pairs: { image: string; text: string }[] = [];
  if (o.image) for (const text of o.text) pairs.push({ image: o.image, text });
  if (o.pairs) {
    const lines = (await readInput(o.pairs))
      .toString('utf8')
      .split('\n')
      .filter((l) => l.trim() !== '');
    lines.forEach((l, i) => {
      const row = JSON.parse(l) as { image?: unknown; text?: unknown };
      if (typeof row.image !== 'string' || typeof row.text !== 'string') {
        throw new UsageError(`${o.pairs}:${i + 1}: expected {"image": string, "text": string}`);
      }
      pairs.push({ image: row.image, text: row.text });
    });
  }
  if (pairs.length === 0) throw new UsageError('nothing to score: give --image with --text, or --pairs');
  return pairs;
}

/** Scores every text against its image; one sample per distinct image, so its vision pass is shared. */
async function scorePairs(filter: Filter, pairs: { image: string; text: string }[], options: FilterOptions) {
  const byImage = new Map<string, string[]>();
  for (const p of pairs) byImage.set(p.image, [...(byImage.get(p.image) ?? []), p.text]);
  const samples = [];
  for (const [image, texts] of byImage) {
    const scored = texts.map((t) => (options.normalizeWebText ? preCaption(t) : t));
    samples.push({ key: image, pixels: await pixelsOf(image, filter), texts: scored });
  }
  const scores = await filter.score(samples, options);
  return [...byImage].flatMap(([image, texts], i) =>
    texts.map((text, j) => ({ image, text, ...scores[i][j] })),
  );
}

async function scoreCommand(o: ScoreCommandOptions, cmd: Command): Promise<void> {
  const thresholdGiven = cmd.getOptionValueSource('threshold') === 'cli';
  const options = filterFromFlags(o);
  validateFilter(options);
  const engine = engineFromFlags(o);
  const pairs = await pairsOf(o);
  const filter = await Filter.load(o.filter, engine);
  try {
    for (const s of await scorePairs(filter, pairs, options)) {
      const out: Record<string, unknown> = { input: s.image, text: s.text, itm: s.itm, itc: s.itc };
      if (thresholdGiven) {
        const web = { text: s.text, score: { itm: s.itm, itc: s.itc } };
        out.kept = decideTexts({ web, synthetic: [] }, { ...options, consider: 'both' }).webKept;
        out.threshold = options.threshold;
      }
      printLine(out);
    }
  } finally {
    await filter.close();
  }
}

/** `capfilt score`: ITM and ITC of texts against images, one JSON line per pair. */
export function registerScore(program: Command): void {
  const cmd = program
    .command('score')
    .description('ITM match probability and ITC similarity of texts against images')
    .requiredOption('--filter <dir>', 'converted filter')
    .option('--image <input>', 'image file or .npy array')
    .option(
      '--text <text>',
      'a text to score (repeatable)',
      (v: string, acc: string[]) => [...acc, v],
      [] as string[],
    )
    .option('--pairs <file>', 'JSONL of {"image": path, "text": text} to score in bulk');
  addAlias(cmd, '--model <dir>', 'filter');
  addEngineFlags(addFilterFlags(cmd));
  cmd.action((o: ScoreCommandOptions) => scoreCommand(o, cmd));
}
