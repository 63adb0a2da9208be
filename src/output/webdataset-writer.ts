/**
 * A shard's clean dataset as a WebDataset tar: per kept sample `<name>.<ext>` (the image's
 * original bytes, never re-encoded), `<name>.txt` (the kept texts, one per line) and
 * `<name>.json` (key, source, scores, metadata), as img2dataset lays out its tars.
 */
import { type Pack, pack } from 'tar-stream';
import { ShardError } from '../core/errors.js';
import type { OutputRecord } from '../core/types.js';
import { boundedKey } from '../io/readers/formats.js';
import type { AtomicWriter, Storage } from '../io/storage/storage.js';
import { writeChunk } from './streams.js';

/** Every member's mtime: the same records give the same bytes, so a rerun rewrites an identical tar. */
const MTIME = new Date(0);

/** The file type an image's bytes announce, by magic number (the extension loaders decode by). */
export function imageExtension(bytes: Uint8Array): string | null {
  const b = bytes;
  const ascii = (from: number, to: number) => String.fromCharCode(...b.subarray(from, to));
  if (b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return 'jpg';
  if (b[0] === 0x89 && ascii(1, 4) === 'PNG') return 'png';
  if (ascii(0, 4) === 'RIFF' && ascii(8, 12) === 'WEBP') return 'webp';
  if (ascii(0, 4) === 'GIF8') return 'gif';
  if (ascii(0, 4) === 'II*\u0000' || ascii(0, 4) === 'MM\u0000*') return 'tiff';
  if (ascii(0, 2) === 'BM') return 'bmp';
  if (ascii(4, 8) === 'ftyp') {
    const brand = ascii(8, 12);
    return brand === 'avif' || brand === 'avis' ? 'avif' : 'heic';
  }
  if (ascii(4, 8) === 'jP  ' || (b[0] === 0xff && b[1] === 0x4f && b[2] === 0xff)) return 'jp2';
  return null;
}

/**
 * The member name stem of a key. WebDataset cuts a member name at the first dot of its file name
 * (key, then extension), so dots, slashes and anything else outside [A-Za-z0-9_-] become `_`.
 */
export function memberStem(key: string): string {
  return boundedKey(key.replace(/[^A-Za-z0-9_-]/g, '_') || '_');
}

/** Member name stems, each once: keys that differ only in dots or slashes get `_1`, `_2`… */
export class UniqueNames {
  #used = new Set<string>();

  next(key: string): string {
    const stem = memberStem(key);
    let name = stem;
    for (let n = 1; this.#used.has(name); n++) name = `${stem}_${n}`;
    this.#used.add(name);
    return name;
  }
}

/** The extension of the source's file name, when it names an image type (else null). */
function sourceExtension(source: string): string | null {
  const m = /\.([A-Za-z0-9]{2,5})$/.exec(source);
  return m ? m[1].toLowerCase().replace('jpeg', 'jpg') : null;
}

/** What `<name>.json` holds: the record less its run-wide provenance (models, options) and status. */
export function sampleJson(r: OutputRecord): Record<string, unknown> {
  return {
    key: r.key,
    source: r.source,
    shard: r.shard,
    index: r.index,
    width: r.width,
    height: r.height,
    texts: r.texts,
    web: r.web,
    synthetic: r.synthetic,
    human: r.human,
    meta: r.meta ?? {},
  };
}

/** One kept text per line: a line break inside a text would split it. */
export function sampleText(texts: readonly string[]): string {
  return texts.map((t) => t.replace(/\s*[\r\n]+\s*/g, ' ')).join('\n');
}

export class WebDatasetWriter {
  readonly uri: string;
  #writer: AtomicWriter;
  #pack: Pack = pack();
  #pumped: Promise<void>;
  #names = new UniqueNames();
  #samples = 0;

  private constructor(uri: string, writer: AtomicWriter) {
    this.uri = uri;
    this.#writer = writer;
    this.#pumped = this.#pump();
    this.#pumped.catch(() => undefined);
  }

  static async open(storage: Storage, uri: string): Promise<WebDatasetWriter> {
    const writer = await storage.createAtomicWriter(uri);
    // A write error reaches the caller through add() and commit(), never as an unhandled event.
    writer.stream.on('error', () => undefined);
    return new WebDatasetWriter(uri, writer);
  }

  /** Moves the tar's bytes into the file as tar-stream makes them; a failure stops the tar too. */
  async #pump(): Promise<void> {
    try {
      for await (const chunk of this.#pack) await writeChunk(this.#writer.stream, chunk as Uint8Array);
    } catch (err) {
      this.#pack.destroy(err as Error);
      throw err;
    }
  }

  #entry(name: string, data: Uint8Array | string): Promise<void> {
    const body =
      typeof data === 'string'
        ? Buffer.from(data)
        : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    return new Promise((resolve, reject) => {
      // The callback fires once the member has gone into the tar stream: memory holds one member.
      this.#pack.entry({ name, mtime: MTIME, mode: 0o644, uname: '', gname: '' }, body, (err) =>
        err ? reject(err) : resolve(),
      );
    });
  }

  async add(record: OutputRecord, image: Uint8Array | undefined): Promise<void> {
    if (!image) throw new ShardError(record.shard, `${record.key}: no image bytes to write into ${this.uri}`);
    const name = this.#names.next(record.key);
    const ext = imageExtension(image) ?? sourceExtension(record.source) ?? 'img';
    await this.#entry(`${name}.${ext}`, image);
    await this.#entry(`${name}.txt`, sampleText(record.texts));
    await this.#entry(`${name}.json`, JSON.stringify(sampleJson(record)));
    this.#samples++;
  }

  /** Ends the tar and makes it visible under its name; returns the samples written. */
  async commit(): Promise<number> {
    this.#pack.finalize();
    await this.#pumped;
    await this.#writer.commit();
    return this.#samples;
  }

  async abort(): Promise<void> {
    this.#pack.destroy();
    await this.#pumped.catch(() => undefined);
    await this.#writer.abort();
  }
}
