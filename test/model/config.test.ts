import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ModelError } from '../../src/core/errors.js';
import { imageTokenCount, parseBlipConfig, readBlipConfig } from '../../src/model/config.js';
import { imageSpecFromPreprocessorConfig } from '../../src/model/image-spec.js';

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

  it("accepts BLIP large's sizes and refuses each size past its bound, naming the field and the bound", () => {
    // Salesforce/blip-itm-large-coco: ViT-L vision, BERT-base text.
    const large = {
      ...filter,
      vision_config: {
        hidden_size: 1024,
        num_hidden_layers: 24,
        num_attention_heads: 16,
        intermediate_size: 4096,
        image_size: 384,
        patch_size: 16,
      },
      text_config: {
        ...(filter.text_config as object),
        vocab_size: 30524,
        hidden_size: 768,
        encoder_hidden_size: 1024,
        num_hidden_layers: 12,
        num_attention_heads: 12,
        intermediate_size: 3072,
        max_position_embeddings: 512,
      },
      image_text_hidden_size: 256,
    };
    expect(parseBlipConfig(large).vision.hiddenSize).toBe(1024);
    expect(() => parseBlipConfig(withText('hidden_size', 1e9))).toThrow(
      'config.json: text_config.hidden_size is 1000000000; capfilt converts BLIP models up to 8192',
    );
    expect(() => parseBlipConfig(withText('num_hidden_layers', 100_000))).toThrow(
      /text_config\.num_hidden_layers is 100000; capfilt converts BLIP models up to 256/,
    );
    expect(() => parseBlipConfig(withText('vocab_size', 2 ** 40))).toThrow(
      /text_config\.vocab_size .* up to 1048576/,
    );
    expect(() => parseBlipConfig({ ...filter, image_text_hidden_size: 1e6 })).toThrow(
      /image_text_hidden_size is 1000000; .* up to 8192/,
    );
    expect(() =>
      parseBlipConfig({
        ...filter,
        vision_config: { ...(filter.vision_config as object), image_size: 1 << 20 },
      }),
    ).toThrow(/vision_config\.image_size is 1048576; .* up to 4096/);
    expect(() => parseBlipConfig(withText('bos_token_id', 40_000))).toThrow(
      /text_config\.bos_token_id 40000 is outside the 30524-token vocabulary/,
    );
  });

  it('reports a config.json that is not JSON as a ModelError', async () => {
    await writeFile(join(dir, 'config.json'), '{"architectures": [');
    const err = await readBlipConfig(dir).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModelError);
    expect((err as Error).message).toMatch(/config\.json is not valid JSON/);
  });
});

describe("the Salesforce repos' own configs (test/fixtures/blip-real-configs)", () => {
  const REAL = 'test/fixtures/blip-real-configs';
  // [hidden, layers, heads] of the vision and text transformers, as blip.md tabulates them.
  const REPOS = {
    'blip-image-captioning-base': { kind: 'captioner', vision: [768, 12, 12] },
    'blip-image-captioning-large': { kind: 'captioner', vision: [1024, 24, 16] },
    'blip-itm-base-coco': { kind: 'filter', vision: [768, 12, 12] },
    'blip-itm-large-coco': { kind: 'filter', vision: [1024, 24, 16] },
  } as const;

  for (const [repo, want] of Object.entries(REPOS)) {
    it(`${repo}: ${want.kind}, ViT ${want.vision.join('/')}, BERT 768/12/12, 577 image tokens at 384 px`, async () => {
      const cfg = await readBlipConfig(join(REAL, repo));
      expect(cfg.kind).toBe(want.kind);
      const { vision: v, text: t } = cfg;
      expect([v.hiddenSize, v.numLayers, v.numHeads]).toEqual([...want.vision]);
      expect([t.hiddenSize, t.numLayers, t.numHeads, t.vocabSize]).toEqual([768, 12, 12, 30524]);
      expect(t.encoderHiddenSize).toBe(v.hiddenSize);
      expect(imageTokenCount(v)).toBe(577);
      expect(cfg.imageTextHiddenSize).toBe(256);
      const pre = JSON.parse(await readFile(join(REAL, repo, 'preprocessor_config.json'), 'utf8'));
      expect(imageSpecFromPreprocessorConfig(pre)).toMatchObject({
        height: 384,
        width: 384,
        resample: 'bicubic',
      });
    });
  }

  it('without text_config.encoder_hidden_size (as large ships on some revisions): the vision width, as transformers', async () => {
    for (const repo of ['blip-image-captioning-large', 'blip-itm-large-coco']) {
      const json = JSON.parse(
        await readFile(join(REAL, repo, 'config.without-encoder_hidden_size.json'), 'utf8'),
      ) as { text_config: Record<string, unknown> };
      expect(json.text_config.encoder_hidden_size, repo).toBeUndefined();
      expect(parseBlipConfig(json).text.encoderHiddenSize, repo).toBe(1024);
    }
  });
});
