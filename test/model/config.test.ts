import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ModelError } from '../../src/core/errors.js';
import { parseBlipConfig, readBlipConfig } from '../../src/model/config.js';

const FIX = 'test/fixtures/blip-tiny';

let dir: string;
let filter: Record<string, unknown>;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'capfilt-config-'));
  filter = JSON.parse(await readFile(join(FIX, 'filter', 'config.json'), 'utf8')) as Record<string, unknown>;
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** The fixture's filter config with one text_config field replaced. */
function withText(key: string, value: unknown): Record<string, unknown> {
  return { ...filter, text_config: { ...(filter.text_config as object), [key]: value } };
}

describe('parseBlipConfig on hostile or broken configs', () => {
  it('reads the fixture', () => {
    expect(parseBlipConfig(filter).kind).toBe('filter');
  });

  it('refuses an architecture named like an Object property', () => {
    for (const name of ['constructor', 'toString', '__proto__']) {
      expect(() => parseBlipConfig({ ...filter, architectures: [name] })).toThrow(/unsupported architecture/);
    }
  });

  it('refuses sizes that are not positive integers and token ids that are not ids', () => {
    expect(() => parseBlipConfig(withText('num_hidden_layers', 1.5))).toThrow(
      /num_hidden_layers must be a positive integer/,
    );
    expect(() => parseBlipConfig(withText('vocab_size', 0))).toThrow(/vocab_size must be a positive integer/);
    expect(() => parseBlipConfig(withText('intermediate_size', -64))).toThrow(
      /intermediate_size must be a positive integer/,
    );
    expect(() => parseBlipConfig(withText('pad_token_id', -1))).toThrow(/pad_token_id must be a token id/);
  });

  it('reports a config.json that is not JSON as a ModelError', async () => {
    await writeFile(join(dir, 'config.json'), '{"architectures": [');
    const err = await readBlipConfig(dir).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModelError);
    expect((err as Error).message).toMatch(/config\.json is not valid JSON/);
  });
});
