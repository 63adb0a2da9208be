import { execFile } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeHub } from '../helpers/fake-hub.js';
import { FIXTURE, REFERENCE } from '../helpers/models.js';

const run = promisify(execFile);
const capfilt = (args: string[], env: Record<string, string> = {}) =>
  run(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], {
    env: { ...process.env, ...env },
  });

describe('capfilt models (CLI)', () => {
  const hub = new FakeHub();
  const work = mkdtempSync(join(tmpdir(), 'capfilt-models-cli-'));
  beforeAll(async () => {
    await hub.start();
    hub.repos.set('Salesforce/blip-tiny-captioner', {
      dir: join(FIXTURE, 'captioner-bin'),
      api: true,
      sha: 'c'.repeat(40),
      revisions: ['main', 'c'.repeat(40)],
    });
  });
  afterAll(async () => {
    await hub.stop();
    rmSync(work, { recursive: true, force: true });
  });

  it('pull downloads from HF_ENDPOINT, converts, and the model captions like Hugging Face', async () => {
    const out = join(work, 'captioner');
    const pulled = await capfilt(['models', 'pull', 'Salesforce/blip-tiny-captioner', '--out', out], {
      HF_ENDPOINT: hub.url,
    });
    expect(JSON.parse(pulled.stdout)).toMatchObject({ kind: 'captioner', weights: 'pytorch_model.bin' });
    const manifest = JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8'));
    expect(manifest.source.name).toBe('Salesforce/blip-tiny-captioner@main');
    const image = join(FIXTURE, 'images', '3_stripes.png');
    const { stdout } = await capfilt([
      'caption',
      '--model',
      out,
      '--strategy',
      'greedy',
      '--max-length',
      '24',
      '--min-length',
      '0',
      image,
    ]);
    const line = JSON.parse(stdout) as { captions: { token_ids: number[] }[] };
    expect(line.captions[0].token_ids).toEqual(
      REFERENCE.captioner.generation.greedy_prompt.results['3_stripes'].sequence,
    );
    const inspected = JSON.parse((await capfilt(['models', 'inspect', out])).stdout);
    expect(inspected).toMatchObject({
      kind: 'captioner',
      precision: 'fp32',
      compute: { cpu: 'float32', cuda: 'float32', webgpu: 'float32' },
      special_ids: { dec: 30522, enc: 30523 },
    });
  });

  it('random writes a checkpoint that imports', async () => {
    const raw = join(work, 'random');
    await capfilt([
      'models',
      'random',
      '--preset',
      'tiny',
      '--kind',
      'filter',
      '--output',
      raw,
      '--weights-seed',
      '3',
    ]);
    const { stdout } = await capfilt([
      'models',
      'import',
      raw,
      '--output',
      join(work, 'random-onnx'),
      '--precision',
      'fp16',
    ]);
    expect(JSON.parse(stdout)).toMatchObject({ kind: 'filter' });
  });

  it('import refuses a directory that is not a BLIP checkpoint, with exit code 2', async () => {
    const err = (await capfilt(['models', 'import', work, '--out', join(work, 'x')]).catch(
      (e: unknown) => e,
    )) as {
      code: number;
      stderr: string;
    };
    expect(err.code).toBe(2);
    expect(err.stderr).toMatch(/no readable config\.json/);
  });

  it('import --precision int8 --recheck-margin: the filter keeps its fp32 graphs; a bad margin is exit 2', async () => {
    const out = join(work, 'filter-recheck');
    const args = ['models', 'import', join(FIXTURE, 'filter'), '--out', out, '--precision', 'int8'];
    await capfilt([...args, '--recheck-margin', '0.02']);
    const manifest = JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8'));
    expect(manifest.recheck).toEqual({
      margin: 0.02,
      graphs: {
        vision: 'vision.fp32.onnx',
        cross_kv: 'cross_kv.fp32.onnx',
        itm: 'itm.fp32.onnx',
        itc_text: 'itc_text.fp32.onnx',
      },
    });
    const err = (await capfilt([...args, '--recheck-margin', '0.7']).catch((e: unknown) => e)) as {
      code: number;
      stderr: string;
    };
    expect(err.code).toBe(2);
    expect(err.stderr).toMatch(/--recheck-margin must lie strictly between 0 and 0.5, got 0.7/);
  });

  it('pull refuses a repo that import would refuse, before downloading its weights', async () => {
    const dir = join(work, 'not-blip');
    cpSync(join(FIXTURE, 'captioner-bin'), dir, { recursive: true });
    const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    writeFileSync(
      join(dir, 'config.json'),
      JSON.stringify({ ...config, architectures: ['BlipForQuestionAnswering'] }),
    );
    hub.repos.set('Salesforce/blip-vqa-tiny', {
      dir,
      api: true,
      sha: 'd'.repeat(40),
      revisions: ['main', 'd'.repeat(40)],
    });
    hub.log.length = 0;
    const err = (await capfilt(
      ['models', 'pull', 'Salesforce/blip-vqa-tiny', '--output', join(work, 'vqa')],
      {
        HF_ENDPOINT: hub.url,
      },
    ).catch((e: unknown) => e)) as { code: number; stderr: string };
    expect(err.code).toBe(2);
    expect(err.stderr).toMatch(/unsupported architecture/);
    expect(hub.log.filter((l) => l.url.includes('pytorch_model.bin'))).toEqual([]);
  });
});
