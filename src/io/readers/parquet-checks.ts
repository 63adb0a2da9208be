/**
 * A Parquet file's own numbers (footer length, row counts, column chunk ranges, page sizes and
 * value counts) are claims. These checks hold them against the file's real size and against
 * limits before hyparquet allocates or loops on them, so that a 1 KB file cannot abort Node
 * (a 3 GB read), spin for minutes (10^12 rows) or allocate gigabytes (a 2 GB page).
 */
import { decompress as decompressZstd } from 'fzstd';
import {
  type ColumnChunk,
  type Compressors,
  type FileMetaData,
  type PageHeader,
  parquetMetadata,
} from 'hyparquet';
import { parquetHeader } from 'hyparquet/src/column.js';
import { compressors as stockCompressors } from 'hyparquet-compressors';
import { BadInputError, errorMessage } from '../../core/errors.js';

/** Footer (FileMetaData) size: real footers are KBs, a few MB with thousands of row groups. */
export const MAX_FOOTER_BYTES = 64 << 20;
/** Column chunks of one row group, read into memory together (and any single read). */
export const MAX_GROUP_BYTES = 1 << 30;
/** Uncompressed page size: writers cut pages at about 1 MiB. */
const MAX_PAGE_BYTES = 256 << 20;
/** Beyond 1 MiB, a page may not claim to inflate more than this: no codec gets near it on real data. */
const MAX_PAGE_RATIO = 1024;
/** Values in one page: hyparquet allocates arrays of this length for levels and values. */
const MAX_PAGE_VALUES = 1 << 24;

/** The byte range [start, end) a column chunk declares. */
export function chunkRange(chunk: ColumnChunk): { start: number; end: number } {
  const meta = chunk.meta_data;
  const start = Number(meta?.dictionary_page_offset || meta?.data_page_offset);
  return { start, end: start + Number(meta?.total_compressed_size) };
}

/**
 * The footer of a file of `size` bytes whose last 8 bytes are `tail`: its declared length
 * checked before it is read, then its row counts and column chunk ranges.
 */
export async function checkedMetadata(
  uri: string,
  size: number,
  read: (start: number, end: number) => Promise<ArrayBuffer>,
): Promise<FileMetaData> {
  const bad = (message: string, cause?: unknown) => new BadInputError(uri, message, { cause });
  if (size < 12) throw bad(`${size} bytes is too short for a Parquet file`);
  const tail = new DataView(await read(size - 8, size));
  if (tail.getUint32(4, true) !== 0x31524150) throw bad('does not end in PAR1: not a Parquet file');
  const footer = tail.getUint32(0, true);
  if (footer > size - 12) throw bad(`declares a ${footer}-byte footer in a ${size}-byte file`);
  if (footer > MAX_FOOTER_BYTES) {
    throw bad(`declares a ${footer}-byte footer; capfilt reads footers up to ${MAX_FOOTER_BYTES} bytes`);
  }
  let meta: FileMetaData;
  try {
    // geoparquet off: it would JSON.parse a key-value entry, whose errors quote the file.
    meta = parquetMetadata(await read(size - 8 - footer, size), { geoparquet: false });
  } catch (err) {
    throw bad(`footer is not valid Parquet metadata (${decodeError(err)})`, err);
  }
  checkRowCounts(meta, size, bad);
  checkChunkRanges(meta, size - 8 - footer, bad);
  return meta;
}

type Bad = (message: string) => BadInputError;

/** Why hyparquet failed, without quoting the file: JSON.parse's message would show its text. */
export function decodeError(err: unknown): string {
  return err instanceof SyntaxError ? 'a JSON value is not valid JSON' : errorMessage(err);
}

function checkRowCounts(meta: FileMetaData, size: number, bad: Bad): void {
  const rows = BigInt(meta.num_rows);
  if (rows < 0n) throw bad(`declares ${rows} rows`);
  let sum = 0n;
  meta.row_groups.forEach((group, g) => {
    if (BigInt(group.num_rows) < 0n) throw bad(`row group ${g} declares ${group.num_rows} rows`);
    sum += BigInt(group.num_rows);
  });
  if (sum !== rows) throw bad(`declares ${rows} rows but its row groups declare ${sum}`);
  // A manifest row holds at least an image reference and a caption: more rows than bytes is a lie.
  if (rows > BigInt(size)) throw bad(`declares ${rows} rows in ${size} bytes (more rows than bytes)`);
}

/** Every column chunk must lie in the file's data (between the leading magic and the footer). */
function checkChunkRanges(meta: FileMetaData, dataEnd: number, bad: Bad): void {
  meta.row_groups.forEach((group, g) => {
    let lo = Number.POSITIVE_INFINITY;
    let hi = 0;
    group.columns.forEach((chunk, c) => {
      if (chunk.file_path) throw bad(`row group ${g}, column ${c} lives in another file`);
      if (!chunk.meta_data) throw bad(`row group ${g}, column ${c} has no metadata`);
      const { start, end } = chunkRange(chunk);
      if (
        !(
          Number.isSafeInteger(start) &&
          Number.isSafeInteger(end) &&
          start >= 4 &&
          start <= end &&
          end <= dataEnd
        )
      ) {
        throw bad(
          `row group ${g}, column ${c} declares bytes ${start}-${end}, outside the data (bytes 4-${dataEnd})`,
        );
      }
      lo = Math.min(lo, start);
      hi = Math.max(hi, end);
    });
    if (hi - lo > MAX_GROUP_BYTES) {
      throw bad(
        `row group ${g} spans ${hi - lo} bytes; capfilt reads row groups up to ${MAX_GROUP_BYTES} bytes`,
      );
    }
  });
}

/** Values (rows for v2 pages) a data page holds; 0 for other pages. */
function pageRows(h: PageHeader): number {
  if (h.data_page_header_v2) return h.data_page_header_v2.num_rows;
  return h.data_page_header?.num_values ?? 0;
}

function pageValues(h: PageHeader): number {
  return (
    h.data_page_header_v2?.num_values ??
    h.data_page_header?.num_values ??
    h.dictionary_page_header?.num_values ??
    0
  );
}

/**
 * Walks the page headers of one column chunk (`bytes`), checking each page's sizes and value
 * count, and that the pages hold the rows the row group declares. Returns the most rows a page
 * holds (hyparquet decodes whole pages, so reads are sized to at least one page).
 */
export function checkPages(bytes: Uint8Array, groupRows: number, where: string, bad: Bad): number {
  const reader = { view: new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength), offset: 0 };
  let rows = 0;
  let widest = 0;
  while (reader.offset < bytes.byteLength - 1) {
    const at = reader.offset;
    let h: PageHeader;
    try {
      h = parquetHeader(reader);
    } catch (err) {
      throw bad(`${where}: the page header at byte ${at} of the chunk is not valid (${decodeError(err)})`);
    }
    const packed = h.compressed_page_size;
    const size = h.uncompressed_page_size;
    if (!(packed >= 0 && reader.offset + packed <= bytes.byteLength)) {
      throw bad(`${where}: a page declares ${packed} bytes, past the end of its column chunk`);
    }
    if (!(size >= 0 && size <= MAX_PAGE_BYTES && (size <= 1 << 20 || size <= packed * MAX_PAGE_RATIO))) {
      throw bad(
        `${where}: a ${packed}-byte page declares ${size} bytes uncompressed (limit ${MAX_PAGE_BYTES}, ratio ${MAX_PAGE_RATIO})`,
      );
    }
    const values = pageValues(h);
    if (!(values >= 0 && values <= MAX_PAGE_VALUES && pageRows(h) >= 0 && pageRows(h) <= values)) {
      throw bad(
        `${where}: a page declares ${values} values; capfilt reads pages of up to ${MAX_PAGE_VALUES}`,
      );
    }
    rows += pageRows(h);
    widest = Math.max(widest, pageRows(h));
    reader.offset += packed;
  }
  if (rows < groupRows)
    throw bad(`${where}: the row group declares ${groupRows} rows but the pages hold ${rows}`);
  return widest;
}

/**
 * hyparquet's decompressors, except that zstd decodes into a buffer of the page's declared size
 * (already checked) instead of one sized by the frame's own claim.
 */
export const checkedCompressors: Compressors = {
  ...stockCompressors,
  ZSTD: (input: Uint8Array, length: number) => decompressZstd(input, new Uint8Array(length)),
};
