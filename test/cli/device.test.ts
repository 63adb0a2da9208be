import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnCli } from '../../tools/cli-process.js';
import { FIXTURE, importTinyModels, type TinyModels } from '../helpers/models.js';

const IMAGE = join(FIXTURE, 'images', '0_gradient.png');
// With onnxruntime-node's CUDA provider installed (a GPU host), --device auto uses CUDA: nothing to check here.
const CUDA_PROVIDER = join(
  import.meta.dirname,
  '../../node_modules/onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime_providers_cuda.so',
);

describe.skipIf(existsSync(CUDA_PROVIDER))('--device on a host without CUDA (child processes)', () => {
  let models: TinyModels;
  const dir = mkdtempSync(join(tmpdir(), 'capfilt-device-'));
  beforeAll(async () => {
    models = await importTinyModels();
  });
  afterAll(() => {
    models?.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  it('--device auto prints one capfilt: warning and nothing of onnxruntime, for both models of a run', async () => {
    const caption = spawnCli(['caption', '--captioner', models.captioner, '--device', 'auto', IMAGE]);
    expect(await caption.exited).toBe(0);
    expect(caption.stderr()).toMatch(
      /^capfilt: --device auto: CUDA unavailable \(.+\); running on the CPU\n$/,
    );
    expect(JSON.parse(caption.stdout()).captions).toHaveLength(1);

    const manifest = join(dir, 'pairs.jsonl');
    writeFileSync(manifest, `${JSON.stringify({ image: IMAGE, caption: 'a gradient' })}\n`);
    const run = spawnCli([
      ...['run', '--input', manifest, '--output', join(dir, 'out'), '--progress', 'none'],
      ...['--captioner', models.captioner, '--filter', models.filter, '--device', 'auto'],
      // The manifest names a fixture image outside its own folder.
      ...['--allow-root', join(FIXTURE, 'images')],
    ]);
    expect(await run.exited).toBe(0);
    expect(run.stderr()).toMatch(/^capfilt: --device auto: CUDA unavailable \(.+\); running on the CPU\n$/);
  });

  it('--device cuda fails in one line that names ONNXRUNTIME_NODE_INSTALL=cuda12, as README and Dockerfile do', async () => {
    const p = spawnCli(['caption', '--captioner', models.captioner, '--device', 'cuda', IMAGE]);
    expect(await p.exited).toBe(2);
    const lines = p.output().split('\n').filter(Boolean);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^capfilt: cannot run on CUDA device 0: .*ONNXRUNTIME_NODE_INSTALL=cuda12/);
    expect(lines[0]).not.toMatch(/ONNXRUNTIME_NODE_INSTALL_CUDA/);
    expect(readFileSync(join(import.meta.dirname, '../../README.md'), 'utf8')).toMatch(
      /ONNXRUNTIME_NODE_INSTALL=cuda12/,
    );
  });
});
