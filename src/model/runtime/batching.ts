/** Split `items` into consecutive chunks of at most `size`. */
export function chunks<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += Math.max(1, size)) out.push(items.slice(i, i + Math.max(1, size)));
  return out;
}

const OOM =
  /out of memory|CUDA_ERROR_OUT_OF_MEMORY|cudaErrorMemoryAllocation|Failed to allocate memory|bad_alloc/i;

export function isOutOfMemory(err: unknown): boolean {
  return err instanceof Error && OOM.test(err.message);
}

/**
 * Run `fn` over `items` in batches of `batchSize`; when a batch runs out of (GPU) memory, halve the
 * batch size and retry that batch instead of failing the shard. Results keep the order of items.
 */
export async function mapBatches<T, R>(
  items: readonly T[],
  batchSize: number,
  fn: (batch: T[]) => Promise<R[]>,
  onBackoff?: (newSize: number, err: unknown) => void,
): Promise<R[]> {
  const out: R[] = [];
  let size = Math.max(1, batchSize);
  let i = 0;
  while (i < items.length) {
    const batch = items.slice(i, i + size);
    try {
      out.push(...(await fn(batch)));
      i += batch.length;
    } catch (err) {
      if (!isOutOfMemory(err) || size === 1) throw err;
      size = Math.max(1, Math.floor(size / 2));
      onBackoff?.(size, err);
    }
  }
  return out;
}
