import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TextScore } from '../../src/core/types.js';
import { Filter, type ScoreOptions } from '../../src/filter/filter.js';
import { importModel } from '../../src/model/convert/import.js';
import { FIXTURE, fixtureBin, IMAGE_NAMES, REFERENCE } from '../helpers/models.js';

// An int8 filter imported with --recheck-margin scores again with its fp32 graphs every image that
// has a text within the margin of the threshold: decisions near the threshold are fp32's.
const samples = IMAGE_NAMES.map((name) => ({
  key: name,
  pixels: fixtureBin(`pixel_values_${name}_png.bin`),
  texts: REFERENCE.filter.pairs[name].map((p: { text: string }) => p.text),
}));
const work = mkdtempSync(join(tmpdir(), 'capfilt-recheck-'));
const importFilter = (name: string, options: Parameters<typeof importModel>[2]) =>
  importModel(join(FIXTURE, 'filter'), join(work, name), options).then(() => join(work, name));

async function scoresOf(
  dir: string,
  options: ScoreOptions,
): Promise<{ scores: TextScore[]; rechecked: number }> {
  const filter = await Filter.load(dir);
  try {
    return { scores: (await filter.score(samples, options)).flat(), rechecked: filter.rechecked };
  } finally {
    await filter.close();
  }
}

describe('int8 filter with an fp32 recheck near the threshold', () => {
  const base = { firstToken: 'enc' as const, maxTextLength: 35 };
  let fp32: TextScore[];
  let int8: TextScore[];
  beforeAll(async () => {
    fp32 = (await scoresOf(await importFilter('fp32', {}), base)).scores;
    int8 = (await scoresOf(await importFilter('int8', { precision: 'int8' }), base)).scores;
  });
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it('a threshold between a text’s fp32 and int8 scores flips it in int8; the recheck gives fp32’s decision', async () => {
    // The text int8 moves most: a threshold half-way between its two scores decides it both ways.
    const deltas = fp32.map((s, i) => Math.abs(s.itm - int8[i].itm));
    const k = deltas.indexOf(Math.max(...deltas));
    expect(deltas[k]).toBeGreaterThan(1e-3);
    const threshold = (fp32[k].itm + int8[k].itm) / 2;
    const keep = (s: TextScore[]) => s.map((x) => x.itm > threshold);
    expect(keep(int8)[k]).not.toBe(keep(fp32)[k]);

    const dir = await importFilter('recheck', { precision: 'int8', recheckMargin: deltas[k] });
    const { scores, rechecked } = await scoresOf(dir, { ...base, threshold });
    expect(keep(scores)).toEqual(keep(fp32));
    expect(scores[k]).toEqual(fp32[k]);
    // Only images with a text near the threshold went through fp32; the others kept int8's scores.
    expect(rechecked).toBeGreaterThan(0);
    scores.forEach((s, i) => {
      expect(s, `text ${i}`).toEqual(s.itm === fp32[i].itm ? fp32[i] : int8[i]);
    });

    // Without a threshold there is nothing to be near: int8's scores.
    expect((await scoresOf(dir, base)).scores).toEqual(int8);
  });

  it("a margin that covers every score gives fp32's scores exactly", async () => {
    const dir = await importFilter('recheck-all', { precision: 'int8', recheckMargin: 0.499 });
    const { scores, rechecked } = await scoresOf(dir, { ...base, threshold: 0.5 });
    expect(scores).toEqual(fp32);
    expect(rechecked).toBe(fp32.length);
  });

  it('is refused for captioners, for models other than int8 and for margins outside (0, 0.5)', async () => {
    const refusal = (kind: string, options: Parameters<typeof importModel>[2]) =>
      importModel(join(FIXTURE, kind), join(work, 'refused'), options).then(
        () => 'imported',
        (err: Error) => err.message,
      );
    expect(await refusal('captioner', { precision: 'int8', recheckMargin: 0.01 })).toMatch(
      /--recheck-margin is for filters imported with --precision int8/,
    );
    expect(await refusal('filter', { precision: 'fp16', recheckMargin: 0.01 })).toMatch(/--precision int8/);
    for (const margin of [0, 0.5, -1, Number.NaN]) {
      expect(await refusal('filter', { precision: 'int8', recheckMargin: margin })).toMatch(
        /strictly between 0 and 0.5/,
      );
    }
  });
});
