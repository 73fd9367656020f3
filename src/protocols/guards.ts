// Admission checks shared by the protocols: auth-token comparison and a per-connection
// token-bucket rate limit.

/**
 * Compare a presented token (a slice of a buffer) with the expected one in time that
 * depends only on the expected token's length, so response timing does not reveal how
 * many leading bytes were right. The length difference is folded into the result rather
 * than returned early for the same reason.
 */
export function tokenMatches(presented: Uint8Array, offset: number, length: number, expected: Uint8Array): boolean {
  let diff = length ^ expected.length;
  for (let i = 0; i < expected.length; i++) {
    const b = i < length ? presented[offset + i]! : 0;
    diff |= b ^ expected[i]!;
  }
  return diff === 0;
}

export interface RateLimitOptions {
  /** Sustained messages per second. */
  messagesPerSecond: number;
  /** Bucket size: messages allowed in a burst (default: one second's worth, at least 1). */
  burst?: number;
  /**
   * Rate-limited messages tolerated before the connection is closed. The count resets only
   * when the bucket refills completely (the client went quiet), so a client that keeps
   * sending above the rate is closed even if some of its messages get through.
   * Default 100.
   */
  maxViolations?: number;
}

export const RateVerdict = {
  /** Handle the message. */
  Allow: 0,
  /** Answer RATE_LIMITED and drop the message. */
  Limited: 1,
  /** Answer RATE_LIMITED and close: the client kept on. */
  Close: 2,
} as const;
export type RateVerdict = (typeof RateVerdict)[keyof typeof RateVerdict];

/**
 * A token bucket refilled continuously at `messagesPerSecond`. Time is passed in by the
 * caller (monotonic ns) so that a whole `data` batch shares one clock read.
 */
export class TokenBucket {
  private tokens: number;
  private last: number;
  private violations = 0;
  private readonly perNs: number;
  readonly capacity: number;
  readonly maxViolations: number;

  constructor(opts: RateLimitOptions, nowNs: number) {
    if (!(opts.messagesPerSecond > 0)) throw new RangeError("rateLimit.messagesPerSecond must be > 0");
    this.capacity = Math.max(1, opts.burst ?? Math.ceil(opts.messagesPerSecond));
    this.maxViolations = opts.maxViolations ?? 100;
    this.perNs = opts.messagesPerSecond / 1e9;
    this.tokens = this.capacity;
    this.last = nowNs;
  }

  /** Take one token for a message arriving at `nowNs`. */
  take(nowNs: number): RateVerdict {
    const elapsed = nowNs - this.last;
    if (elapsed > 0) {
      this.tokens = Math.min(this.capacity, this.tokens + elapsed * this.perNs);
      this.last = nowNs;
    }
    if (this.tokens >= this.capacity) this.violations = 0;
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return RateVerdict.Allow;
    }
    this.violations++;
    return this.violations > this.maxViolations ? RateVerdict.Close : RateVerdict.Limited;
  }
}
