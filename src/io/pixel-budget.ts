/**
 * How many decoded pixels a process holds at once. The per-image cap (--max-pixels) bounds one
 * image; this bounds their sum, so that decoding many images concurrently cannot multiply one
 * large image into gigabytes (32 rows naming one 9999×9999 PNG of 97 KB would otherwise hold
 * 32 × 300 MB of RGB at once).
 */
import { DEFAULT_PIXEL_BUDGET } from '../core/defaults.js';

interface Waiter {
  pixels: number;
  grant: () => void;
}

/** A counting semaphore over pixels, granted in arrival order (a large image is not starved). */
export class PixelBudget {
  private used = 0;
  private highest = 0;
  private readonly queue: Waiter[] = [];

  constructor(readonly capacity: number) {
    if (!Number.isSafeInteger(capacity) || capacity < 1) {
      throw new RangeError(`a pixel budget must be a positive integer (got ${capacity})`);
    }
  }

  /** Pixels granted now. */
  get inUse(): number {
    return this.used;
  }

  /** The most pixels ever granted at once. */
  get peak(): number {
    return this.highest;
  }

  /**
   * Waits until `pixels` fit, then holds them until the returned release is called (once). An
   * image larger than the whole budget is granted the whole budget, i.e. it is decoded alone.
   */
  async acquire(pixels: number): Promise<() => void> {
    const amount = Math.min(Math.max(1, Math.ceil(pixels)), this.capacity);
    if (this.queue.length > 0 || this.used + amount > this.capacity) {
      await new Promise<void>((grant) => this.queue.push({ pixels: amount, grant }));
    } else {
      this.take(amount);
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.used -= amount;
      this.grantWaiting();
    };
  }

  private take(amount: number): void {
    this.used += amount;
    this.highest = Math.max(this.highest, this.used);
  }

  private grantWaiting(): void {
    while (this.queue.length > 0 && this.used + this.queue[0].pixels <= this.capacity) {
      const next = this.queue.shift() as Waiter;
      this.take(next.pixels);
      next.grant();
    }
  }
}

/** The budget of this process: every decode in it shares this one unless given its own. */
export const processPixels = new PixelBudget(DEFAULT_PIXEL_BUDGET);
