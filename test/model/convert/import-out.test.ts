import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ModelError } from '../../../src/core/errors.js';
import { importModel } from '../../../src/model/convert/import.js';
import { FIXTURE } from '../../helpers/models.js';

const work = mkdtempSync(join(tmpdir(), 'capfilt-import-out-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** A private copy of the fixture's tiny captioner checkpoint, config edited by `edit`. */
function checkpoint(name: string, edit?: (cfg: Record<string, Record<string, unknown>>) => void): string {
  const dir = join(work, name);
  cpSync(join(FIXTURE, 'captioner'), dir, { recursive: true });
  if (edit) {
    const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    edit(cfg);
    writeFileSync(join(dir, 'config.json'), JSON.stringify(cfg));
  }
  return dir;
}

async function refusal(p: Promise<unknown>): Promise<string> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ModelError);
  return (err as Error).message;
}

/** Names in `dir` other than `keep`: the import's temp folders must not outlive it. */
const leftovers = (dir: string, keep: string[]) => readdirSync(dir).filter((n) => !keep.includes(n));

describe('models import --out: never deletes what it did not write', () => {
  it('refuses an existing folder that is not a capfilt model and leaves its contents', async () => {
    const src = checkpoint('ck-a');
    const out = join(work, 'precious');
    mkdirSync(out);
    writeFileSync(join(out, 'thesis.tex'), 'years of work');
    expect(await refusal(importModel(src, out))).toMatch(/is not a capfilt model .*refusing to replace it/);
    expect(readFileSync(join(out, 'thesis.tex'), 'utf8')).toBe('years of work');
    expect(leftovers(work, ['ck-a', 'precious'])).toEqual([]);
  });

  it('refuses the checkpoint folder itself, and a folder holding it; the checkpoint stays whole', async () => {
    const parent = join(work, 'holder');
    mkdirSync(parent);
    const src = join(parent, 'ck');
    cpSync(join(FIXTURE, 'captioner'), src, { recursive: true });
    const before = readdirSync(src).sort();
    expect(await refusal(importModel(src, src))).toMatch(/is the checkpoint folder/);
    expect(await refusal(importModel(src, parent))).toMatch(/is the checkpoint folder .* or holds it/);
    expect(await refusal(importModel(join(src, '.'), `${src}/`))).toMatch(/is the checkpoint folder/);
    expect(readdirSync(src).sort()).toEqual(before);
    expect(readdirSync(parent)).toEqual(['ck']);
  });

  it('refuses a file in the way', async () => {
    const out = join(work, 'a-file');
    writeFileSync(out, 'not a folder');
    expect(await refusal(importModel(checkpoint('ck-b'), out))).toMatch(/is not a folder/);
    expect(readFileSync(out, 'utf8')).toBe('not a folder');
  });

  it('writes a new folder, fills an empty one, and replaces an earlier capfilt model without leftovers', async () => {
    const src = checkpoint('ck-c');
    const fresh = join(work, 'models', 'fresh');
    await importModel(src, fresh);
    expect(existsSync(join(fresh, 'manifest.json'))).toBe(true);
    const empty = join(work, 'models', 'empty');
    mkdirSync(empty);
    await importModel(src, empty);
    expect(existsSync(join(empty, 'decoder.onnx'))).toBe(true);
    const first = JSON.parse(readFileSync(join(fresh, 'manifest.json'), 'utf8')).createdAt;
    writeFileSync(join(fresh, 'stale.onnx'), 'from an older import');
    const again = await importModel(src, fresh, { name: 'second' });
    expect(again.source.name).toBe('second');
    expect(JSON.parse(readFileSync(join(fresh, 'manifest.json'), 'utf8')).createdAt >= first).toBe(true);
    expect(existsSync(join(fresh, 'stale.onnx'))).toBe(false);
    expect(leftovers(join(work, 'models'), ['fresh', 'empty'])).toEqual([]);
  });

  it('a failed import leaves the earlier model and no temp folder', async () => {
    const out = join(work, 'kept');
    await importModel(checkpoint('ck-d'), out);
    const manifest = readFileSync(join(out, 'manifest.json'), 'utf8');
    const broken = checkpoint('ck-e', (cfg) => {
      cfg.text_config.intermediate_size = 128; // the weights are 64 wide
    });
    expect(await refusal(importModel(broken, out))).toMatch(
      /does not match the weights: text_decoder\.bert\.encoder\.layer\.1\.intermediate\.dense\.weight is \[64, 32\]/,
    );
    expect(readFileSync(join(out, 'manifest.json'), 'utf8')).toBe(manifest);
    expect(
      leftovers(work, [
        'ck-a',
        'ck-b',
        'ck-c',
        'ck-d',
        'ck-e',
        'precious',
        'holder',
        'a-file',
        'models',
        'kept',
      ]),
    ).toEqual([]);
  });
});

describe('models import: config sizes are bounded', () => {
  it('refuses a hidden size of 10^9 naming the field and the bound, before writing anything', async () => {
    const src = checkpoint('ck-huge', (cfg) => {
      cfg.vision_config.hidden_size = 1e9;
      cfg.text_config.encoder_hidden_size = 1e9;
    });
    const out = join(work, 'huge-out');
    expect(await refusal(importModel(src, out))).toBe(
      'config.json: vision_config.hidden_size is 1000000000; capfilt converts BLIP models up to 8192 (refusing a size no BLIP has)',
    );
    expect(existsSync(out)).toBe(false);
  });

  it('refuses an in-bounds size that the weights contradict', async () => {
    const src = checkpoint('ck-wide', (cfg) => {
      cfg.vision_config.hidden_size = 64;
      cfg.text_config.encoder_hidden_size = 64;
    });
    expect(await refusal(importModel(src, join(work, 'wide-out')))).toMatch(
      /vision_model\.embeddings\.patch_embedding\.weight is \[32, 3, 16, 16\], the config implies \[64, 3, 16, 16\]/,
    );
  });
});
