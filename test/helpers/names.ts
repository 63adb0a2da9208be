let queueCounter = 0;
/** A queue/run name unique to this process and call. */
export function uniqueName(prefix: string): string {
  queueCounter += 1;
  return `${prefix}-${process.pid}-${queueCounter}-${Math.random().toString(36).slice(2, 8)}`;
}
