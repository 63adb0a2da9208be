/**
 * Parquet files that lie: a valid file (from makeParquet) with one declared size or count in its
 * footer or a page header rewritten. A Thrift compact codec that keeps each field's wire type, so
 * everything not edited is written back as it was read.
 */

const STOP = 0;
const TRUE = 1;
const FALSE = 2;
const BYTE = 3;
const I16 = 4;
const I32 = 5;
const I64 = 6;
const DOUBLE = 7;
const BINARY = 8;
const LIST = 9;
const STRUCT = 12;

type Value = boolean | number | bigint | Uint8Array | Struct | List;
interface List {
  elem: number;
  items: Value[];
}
/** Field id → wire type and value, in the order read. */
export type Struct = Map<number, { type: number; value: Value }>;

class Reader {
  constructor(
    readonly buf: Buffer,
    public pos: number,
  ) {}
  byte(): number {
    return this.buf[this.pos++];
  }
  varint(): bigint {
    let out = 0n;
    let shift = 0n;
    for (;;) {
      const b = this.byte();
      out |= BigInt(b & 0x7f) << shift;
      if (!(b & 0x80)) return out;
      shift += 7n;
    }
  }
  zigzag(): bigint {
    const v = this.varint();
    return (v >> 1n) ^ -(v & 1n);
  }
  value(type: number): Value {
    switch (type) {
      case TRUE:
        return true;
      case FALSE:
        return false;
      case BYTE:
        return this.byte();
      case I16:
      case I32:
        return Number(this.zigzag());
      case I64:
        return this.zigzag();
      case DOUBLE: {
        const v = this.buf.readDoubleLE(this.pos);
        this.pos += 8;
        return v;
      }
      case BINARY: {
        const n = Number(this.varint());
        const v = this.buf.subarray(this.pos, this.pos + n);
        this.pos += n;
        return new Uint8Array(v);
      }
      case LIST: {
        const h = this.byte();
        const elem = h & 0x0f;
        const n = h >> 4 === 15 ? Number(this.varint()) : h >> 4;
        const items: Value[] = [];
        for (let i = 0; i < n; i++)
          items.push(elem === TRUE || elem === FALSE ? this.byte() === 1 : this.value(elem));
        return { elem, items };
      }
      case STRUCT:
        return this.struct();
      default:
        throw new Error(`thrift type ${type} not handled`);
    }
  }
  struct(): Struct {
    const out: Struct = new Map();
    let id = 0;
    for (;;) {
      const h = this.byte();
      const type = h & 0x0f;
      if (type === STOP) return out;
      id = h >> 4 ? id + (h >> 4) : Number(this.zigzag());
      out.set(id, { type, value: this.value(type) });
    }
  }
}

class Writer {
  readonly bytes: number[] = [];
  varint(v: bigint): void {
    let x = v;
    do {
      const b = Number(x & 0x7fn);
      x >>= 7n;
      this.bytes.push(x > 0n ? b | 0x80 : b);
    } while (x > 0n);
  }
  zigzag(v: bigint): void {
    this.varint(v >= 0n ? v << 1n : (-v << 1n) - 1n);
  }
  value(type: number, v: Value): void {
    if (type === TRUE || type === FALSE) return;
    if (type === BYTE) this.bytes.push(v as number);
    else if (type === I16 || type === I32) this.zigzag(BigInt(v as number));
    else if (type === I64) this.zigzag(v as bigint);
    else if (type === DOUBLE) {
      const b = Buffer.alloc(8);
      b.writeDoubleLE(v as number);
      this.bytes.push(...b);
    } else if (type === BINARY) {
      this.varint(BigInt((v as Uint8Array).length));
      this.bytes.push(...(v as Uint8Array));
    } else if (type === LIST) {
      const { elem, items } = v as List;
      if (items.length < 15) this.bytes.push((items.length << 4) | elem);
      else {
        this.bytes.push(0xf0 | elem);
        this.varint(BigInt(items.length));
      }
      for (const item of items) {
        if (elem === TRUE || elem === FALSE) this.bytes.push(item ? 1 : 2);
        else this.value(elem, item);
      }
    } else if (type === STRUCT) this.struct(v as Struct);
  }
  struct(s: Struct): void {
    let last = 0;
    for (const id of [...s.keys()].sort((a, b) => a - b)) {
      const { type, value } = s.get(id) as { type: number; value: Value };
      const wire = type === TRUE || type === FALSE ? (value ? TRUE : FALSE) : type;
      if (id > last && id - last <= 15) this.bytes.push(((id - last) << 4) | wire);
      else {
        this.bytes.push(wire);
        this.zigzag(BigInt(id));
      }
      this.value(type, value);
      last = id;
    }
    this.bytes.push(STOP);
  }
}

function field(s: Struct, id: number): Value {
  const f = s.get(id);
  if (!f) throw new Error(`thrift field ${id} missing`);
  return f.value;
}

function setField(s: Struct, id: number, type: number, value: Value): void {
  s.set(id, { type, value });
}

/** FileMetaData of a Parquet file and the bytes before it. */
function splitFooter(file: Buffer): { body: Buffer; meta: Struct } {
  const len = file.readUInt32LE(file.length - 8);
  const start = file.length - 8 - len;
  return { body: file.subarray(0, start), meta: new Reader(file, start).struct() };
}

function joinFooter(body: Buffer, meta: Struct): Buffer {
  const w = new Writer();
  w.struct(meta);
  const tail = Buffer.alloc(8);
  tail.writeUInt32LE(w.bytes.length, 0);
  tail.write('PAR1', 4, 'latin1');
  return Buffer.concat([body, Buffer.from(w.bytes), tail]);
}

/** The file with its footer edited in place. */
export function editFooter(file: Buffer, edit: (meta: Struct) => void): Buffer {
  const { body, meta } = splitFooter(file);
  edit(meta);
  return joinFooter(body, meta);
}

export function rowGroups(meta: Struct): Struct[] {
  return (field(meta, 4) as List).items as Struct[];
}

/** ColumnMetaData of column `c` in row group `g`. */
export function columnMeta(meta: Struct, g: number, c: number): Struct {
  const chunk = ((field(rowGroups(meta)[g], 1) as List).items as Struct[])[c];
  return field(chunk, 3) as Struct;
}

/** FileMetaData.num_rows. */
export function setFileRows(meta: Struct, rows: bigint): void {
  setField(meta, 3, I64, rows);
}

/** RowGroup.num_rows of group `g`. */
export function setGroupRows(meta: Struct, g: number, rows: bigint): void {
  setField(rowGroups(meta)[g], 3, I64, rows);
}

/** ColumnMetaData.total_compressed_size of column `c` in group `g`. */
export function setColumnSize(meta: Struct, g: number, c: number, bytes: bigint): void {
  setField(columnMeta(meta, g, c), 7, I64, bytes);
}

/** The last 8 bytes' footer length field set to `length` (the footer itself unchanged). */
export function withFooterLength(file: Buffer, length: number): Buffer {
  const out = Buffer.from(file);
  out.writeUInt32LE(length, out.length - 8);
  return out;
}

const OFFSET_FIELDS = [9, 10, 11, 14]; // data, index, dictionary page and bloom filter offsets

/**
 * The file with the first data page header of column `c` in group 0 edited. The header may change
 * length; every offset in the footer past it is shifted to match, so only the edit is a lie.
 */
export function editFirstPageHeader(file: Buffer, c: number, edit: (header: Struct) => void): Buffer {
  const { body, meta } = splitFooter(file);
  const col = columnMeta(meta, 0, c);
  const at = Number(field(col, 9) as bigint);
  const reader = new Reader(body, at);
  const header = reader.struct();
  edit(header);
  const w = new Writer();
  w.struct(header);
  const shift = BigInt(w.bytes.length - (reader.pos - at));
  const newBody = Buffer.concat([body.subarray(0, at), Buffer.from(w.bytes), body.subarray(reader.pos)]);
  for (const group of rowGroups(meta)) {
    for (const chunk of (field(group, 1) as List).items as Struct[]) {
      const cm = field(chunk, 3) as Struct;
      for (const id of OFFSET_FIELDS) {
        const f = cm.get(id);
        if (f && typeof f.value === 'bigint' && f.value > BigInt(at)) f.value += shift;
      }
      for (const id of [2, 4, 6]) {
        const f = chunk.get(id); // file, offset index and column index offsets
        if (f && typeof f.value === 'bigint' && f.value > BigInt(at)) f.value += shift;
      }
    }
    const fo = group.get(5);
    if (fo && typeof fo.value === 'bigint' && fo.value > BigInt(at)) fo.value += shift;
  }
  setField(col, 7, I64, (field(col, 7) as bigint) + shift);
  return joinFooter(newBody, meta);
}

/** PageHeader.uncompressed_page_size. */
export function setPageUncompressedSize(header: Struct, bytes: number): void {
  setField(header, 2, I32, bytes);
}

/** PageHeader.compressed_page_size. */
export function setPageCompressedSize(header: Struct, bytes: number): void {
  setField(header, 3, I32, bytes);
}

/** The data page's value count (v1 header), or its value and row counts (v2 header). */
export function setPageValues(header: Struct, values: number): void {
  if (header.has(5)) setField(field(header, 5) as Struct, 1, I32, values);
  else {
    const v2 = field(header, 8) as Struct;
    setField(v2, 1, I32, values);
    setField(v2, 3, I32, values);
  }
}
