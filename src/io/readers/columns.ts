/**
 * Which column of a manifest holds the image, the text and the sample key: decided once per file
 * from its header (CSV/TSV), schema (Parquet) or first object (JSONL), the way img2dataset and
 * the LAION tools read them: a named column must be there (any case), an unnamed one is the first
 * recognised name present. A file that lacks a column fails before any pair is read.
 */
import { RECOGNISED_COLUMNS } from '../../core/defaults.js';
import { UsageError } from '../../core/errors.js';
import type { InputOptions } from '../../core/types.js';

type Role = 'image' | 'text';

/** A file's columns by role; null where the file has none. */
export interface ColumnPlan {
  image: string | null;
  text: string | null;
  key: string | null;
  /** Every row has the file's columns (CSV header, Parquet schema): rows need no lookup of their own. */
  fixed: boolean;
  /**
   * Names a row may fall back to when it lacks the file's column (JSONL objects differ row by
   * row); null for a role a flag named, which is taken as is.
   */
  fallback: Record<Role, readonly string[] | null>;
}

const FLAG: Record<Role, string> = { image: '--image-column', text: '--text-column' };
const MAX_LISTED = 20;

/** `name` among `names`: the exact spelling first, then any case. */
export function findColumn(names: readonly string[], name: string): string | null {
  if (names.includes(name)) return name;
  const lower = name.toLowerCase();
  return names.find((n) => n.toLowerCase() === lower) ?? null;
}

/** The first of `candidates` (in their order of preference) that `names` has, in any case. */
export function firstPresent(names: readonly string[], candidates: readonly string[]): string | null {
  for (const c of candidates) {
    const found = findColumn(names, c);
    if (found !== null) return found;
  }
  return null;
}

function listed(names: readonly string[]): string {
  const shown = names.slice(0, MAX_LISTED).join(', ');
  return names.length > MAX_LISTED ? `${shown}, … ${names.length - MAX_LISTED} more` : shown;
}

function resolveRole(names: readonly string[], role: Role, named: string | undefined, file: string): string {
  const found =
    named !== undefined ? findColumn(names, named) : firstPresent(names, RECOGNISED_COLUMNS[role]);
  if (found !== null) return found;
  const what = named !== undefined ? `column '${named}' not in ${file}` : `no ${role} column in ${file}`;
  const tried = named !== undefined ? '' : `; looked for ${RECOGNISED_COLUMNS[role].join(', ')}`;
  throw new UsageError(`${what} (columns: ${listed(names)}${tried}); use ${FLAG[role]}`);
}

/**
 * The columns of a file whose column names are `names`, or a UsageError naming the file, its
 * columns and the flag to use. `file` is the name shown in the message.
 */
export function planColumns(
  names: readonly string[],
  input: Pick<InputOptions, 'imageColumn' | 'textColumn'>,
  file: string,
  fixed: boolean,
): ColumnPlan {
  const image = resolveRole(names, 'image', input.imageColumn, file);
  const text = resolveRole(names, 'text', input.textColumn, file);
  const key = firstPresent(
    names.filter((n) => n !== image && n !== text),
    RECOGNISED_COLUMNS.key,
  );
  return {
    image,
    text,
    key,
    fixed,
    fallback: {
      image: input.imageColumn === undefined ? RECOGNISED_COLUMNS.image : null,
      text: input.textColumn === undefined ? RECOGNISED_COLUMNS.text : null,
    },
  };
}

/** The plan of a file whose columns are not known (JSONL without an object row): rows decide. */
export function rowByRowColumns(input: Pick<InputOptions, 'imageColumn' | 'textColumn'>): ColumnPlan {
  return {
    image: input.imageColumn ?? null,
    text: input.textColumn ?? null,
    key: null,
    fixed: false,
    fallback: {
      image: input.imageColumn === undefined ? RECOGNISED_COLUMNS.image : null,
      text: input.textColumn === undefined ? RECOGNISED_COLUMNS.text : null,
    },
  };
}

/** The columns one row uses: the file's, or for a row that lacks one, a recognised name it has. */
export function rowColumns(
  row: Record<string, unknown>,
  plan: ColumnPlan,
): { image: string | null; text: string | null; key: string | null } {
  if (plan.fixed) return plan;
  const names = Object.keys(row);
  const pick = (role: Role): string | null => {
    const col = plan[role];
    if (col !== null && col in row) return col;
    if (col !== null && plan.fallback[role] === null) return findColumn(names, col);
    const fallback = plan.fallback[role];
    return fallback ? firstPresent(names, fallback) : null;
  };
  const image = pick('image');
  const text = pick('text');
  const key =
    plan.key !== null && plan.key in row
      ? plan.key
      : firstPresent(
          names.filter((n) => n !== image && n !== text),
          RECOGNISED_COLUMNS.key,
        );
  return { image, text, key };
}
