import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BadInputError } from '../../src/core/errors.js';
import type { InputOptions, PairRef } from '../../src/core/types.js';
import { readShard } from '../../src/io/readers/index.js';
import { derivedKey } from '../../src/io/readers/row.js';
import { Storage } from '../../src/io/storage/storage.js';
import { planShards } from '../../src/pipeline/plan.js';
import { makeImage } from './fixtures.js';

const input: InputOptions = { imageColumn: 'image', textColumn: 'caption', shardSize: 100_000 };
const storage = new Storage();
let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'capfilt-hostile-text-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Every pair of every shard of the file, and the pair total the plan announced. */
async function readAll(file: string): Promise<{ planned: number; pairs: PairRef[] }> {
  const plan = await planShards(storage, file, { shardSize: input.shardSize });
  const pairs: PairRef[] = [];
  for (const { shard } of plan) for await (const p of readShard(storage, shard, input)) pairs.push(p);
  return { planned: plan.reduce((a, p) => a + (p.pairs ?? 0), 0), pairs };
}

const outcome = (p: PairRef) => (p.invalid ? `${p.invalid.reason}: ${p.invalid.message}` : `ok ${p.text}`);

/** A file of `head`, then `gap` bytes never written (a sparse run of NULs, cheap on disk), then `tail`. */
async function sparse(name: string, head: string, gap: number, tail: string): Promise<string> {
  const file = join(dir, name);
  const fh = await open(file, 'w');
  try {
    await fh.write(head, 0);
    await fh.write(tail, Buffer.byteLength(head) + gap);
  } finally {
    await fh.close();
  }
  return file;
}

const MiB = 1 << 20;

describe('JSONL: line and value limits on the stream', () => {
  it('a 600 MB line is one rejected row, the rows around it are read (it crashed with RangeError)', async () => {
    const file = await sparse(
      'long-line.jsonl',
      '{"image":"a.png","caption":"before"}\n',
      600 * MiB,
      '\n{"image":"c.png","caption":"after"}\n',
    );
    const { planned, pairs } = await readAll(file);
    expect(planned).toBe(3);
    expect(pairs.map(outcome)).toEqual([
      'ok before',
      `bad_row: row 1: line 2 is ${600 * MiB} bytes, over the 4194304-byte row limit`,
      'ok after',
    ]);
  });

  it('a 300 MB value is rejected with its row, never parsed (it exhausted the heap)', async () => {
    const file = await sparse(
      'long-value.jsonl',
      '{"image":"a.png","caption":"',
      300 * MiB,
      '"}\n{"image":"b.png","caption":"fine"}\n',
    );
    const { pairs } = await readAll(file);
    expect(pairs.map(outcome)).toEqual([
      `bad_row: row 0: line 1 is ${300 * MiB + 30} bytes, over the 4194304-byte row limit`,
      'ok fine',
    ]);
  });

  it('a gzipped over-long line is one rejected row too', async () => {
    const noise = randomBytes(3 * MiB).toString('hex'); // 6 MiB that gzip cannot squeeze
    const body = `{"image":"a.png","caption":"${noise}"}\n\n{"image":"b.png","caption":"fine"}\n`;
    await writeFile(join(dir, 'long.jsonl.gz'), gzipSync(body));
    const { planned, pairs } = await readAll(join(dir, 'long.jsonl.gz'));
    expect(planned).toBe(2);
    expect(pairs.map((p) => p.invalid?.reason ?? p.text)).toEqual(['bad_row', 'fine']);
  });

  it('a .gz that inflates like a bomb (a 600 MB line of one byte) is refused as a file, quickly', async () => {
    const member = gzipSync(Buffer.alloc(MiB, 'a'));
    const bomb = Buffer.concat([
      gzipSync('{"image":"a.png","caption":"'),
      ...Array.from({ length: 600 }, () => member),
      gzipSync('"}\n'),
    ]);
    expect(bomb.length).toBeLessThan(2 * MiB);
    await writeFile(join(dir, 'bomb.jsonl.gz'), bomb);
    const err = await planShards(storage, join(dir, 'bomb.jsonl.gz'), { shardSize: 10 }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(BadInputError);
    expect((err as Error).message).toMatch(
      /bomb\.jsonl\.gz: inflates to more than 200 times its compressed size/,
    );
  });

  it('blank lines (plain and gzipped, with CR and spaces) are skipped and do not shift rows', async () => {
    const body = `\n\n{"image":"a.png","caption":"one"}\r\n${'\n'.repeat(MiB)}  \n\r\n{"image":"b.png","caption":"two"}\n\n`;
    await writeFile(join(dir, 'blank.jsonl'), body);
    await writeFile(join(dir, 'blank.jsonl.gz'), gzipSync(body));
    for (const name of ['blank.jsonl', 'blank.jsonl.gz']) {
      const { planned, pairs } = await readAll(join(dir, name));
      expect(planned, name).toBe(2);
      expect(pairs.map((p) => [p.key, p.text])).toEqual([
        [derivedKey(0, 'a.png', 'one'), 'one'],
        [derivedKey(1, 'b.png', 'two'), 'two'],
      ]);
    }
  });

  it('a line that is not JSON is rejected by line and byte offset, never quoted', async () => {
    await writeFile(
      join(dir, 'passwd.jsonl'),
      '{"image":"a.png","caption":"ok"}\nroot:x:0:0:root:/root:/bin/bash\n{"image": "b.png", "caption" "x"}\n{"image":"é.png","caption":"é" x}\n[1]\n',
    );
    const { pairs } = await readAll(join(dir, 'passwd.jsonl'));
    expect(pairs.map((p) => p.invalid?.message ?? 'ok')).toEqual([
      'ok',
      'row 1: line 2 is not valid JSON (byte offset 33)',
      'row 2: line 3 is not valid JSON (byte offset 94)',
      'row 3: line 4 is not valid JSON (byte offset 132)',
      'row 4: line 5 is not a JSON object',
    ]);
  });
});

describe('JSON errors name a place, never the text', () => {
  it("an image folder's sidecar .json that is not JSON", async () => {
    const folder = join(dir, 'folder');
    await mkdir(folder);
    await writeFile(join(folder, 'a.png'), await makeImage());
    await writeFile(join(folder, 'a.txt'), 'a caption');
    await writeFile(join(folder, 'a.json'), '{"ok": 1, root:x:0:0:root}');
    const { pairs } = await readAll(folder);
    expect(pairs.map((p) => p.meta)).toEqual([
      { sidecar_error: 'a.json is not valid JSON (byte offset 10)' },
    ]);
  });
});

describe('CSV: a stray quote never merges rows', () => {
  const csv = (rows: string[]) => `image,caption\n${rows.join('\n')}\n`;

  it('one stray quote at row 10 of 1,000 rejects that row alone (it swallowed 989 rows)', async () => {
    const rows = Array.from({ length: 1000 }, (_, i) => `img/${i}.png,caption ${i}`);
    rows[9] = 'img/9.png,"caption 9';
    await writeFile(join(dir, 'stray.csv'), csv(rows));
    const { planned, pairs } = await readAll(join(dir, 'stray.csv'));
    expect(planned).toBe(1000);
    expect(pairs).toHaveLength(1000);
    const bad = pairs.filter((p) => p.invalid);
    expect(bad.map((p) => p.invalid?.message)).toEqual([
      'row 9: line 11: a quoted field is not closed within 32 lines or 4194304 bytes',
    ]);
    expect(pairs.filter((p) => !p.invalid).map((p) => p.text)).toEqual(
      rows.filter((_, i) => i !== 9).map((_, i) => `caption ${i < 9 ? i : i + 1}`),
    );
  });

  it('a quote opened near the end of the file rejects its line, and the lines after it are rows', async () => {
    await writeFile(join(dir, 'tail.csv'), csv(['a.png,one', 'b.png,"two', 'c.png,three', 'd.png,four']));
    const { pairs } = await readAll(join(dir, 'tail.csv'));
    expect(pairs.map(outcome)).toEqual([
      'ok one',
      'bad_row: row 1: line 3: a quoted field is never closed',
      'ok three',
      'ok four',
    ]);
  });

  it('a second stray quote cannot glue the rows between into one record', async () => {
    await writeFile(join(dir, 'glue.csv'), csv(['a.png,"stray', 'b.png,x', 'c.png,"y"z', 'd.png,w']));
    const { pairs } = await readAll(join(dir, 'glue.csv'));
    expect(pairs.map(outcome)).toEqual([
      'bad_row: row 0: line 2: a quote closes a field before its end',
      'ok x',
      'bad_row: row 2: line 4: a quote closes a field before its end',
      'ok w',
    ]);
  });

  it('quoted captions spanning lines (a blank one too), and escaped quotes, stay one row', async () => {
    await writeFile(
      join(dir, 'multi.csv'),
      csv(['a.png,"first\n\nthird ""quoted"" line"', 'b.png,"x, ""y"""', 'c.png,plain "inner" quotes']),
    );
    const { pairs } = await readAll(join(dir, 'multi.csv'));
    expect(pairs.map(outcome)).toEqual([
      'ok first\n\nthird "quoted" line',
      'ok x, "y"',
      'ok plain "inner" quotes',
    ]);
  });

  it('an over-long record is one rejected row; its content is never in the message', async () => {
    const file = await sparse('long.csv', 'image,caption\na.png,one\nb.png,', 10 * MiB, '\nc.png,three\n');
    const { pairs } = await readAll(file);
    expect(pairs.map(outcome)).toEqual([
      'ok one',
      `bad_row: row 1: line 3 is ${10 * MiB + 6} bytes, over the 4194304-byte row limit`,
      'ok three',
    ]);
  });
});
