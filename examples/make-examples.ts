/**
 * Generates the bundled example dataset: simple shapes drawn by sharp, with captions written for
 * this project, some deliberately wrong or spammy (what CapFilt is meant to catch).
 * Run from the repository root: `npx tsx examples/make-examples.ts`. The outputs are committed.
 */
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { pack } from 'tar-stream';

sharp.cache(false);

type Shape = 'circle' | 'square' | 'triangle' | 'stripes' | 'ring' | 'cross';
interface Example {
  shape: Shape;
  fg: string;
  bg: string;
  caption: string;
  /** False when the caption is deliberately wrong (a mismatched or spam text). */
  correct: boolean;
}

const COLOURS: Record<string, string> = {
  red: '#d62728',
  blue: '#1f4fd6',
  green: '#2ca02c',
  yellow: '#f2d21b',
  white: '#ffffff',
  black: '#111111',
  orange: '#ff7f0e',
  purple: '#8e44ad',
  grey: '#8a8a8a',
};

const EXAMPLES: Example[] = [
  { shape: 'circle', fg: 'red', bg: 'white', caption: 'a red circle on a white background', correct: true },
  { shape: 'square', fg: 'blue', bg: 'yellow', caption: 'a blue square in the middle of a yellow picture', correct: true },
  { shape: 'triangle', fg: 'green', bg: 'black', caption: 'a green triangle pointing up on black', correct: true },
  { shape: 'stripes', fg: 'orange', bg: 'white', caption: 'orange and white vertical stripes', correct: true },
  { shape: 'ring', fg: 'purple', bg: 'grey', caption: 'a purple ring on a grey background', correct: true },
  { shape: 'cross', fg: 'white', bg: 'red', caption: 'a white cross on a red field', correct: true },
  { shape: 'circle', fg: 'yellow', bg: 'blue', caption: 'the sun, a yellow disc in a blue sky', correct: true },
  { shape: 'square', fg: 'black', bg: 'white', caption: 'a black square on white paper', correct: true },
  { shape: 'circle', fg: 'green', bg: 'white', caption: 'a cat sleeping on a sofa', correct: false },
  { shape: 'triangle', fg: 'red', bg: 'yellow', caption: 'BUY CHEAP WATCHES ONLINE free shipping!!!', correct: false },
  { shape: 'stripes', fg: 'blue', bg: 'yellow', caption: 'IMG_20190312_104512.jpg', correct: false },
  { shape: 'square', fg: 'red', bg: 'green', caption: 'a blue circle', correct: false },
  { shape: 'ring', fg: 'orange', bg: 'black', caption: 'click here to download the full resolution image', correct: false },
  { shape: 'cross', fg: 'blue', bg: 'white', caption: 'a blue plus sign on white', correct: true },
  { shape: 'circle', fg: 'purple', bg: 'yellow', caption: 'wedding photos of our summer in Italy', correct: false },
  { shape: 'triangle', fg: 'blue', bg: 'orange', caption: 'a blue triangle on an orange background', correct: true },
];

/** Human-annotated pairs (the COCO-like part of BLIP's bootstrapped set): added unfiltered. */
const HUMAN: { shape: Shape; fg: string; bg: string; caption: string }[] = [
  { shape: 'ring', fg: 'green', bg: 'white', caption: 'a thick green ring drawn on a white background' },
  { shape: 'stripes', fg: 'red', bg: 'black', caption: 'red and black vertical stripes of equal width' },
];

const SIZE = 96;

function svg(shape: Shape, fg: string, bg: string): string {
  const f = COLOURS[fg];
  const b = COLOURS[bg];
  const body: Record<Shape, string> = {
    circle: `<circle cx="48" cy="48" r="30" fill="${f}"/>`,
    square: `<rect x="22" y="22" width="52" height="52" fill="${f}"/>`,
    triangle: `<polygon points="48,14 84,80 12,80" fill="${f}"/>`,
    stripes: [0, 1, 2, 3, 4, 5].map((i) => `<rect x="${i * 16}" y="0" width="8" height="96" fill="${f}"/>`).join(''),
    ring: `<circle cx="48" cy="48" r="28" fill="none" stroke="${f}" stroke-width="12"/>`,
    cross: `<rect x="40" y="14" width="16" height="68" fill="${f}"/><rect x="14" y="40" width="68" height="16" fill="${f}"/>`,
  };
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${SIZE}" height="${SIZE}"><rect width="100%" height="100%" fill="${b}"/>${body[shape]}</svg>`;
}

async function render(shape: Shape, fg: string, bg: string): Promise<Buffer> {
  return sharp(Buffer.from(svg(shape, fg, bg))).jpeg({ quality: 85 }).toBuffer();
}

async function tar(members: { name: string; data: Buffer | string }[]): Promise<Buffer> {
  const p = pack();
  const chunks: Buffer[] = [];
  p.on('data', (c: unknown) => {
    chunks.push(c as Buffer);
  });
  const done = new Promise<void>((resolve) => p.on('end', () => resolve()));
  // Fixed mtime: the committed tars are byte-for-byte reproducible.
  for (const m of members) p.entry({ name: m.name, mtime: new Date(0) }, typeof m.data === 'string' ? Buffer.from(m.data) : m.data);
  p.finalize();
  await done;
  return Buffer.concat(chunks);
}

async function main(): Promise<void> {
  const root = join(process.cwd(), 'examples');
  for (const d of ['images', 'jsonl', 'webdataset', 'human']) await rm(join(root, d), { recursive: true, force: true });
  for (const d of ['images', 'jsonl', 'webdataset', 'human/images']) await mkdir(join(root, d), { recursive: true });

  const rows: string[] = [];
  const members: { name: string; data: Buffer | string }[][] = [[], []];
  for (const [i, e] of EXAMPLES.entries()) {
    const name = `${String(i).padStart(4, '0')}_${e.fg}_${e.shape}.jpg`;
    const jpg = await render(e.shape, e.fg, e.bg);
    await writeFile(join(root, 'images', name), jpg);
    rows.push(JSON.stringify({ image: `../images/${name}`, caption: e.caption, correct: e.correct }));
    const key = String(i).padStart(9, '0');
    const shard = members[i < EXAMPLES.length / 2 ? 0 : 1];
    shard.push({ name: `${key}.jpg`, data: jpg });
    shard.push({ name: `${key}.txt`, data: e.caption });
    shard.push({ name: `${key}.json`, data: JSON.stringify({ key, caption: e.caption, width: SIZE, height: SIZE, correct: e.correct }) });
  }
  await writeFile(join(root, 'jsonl', 'captions.jsonl'), `${rows.join('\n')}\n`);
  await writeFile(join(root, 'webdataset', '00000.tar'), await tar(members[0]));
  await writeFile(join(root, 'webdataset', '00001.tar'), await tar(members[1]));

  const human: string[] = [];
  for (const [i, h] of HUMAN.entries()) {
    const name = `h${i}_${h.fg}_${h.shape}.jpg`;
    await writeFile(join(root, 'human/images', name), await render(h.shape, h.fg, h.bg));
    human.push(JSON.stringify({ image: `images/${name}`, caption: h.caption }));
  }
  await writeFile(join(root, 'human', 'annotations.jsonl'), `${human.join('\n')}\n`);
  process.stdout.write(`examples written under ${root}\n`);
}

await main();
