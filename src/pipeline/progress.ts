/** Progress of a run: a bar with samples/s and ETA on a terminal, plain periodic lines otherwise. */
export interface ProgressOptions {
  mode: 'tty' | 'plain' | 'none';
  /** Pairs in the whole run when known (tars are only counted by reading them). */
  totalPairs: number | null;
  totalShards: number;
  intervalMs?: number;
  stream?: NodeJS.WritableStream;
}

function duration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const r = s % 60;
  return h > 0
    ? `${h}h${String(m).padStart(2, '0')}m`
    : m > 0
      ? `${m}m${String(r).padStart(2, '0')}s`
      : `${r}s`;
}

export class Progress {
  readonly options: ProgressOptions;
  pairs = 0;
  shardsDone = 0;
  shardsSkipped = 0;
  readonly started = performance.now();
  #lastDraw = 0;
  #stream: NodeJS.WritableStream;

  constructor(options: ProgressOptions) {
    this.options = options;
    this.#stream = options.stream ?? process.stderr;
  }

  static auto(totalPairs: number | null, totalShards: number, quiet = false): Progress {
    const mode = quiet ? 'none' : process.stderr.isTTY ? 'tty' : 'plain';
    return new Progress({ mode, totalPairs, totalShards });
  }

  /** Pairs already finished by earlier runs: they count toward the total, not toward the rate. */
  skipShard(pairs: number): void {
    this.shardsSkipped++;
    if (this.options.totalPairs !== null) this.options.totalPairs -= pairs;
  }

  add(pairs: number): void {
    this.pairs += pairs;
    this.draw(false);
  }

  shardDone(): void {
    this.shardsDone++;
    this.draw(false);
  }

  line(): string {
    const elapsed = (performance.now() - this.started) / 1000;
    const rate = elapsed > 0 ? this.pairs / elapsed : 0;
    const shards = `${this.shardsDone + this.shardsSkipped}/${this.options.totalShards} shards`;
    const total = this.options.totalPairs;
    if (total !== null && total > 0) {
      const frac = Math.min(1, this.pairs / total);
      const eta = rate > 0 ? (total - this.pairs) / rate : Number.NaN;
      const width = 24;
      const bar = '#'.repeat(Math.round(frac * width)).padEnd(width, '-');
      return `[${bar}] ${this.pairs}/${total} pairs ${(frac * 100).toFixed(1)}% | ${shards} | ${rate.toFixed(1)} samples/s | ETA ${duration(eta)}`;
    }
    const left = this.options.totalShards - this.shardsDone - this.shardsSkipped;
    const perShard = this.shardsDone > 0 ? elapsed / this.shardsDone : Number.NaN;
    return `${this.pairs} pairs | ${shards} | ${rate.toFixed(1)} samples/s | ETA ${duration(left * perShard)}`;
  }

  draw(force: boolean): void {
    if (this.options.mode === 'none') return;
    const now = performance.now();
    const interval = this.options.intervalMs ?? (this.options.mode === 'tty' ? 200 : 10_000);
    if (!force && now - this.#lastDraw < interval) return;
    this.#lastDraw = now;
    if (this.options.mode === 'tty') this.#stream.write(`\r\x1b[2K${this.line()}`);
    else this.#stream.write(`[capfilt] ${this.line()}\n`);
  }

  finish(): void {
    if (this.options.mode === 'none') return;
    this.draw(true);
    if (this.options.mode === 'tty') this.#stream.write('\n');
  }
}
