/**
 * capfilt's error vocabulary. A per-sample failure becomes a rejected record carrying its
 * reason; a per-shard failure fails the shard's job; anything else is a bug and crashes.
 */

/** Why a single input pair was rejected. Stable strings: they land in output records. */
export type RejectReason =
  | 'missing_object'
  | 'download_failed'
  | 'blocked_url'
  | 'blocked_source'
  | 'undecodable'
  | 'too_large'
  | 'timeout'
  | 'empty_text'
  | 'bad_row'
  | 'missing_image';

/** Base class: every error capfilt raises on purpose has a machine-readable code. */
export class CapfiltError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** One input pair cannot be processed; the pipeline turns it into a rejected record. */
export class SampleError extends CapfiltError {
  readonly key: string;
  readonly reason: RejectReason;
  constructor(key: string, reason: RejectReason, message: string, options?: { cause?: unknown }) {
    super(reason, `${key}: ${message}`, options);
    this.key = key;
    this.reason = reason;
  }
}

/** A whole shard cannot be processed (input gone, output unwritable). */
export class ShardError extends CapfiltError {
  readonly shardId: string;
  /** False when retrying cannot help (the input is gone); the queue then fails without retry. */
  readonly retryable: boolean;
  constructor(shardId: string, message: string, options?: { cause?: unknown; retryable?: boolean }) {
    super('shard_failed', `shard ${shardId}: ${message}`, options);
    this.shardId = shardId;
    this.retryable = options?.retryable ?? true;
  }
}

/** A model directory or checkpoint that capfilt cannot use. */
export class ModelError extends CapfiltError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('model_error', message, options);
  }
}

/**
 * A checkpoint's pickle asked for something outside the tiny set of globals and opcodes that
 * torch.save emits for a state dict. Raised before the named thing is used in any way.
 */
export class UnsafeCheckpointError extends ModelError {
  /** The refused global (`module.name`) or opcode (`opcode 0x..`). */
  readonly refused: string;
  constructor(source: string, refused: string, detail = 'is not allowed') {
    super(
      `${source}: refusing unsafe checkpoint: ${refused} ${detail} (capfilt never executes checkpoint code)`,
    );
    this.refused = refused;
  }
}

/** Bad command-line or configuration input from the user. */
export class UsageError extends CapfiltError {
  constructor(message: string) {
    super('usage', message);
  }
}

/** Nothing at a location (a local file, an S3 key or prefix). */
export class NotFoundError extends CapfiltError {
  readonly uri: string;
  constructor(uri: string, options?: { cause?: unknown }) {
    super('not_found', `${uri} does not exist`, options);
    this.uri = uri;
  }
}

/**
 * An input file whose own structure cannot be believed (a size or count it declares that its
 * bytes or capfilt's limits contradict): the shard fails for good, the message says what and
 * where, never the file's contents.
 */
export class BadInputError extends CapfiltError {
  readonly uri: string;
  constructor(uri: string, message: string, options?: { cause?: unknown }) {
    super('bad_input', `${uri}: ${message}`, options);
    this.uri = uri;
  }
}

/** An object larger than the byte cap it was read under. */
export class TooLargeError extends CapfiltError {
  /** `size` null: the object was cut off while being read, its real size unknown. */
  constructor(uri: string, size: number | null, max: number) {
    super(
      'too_large',
      size === null ? `${uri}: more than ${max} bytes (cap)` : `${uri}: ${size} bytes > cap ${max}`,
    );
  }
}

/**
 * A location the run's source policy does not allow (another root, bucket or scheme, a link out
 * of the root, a device, FIFO or socket): refused before anything is opened or asked, so the
 * answer says nothing about what is there.
 */
export class BlockedSourceError extends CapfiltError {
  readonly uri: string;
  constructor(uri: string, why: string) {
    super('blocked_source', `${uri}: ${why}`);
    this.uri = uri;
  }
}

/** A read (local file, S3 object or stream) that did not finish within its time limit. */
export class ReadTimeoutError extends CapfiltError {
  constructor(uri: string, timeoutMs: number, what = 'read') {
    super('timeout', `${uri}: ${what} did not finish within ${timeoutMs} ms`);
  }
}

/**
 * A queued job or run record that does not fit its schema (a forged or corrupted payload): it
 * fails once, without retries, and nothing it names is read or written.
 */
export class InvalidJobError extends CapfiltError {
  constructor(message: string) {
    super('invalid_job', message);
  }
}

/** Retrying cannot help: the input is gone, the options or the model are unusable. */
export function isPermanent(err: unknown): err is CapfiltError {
  return (
    err instanceof NotFoundError ||
    err instanceof UsageError ||
    err instanceof ModelError ||
    err instanceof BadInputError ||
    err instanceof BlockedSourceError ||
    err instanceof InvalidJobError
  );
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
