import { createHash } from 'node:crypto';

/** A seeded random stream (sfc32): small, fast, and identical on every platform. */
export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(seed: Uint32Array) {
    this.a = seed[0] | 0;
    this.b = seed[1] | 0;
    this.c = seed[2] | 0;
    this.d = seed[3] | 0;
    for (let i = 0; i < 12; i++) this.nextUint32();
  }

  nextUint32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  /** Uniform in [0, 1) with 53 random bits. */
  nextFloat(): number {
    const hi = this.nextUint32() >>> 5;
    const lo = this.nextUint32() >>> 6;
    return (hi * 67108864 + lo) / 9007199254740992;
  }
}

/**
 * The random stream of one caption, derived from (seed, sample key, caption index) alone, so a
 * sample's captions never depend on its batch, its worker or a retry.
 */
export function captionRng(seed: number, key: string, captionIndex: number): Rng {
  const digest = createHash('sha256')
    .update(`capfilt\u0000${seed}\u0000${key}\u0000${captionIndex}`)
    .digest();
  return new Rng(new Uint32Array(digest.buffer, digest.byteOffset, 4));
}
